//! mxfleet-smtp: the inbound ESMTP side of a backup MX.
//!
//! Layout:
//! - [`reply`]: `Reply`, with enhanced status codes on every reply.
//! - [`data`]: the sans-IO DATA receiver: dot-unstuffing, the only end marker is
//!   `CRLF . CRLF`, bare CR/LF detection (SMTP smuggling), `Received:` counting.
//! - [`headers`]: reading the Message-ID out of the header section as it streams.
//! - [`policy`]: relay policy: which domains and recipients we accept, address syntax
//!   and the classic open-relay tricks, sender and HELO checks.
//! - [`tls`]: STARTTLS server configuration with several certificates chosen by SNI.
//! - [`session`]: one SMTP session over any stream, one file per verb.
//! - [`intake`]: `MessageIntake`, where accepted messages go (the replicated queue).
//! - [`config`]: `SessionConfig`, `SessionLimits`, the reloadable `PolicyHandle`.
//! - [`listener`]: accepting connections under connection limits.
//! - [`metrics`]: `SmtpMetrics` (connections, replies by class, accepted and rejected
//!   messages), carried in `SessionConfig`.

pub mod checks;
pub mod config;
pub mod data;
pub mod headers;
pub mod intake;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod reply;
pub mod session;
pub mod tls;

pub use config::{PolicyHandle, SessionConfig, SessionConfigHandle, SessionLimits};
pub use intake::{BodySink, IntakeError, MessageIntake, Receipt, StoredBody};
pub use metrics::SmtpMetrics;
pub use reply::Reply;
pub use session::{ClientInfo, SessionEnd, run_session};
