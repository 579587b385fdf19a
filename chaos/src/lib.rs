//! mxfleet's chaos harness: proves the promises of `../shared/DESIGN.md` §1 under
//! simulated telehouse outages, the way Jepsen tests a queue.
//!
//! A run starts real `mxfleet serve` processes (5 voters over 3 sites by default), puts
//! a fault proxy of ours on every link between nodes and on each node's link to the
//! primary (the testkit sink), drives SMTP load at random nodes while a seeded schedule
//! of faults plays, heals everything, waits for the primary to drain the queue, and
//! checks the history of what senders were told against what the primary received.
//!
//! Layout:
//! - [`proxy`]: the TCP fault proxy (partitions, one-way cuts, latency, jitter,
//!   bandwidth caps, resets), keyed by source and destination host.
//! - [`fleet`]: the `mxfleet serve` processes, their configs, signals and admin calls,
//!   and the primary (the testkit sink) behind its proxy.
//! - [`load`]: the SMTP load generator and the history of what senders were told.
//! - [`checker`]: lost / unexpected / duplicated / unknown, and availability.
//! - [`scenario`]: the nine named fault schedules and the runner.
//! - [`report`]: the table and its JSON.

pub mod checker;
pub mod fleet;
pub mod load;
pub mod proxy;
pub mod report;
pub mod scenario;
