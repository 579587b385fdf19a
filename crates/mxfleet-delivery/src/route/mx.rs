//! The MX rules of RFC 5321 §5.1 and RFC 7505, without any I/O: null MX detection,
//! ordering by preference, and loop avoidance against the fleet's own identity.
//!
//! The [`Router`](super::Router) does the lookups and calls these in order:
//! [`is_null_mx`], [`order_by_preference`], [`own_by_hostname`], (resolve the
//! exchanges preferred over that one), [`own_by_address`].

use std::collections::HashSet;
use std::net::IpAddr;

use rand::Rng;
use rand::seq::SliceRandom;

use super::OwnIdentity;
use super::resolver::{DnsError, MxRecord};

/// RFC 7505: a domain that publishes only the root name as its exchange accepts no
/// mail. The RFC asks for a single record with preference 0; any preference is
/// accepted here, and so are several such records, since none of them names a host.
pub(crate) fn is_null_mx(records: &[MxRecord]) -> bool {
    !records.is_empty() && records.iter().all(MxRecord::is_null)
}

/// Drops null exchanges (a null MX next to real ones names no host to try) and
/// repeated exchanges (keeping the best preference), sorts by preference, and shuffles
/// each run of equal preferences with `rng`, so that equally preferred hosts share
/// the load as RFC 5321 §5.1 asks. The caller seeds `rng` to make the order
/// reproducible in tests.
pub(crate) fn order_by_preference(records: Vec<MxRecord>, rng: &mut impl Rng) -> Vec<MxRecord> {
    let mut records: Vec<MxRecord> = records.into_iter().filter(|r| !r.is_null()).collect();
    // Sorting by (preference, exchange) first makes the result depend only on the
    // record set and the rng, not on the order the DNS server happened to send.
    records.sort_by(|a, b| (a.preference, &a.exchange).cmp(&(b.preference, &b.exchange)));
    let mut seen = HashSet::new();
    records.retain(|record| seen.insert(record.exchange.clone()));
    for group in records.chunk_by_mut(|a, b| a.preference == b.preference) {
        group.shuffle(rng);
    }
    records
}

/// The best-preference exchange that is one of the fleet's own host names, if any.
/// Only exchanges with a strictly lower preference may be used (RFC 5321 §5.1: the
/// client "MUST ... discard all MX records with preference >= its own").
pub(crate) fn own_by_hostname<'a>(
    records: &'a [MxRecord],
    identity: &OwnIdentity,
) -> Option<&'a MxRecord> {
    records
        .iter()
        .filter(|record| identity.is_own_hostname(&record.exchange))
        .min_by_key(|record| record.preference)
}

/// The best-preference exchange that resolved to one of the fleet's own addresses,
/// if any: the same loop under another name.
pub(crate) fn own_by_address<'a>(
    resolved: &'a [(MxRecord, Result<Vec<IpAddr>, DnsError>)],
    identity: &OwnIdentity,
) -> Option<&'a MxRecord> {
    resolved
        .iter()
        .filter(|(_, addresses)| {
            addresses
                .as_ref()
                .is_ok_and(|addresses| addresses.iter().any(|ip| identity.is_own_address(*ip)))
        })
        .map(|(record, _)| record)
        .min_by_key(|record| record.preference)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn mx(preference: u16, exchange: &str) -> MxRecord {
        MxRecord::new(preference, exchange)
    }

    #[test]
    fn null_mx_is_only_the_root_exchange() {
        assert!(is_null_mx(&[mx(0, ".")]));
        assert!(!is_null_mx(&[mx(0, "."), mx(10, "mx.example.")]));
        assert!(!is_null_mx(&[]));
    }

    #[test]
    fn ordering_sorts_by_preference_and_drops_duplicates_and_null() {
        let mut rng = StdRng::seed_from_u64(7);
        let ordered = order_by_preference(
            vec![
                mx(20, "b"),
                mx(10, "a"),
                mx(0, "."),
                mx(30, "a"),
                mx(5, "c"),
            ],
            &mut rng,
        );
        assert_eq!(ordered, vec![mx(5, "c"), mx(10, "a"), mx(20, "b")]);
    }

    #[test]
    fn equal_preferences_are_shuffled_reproducibly() {
        let records: Vec<MxRecord> = (0..8)
            .map(|i| mx(10, &format!("mx{i}.example")))
            .chain([mx(20, "last")])
            .collect();
        let first = order_by_preference(records.clone(), &mut StdRng::seed_from_u64(1));
        let again = order_by_preference(records.clone(), &mut StdRng::seed_from_u64(1));
        assert_eq!(first, again);
        assert_eq!(first.last(), Some(&mx(20, "last")));
        let orders: std::collections::HashSet<Vec<MxRecord>> = (0..20)
            .map(|seed| order_by_preference(records.clone(), &mut StdRng::seed_from_u64(seed)))
            .collect();
        assert!(orders.len() > 1, "equal preferences were never reordered");
    }
}
