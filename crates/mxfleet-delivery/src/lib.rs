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

pub mod client;
pub mod dsn;
pub mod reply;
pub mod route;
pub mod target;

pub use reply::{RemoteReply, Severity};
pub use target::ConnectTarget;
