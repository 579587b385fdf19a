//! The shared state of a simulated network: hosts, link conditions, counters and the
//! registry of live connections, behind one lock.
//!
//! Fault changes and admissions take the same lock, so a connection is either registered
//! before a `set` (and the `set` reaches it) or admitted after it (and reads the new
//! condition); none falls between. The lock is never held across an await.
//!
//! Layout:
//! - `Fabric`: the tables plus the root shutdown token and task tracker.
//! - `Admission`, `Admitted`: what a new connection was granted.
//! - `Registration`: removes a connection from the registry when its task ends.
//! - `ConnectionControl`, `Side`: what a live connection watches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::link::{Cut, Ending, LinkCondition, LinkCounters, LinkStats, ending_for_change};

/// The host name of connections whose source IP no host owns.
pub const UNKNOWN_HOST: &str = "client";

/// A directed pair of host names.
type LinkKey = (String, String);

/// The conditions one live connection relays under, and the order to end it. Sent by
/// the fabric (the registry owns the sender), watched by the connection's task.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionControl {
    /// Bytes from the connecting host to the fronted host.
    pub(crate) forward: LinkCondition,
    /// Bytes from the fronted host back to the connecting host.
    pub(crate) backward: LinkCondition,
    /// Set once; the first ending ordered wins.
    pub(crate) ending: Option<Ending>,
}

/// One direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Forward,
    Backward,
}

impl ConnectionControl {
    pub(crate) fn condition(&self, side: Side) -> &LinkCondition {
        match side {
            Side::Forward => &self.forward,
            Side::Backward => &self.backward,
        }
    }

    /// Applies a new condition to one side; returns whether anything changed.
    fn apply(&mut self, side: Side, condition: &LinkCondition) -> bool {
        let current = match side {
            Side::Forward => &mut self.forward,
            Side::Backward => &mut self.backward,
        };
        if current == condition {
            return false;
        }
        let ending = ending_for_change(current.cut, condition.cut);
        *current = condition.clone();
        if self.ending.is_none() {
            self.ending = ending;
        }
        true
    }

    fn order(&mut self, ending: Ending) -> bool {
        if self.ending.is_some() {
            return false;
        }
        self.ending = Some(ending);
        true
    }
}

/// A live connection as the registry sees it.
struct LiveConnection {
    /// The host that connected (or [`UNKNOWN_HOST`]).
    client: String,
    /// The host the proxy fronts.
    fronted: String,
    control: watch::Sender<ConnectionControl>,
}

impl LiveConnection {
    /// The sides of this connection that carry bytes from `from` to `to` (both when a
    /// host connects to its own front).
    fn sides(&self, from: &str, to: &str) -> impl Iterator<Item = Side> {
        let forward = self.client == from && self.fronted == to;
        let backward = self.fronted == from && self.client == to;
        [(forward, Side::Forward), (backward, Side::Backward)]
            .into_iter()
            .filter_map(|(carries, side)| carries.then_some(side))
    }
}

#[derive(Default)]
struct Tables {
    hosts: HashMap<IpAddr, String>,
    /// Only links that are not clean have an entry.
    faults: HashMap<LinkKey, LinkCondition>,
    /// One entry per directed pair ever seen; bounded by the square of the host count.
    counters: HashMap<LinkKey, Arc<LinkCounters>>,
    /// Entries are added at admission and removed by `Registration` when the
    /// connection's task ends, however it ends.
    connections: HashMap<u64, LiveConnection>,
}

impl Tables {
    fn condition(&self, from: &str, to: &str) -> LinkCondition {
        self.faults
            .get(&(from.to_owned(), to.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn counters(&mut self, from: &str, to: &str) -> Arc<LinkCounters> {
        Arc::clone(
            self.counters
                .entry((from.to_owned(), to.to_owned()))
                .or_default(),
        )
    }
}

/// The simulated network shared by the `Network` handle, every proxy's accept loop and
/// every connection task.
pub(crate) struct Fabric {
    tables: Mutex<Tables>,
    /// Cancelled once by `Network::shutdown` (or its drop); every task selects on it.
    pub(crate) shutdown: CancellationToken,
    /// Every accept loop and connection task is spawned through it.
    pub(crate) tasks: TaskTracker,
    next_connection_id: AtomicU64,
}

/// What a new connection was granted.
pub(crate) enum Admission {
    /// Reset it at once (Refuse on the link towards the fronted host).
    Refuse,
    /// Accept it and hold it silently (Drop or Blackhole towards the fronted host).
    Hold(Admitted),
    /// Connect it to the fronted host and relay.
    Relay(Admitted),
}

/// A registered connection: what its task needs to run, and the registration it must
/// keep until it ends.
pub(crate) struct Admitted {
    pub(crate) id: u64,
    pub(crate) client: String,
    pub(crate) control: watch::Receiver<ConnectionControl>,
    pub(crate) forward_counters: Arc<LinkCounters>,
    pub(crate) backward_counters: Arc<LinkCounters>,
    pub(crate) registration: Registration,
}

/// Removes its connection from the registry when dropped.
pub(crate) struct Registration {
    fabric: Arc<Fabric>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.fabric.tables().connections.remove(&self.id);
    }
}

impl Fabric {
    pub(crate) fn new() -> Fabric {
        Fabric {
            tables: Mutex::new(Tables::default()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_connection_id: AtomicU64::new(1),
        }
    }

    /// The tables, even if a thread panicked while holding them: every update leaves
    /// them consistent, so a poisoned lock holds nothing half-written.
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add_host(&self, name: &str, source_ip: IpAddr) {
        self.tables().hosts.insert(source_ip, name.to_owned());
    }

    /// The host whose outgoing connections come from `ip`.
    pub(crate) fn host_of(&self, ip: IpAddr) -> String {
        self.tables()
            .hosts
            .get(&ip)
            .cloned()
            .unwrap_or_else(|| UNKNOWN_HOST.to_owned())
    }

    /// Decides the fate of a connection from `client` to the proxy in front of `fronted`,
    /// counts it, and registers it unless it is refused.
    pub(crate) fn admit(self: &Arc<Self>, client: &str, fronted: &str) -> Admission {
        let mut tables = self.tables();
        let forward = tables.condition(client, fronted);
        let backward = tables.condition(fronted, client);
        let forward_counters = tables.counters(client, fronted);
        let backward_counters = tables.counters(fronted, client);
        let held = match forward.cut {
            Some(Cut::Refuse) => {
                LinkCounters::add(&forward_counters.connections_refused, 1);
                return Admission::Refuse;
            }
            Some(Cut::Drop | Cut::Blackhole) => {
                LinkCounters::add(&forward_counters.connections_held, 1);
                true
            }
            None => {
                LinkCounters::add(&forward_counters.connections_accepted, 1);
                false
            }
        };
        let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        let (control, watched) = watch::channel(ConnectionControl {
            forward,
            backward,
            ending: None,
        });
        tables.connections.insert(
            id,
            LiveConnection {
                client: client.to_owned(),
                fronted: fronted.to_owned(),
                control,
            },
        );
        let admitted = Admitted {
            id,
            client: client.to_owned(),
            control: watched,
            forward_counters,
            backward_counters,
            registration: Registration {
                fabric: Arc::clone(self),
                id,
            },
        };
        if held {
            Admission::Hold(admitted)
        } else {
            Admission::Relay(admitted)
        }
    }

    /// Changes the condition of the link `from` → `to` with `change`, and passes the new
    /// condition to every live connection carrying bytes that way.
    pub(crate) fn update(&self, from: &str, to: &str, change: impl FnOnce(&mut LinkCondition)) {
        let mut tables = self.tables();
        let key = (from.to_owned(), to.to_owned());
        let mut condition = tables.faults.remove(&key).unwrap_or_default();
        change(&mut condition);
        debug!(from, to, condition = ?condition, "proxy_link_set");
        for connection in tables.connections.values() {
            for side in connection.sides(from, to) {
                connection
                    .control
                    .send_if_modified(|control| control.apply(side, &condition));
            }
        }
        if !condition.is_clean() {
            tables.faults.insert(key, condition);
        }
    }

    /// Every link back to a clean pass. Dead directions of live connections stay dead.
    pub(crate) fn heal(&self) {
        let mut tables = self.tables();
        tables.faults.clear();
        let clean = LinkCondition::default();
        for connection in tables.connections.values() {
            connection.control.send_if_modified(|control| {
                let forward = control.apply(Side::Forward, &clean);
                let backward = control.apply(Side::Backward, &clean);
                forward || backward
            });
        }
        debug!("proxy_healed");
    }

    /// Orders every live connection between `a` and `b`, either way, to reset.
    pub(crate) fn reset(&self, a: &str, b: &str) {
        let tables = self.tables();
        let mut ordered = 0_usize;
        for connection in tables.connections.values() {
            let between = connection.sides(a, b).next().is_some();
            if between
                && connection
                    .control
                    .send_if_modified(|c| c.order(Ending::Reset))
            {
                ordered += 1;
            }
        }
        debug!(a, b, connections = ordered, "proxy_reset_ordered");
    }

    pub(crate) fn live_connections(&self) -> usize {
        self.tables().connections.len()
    }

    pub(crate) fn stats(&self) -> Vec<LinkStats> {
        let tables = self.tables();
        let mut stats: Vec<LinkStats> = tables
            .counters
            .iter()
            .map(|((from, to), counters)| counters.snapshot(from, to))
            .collect();
        stats.sort_by(|x, y| (&x.from, &x.to).cmp(&(&y.from, &y.to)));
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> Admitted {
        match admission {
            Admission::Relay(admitted) | Admission::Hold(admitted) => admitted,
            Admission::Refuse => panic!("the connection was refused"),
        }
    }

    #[test]
    fn a_cut_reaches_both_kinds_of_connection_between_the_hosts() {
        let fabric = Arc::new(Fabric::new());
        let a_to_b = admitted(fabric.admit("a", "b"));
        let b_to_a = admitted(fabric.admit("b", "a"));
        let a_to_c = admitted(fabric.admit("a", "c"));
        fabric.update("a", "b", |c| c.cut = Some(Cut::Blackhole));
        assert_eq!(a_to_b.control.borrow().forward.cut, Some(Cut::Blackhole));
        assert_eq!(b_to_a.control.borrow().backward.cut, Some(Cut::Blackhole));
        assert_eq!(b_to_a.control.borrow().forward.cut, None);
        assert_eq!(a_to_c.control.borrow().forward.cut, None);

        fabric.update("b", "a", |c| c.cut = Some(Cut::Refuse));
        assert_eq!(a_to_b.control.borrow().ending, Some(Ending::Reset));
        assert_eq!(b_to_a.control.borrow().ending, Some(Ending::Reset));
        assert_eq!(a_to_c.control.borrow().ending, None);
    }

    #[test]
    fn new_connections_follow_the_link_towards_the_fronted_host() {
        let fabric = Arc::new(Fabric::new());
        fabric.update("a", "b", |c| c.cut = Some(Cut::Refuse));
        fabric.update("a", "c", |c| c.cut = Some(Cut::Drop));
        assert!(matches!(fabric.admit("a", "b"), Admission::Refuse));
        assert!(matches!(fabric.admit("a", "c"), Admission::Hold(_)));
        assert!(matches!(fabric.admit("b", "a"), Admission::Relay(_)));
        fabric.heal();
        assert!(matches!(fabric.admit("a", "b"), Admission::Relay(_)));
        let stats = fabric.stats();
        let a_to_b = stats.iter().find(|s| s.from == "a" && s.to == "b");
        assert_eq!(a_to_b.map(|s| s.connections_refused), Some(1));
    }

    #[test]
    fn registrations_leave_the_registry_when_dropped() {
        let fabric = Arc::new(Fabric::new());
        let first = admitted(fabric.admit("a", "b"));
        let second = admitted(fabric.admit("b", "a"));
        assert_eq!(fabric.live_connections(), 2);
        drop(first);
        drop(second);
        assert_eq!(fabric.live_connections(), 0);
    }

    #[test]
    fn reset_orders_only_connections_between_the_two_hosts() {
        let fabric = Arc::new(Fabric::new());
        let a_to_b = admitted(fabric.admit("a", "b"));
        let b_to_a = admitted(fabric.admit("b", "a"));
        let a_to_c = admitted(fabric.admit("a", "c"));
        fabric.reset("a", "b");
        assert_eq!(a_to_b.control.borrow().ending, Some(Ending::Reset));
        assert_eq!(b_to_a.control.borrow().ending, Some(Ending::Reset));
        assert_eq!(a_to_c.control.borrow().ending, None);
    }
}
