//! mxfleet-delivery: everything between a queued message and the primary's `250`.
//!
//! Layout:
//! - [`reply`]: a remote SMTP reply (`RemoteReply`) and the one function that says
//!   whether a reply or an error is temporary or permanent.
//! - [`target`]: a host to connect to (`ConnectTarget`) as routing hands it to the
//!   client.
//! - [`route`]: the next hop per domain: an explicit list, or MX through
//!   hickory-resolver (RFC 5321 §5.1, RFC 7505), never looping back into the fleet.
//! - [`client`]: the outbound SMTP client (PIPELINING, SIZE, STARTTLS, timeouts,
//!   several messages per connection, per-recipient results).
//! - [`dsn`]: RFC 3464 delivery status notifications (bounces and delay warnings).
//! - [`config`]: `DeliveryConfig` and the per-destination `DestinationPolicy`.
//! - [`lease`]: lease timing and the fencing argument; [`backoff`]: retry spacing;
//!   [`pacing`]: fleet-wide rate and connection limits.
//! - [`plan`]: the leader's sans-IO assignment plan; `scheduler`: its async shell, and
//!   `notifier`: the DSNs the state says are owed.
//! - `owner`: picking up assigned work, committing outcomes, renewing leases;
//!   `attempt`: a destination's worker; `probe`: drain on recovery;
//!   `primary_watch`: keeping the fleet's view of watched primaries fresh.
//! - [`verify`]: `RecipientVerifier`, asking a primary whether it accepts a recipient
//!   (MAIL and RCPT, never DATA).
//! - [`service`]: `DeliveryService`, which starts all of it on a node.
//! - [`metrics`]: `DeliveryMetrics` (attempts by outcome, attempt duration, delay).

mod attempt;
pub mod backoff;
pub mod client;
pub mod config;
pub mod dsn;
pub mod lease;
pub mod metrics;
mod notifier;
mod owner;
pub mod pacing;
pub mod plan;
mod primary_watch;
mod probe;
pub mod reply;
pub mod route;
mod scheduler;
pub mod service;
pub mod target;
pub mod verify;

pub use config::{DeliveryConfig, DestinationPolicy};
pub use metrics::DeliveryMetrics;
pub use reply::{RemoteReply, Severity};
pub use service::DeliveryService;
pub use target::ConnectTarget;
pub use verify::{RecipientVerifier, VerifyResult};
