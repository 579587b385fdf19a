//! The spam tables' transitions: first sighting wins, passes count once per triplet
//! for allowlisting, late probes never overwrite newer ones, and expiry.

use super::*;

fn seen(key: GreylistKey, at: u64) -> SpamFact {
    SpamFact::GreylistSeen {
        key,
        at: UnixMillis(at),
        expires_at: UnixMillis(at + 1_000),
    }
}

fn passed(key: GreylistKey, network: &str, at: u64) -> SpamFact {
    SpamFact::GreylistPassed {
        key,
        network: network.to_owned(),
        at: UnixMillis(at),
        expires_at: UnixMillis(at + 10_000),
    }
}

fn verdict(address: &str, valid: bool, at: u64) -> SpamFact {
    SpamFact::RecipientVerified {
        verdict: RecipientVerdict {
            address: address.to_owned(),
            valid,
            reply: if valid {
                "250 2.1.5 Ok"
            } else {
                "550 5.1.1 no"
            }
            .to_owned(),
            checked_at: UnixMillis(at),
            checked_by: 1,
            expires_at: UnixMillis(at + 5_000),
        },
    }
}

#[test]
fn triplet_keys_ignore_case_but_not_content() {
    let key = greylist_key("192.0.2.0/24", "A@Example.org", "User@Example.NET");
    assert_eq!(
        key,
        greylist_key("192.0.2.0/24", "a@example.org", "user@example.net")
    );
    assert_ne!(
        key,
        greylist_key("192.0.3.0/24", "a@example.org", "user@example.net")
    );
    // The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert_ne!(
        greylist_key("n", "ab", "c@x"),
        greylist_key("n", "a", "bc@x")
    );
}

#[test]
fn the_first_sighting_in_the_fleet_counts() {
    let mut state = SpamState::default();
    let key = greylist_key("192.0.2.0/24", "a@x", "b@y");
    assert_eq!(state.apply_facts(&[seen(key, 100)]).len(), 1);
    // A second node saw the same triplet a little later: nothing changes.
    assert!(state.apply_facts(&[seen(key, 150)]).is_empty());
    assert_eq!(state.greylist[&key].first_seen, UnixMillis(100));
    assert_eq!(state.greylist[&key].passed_at, None);
}

#[test]
fn a_pass_counts_once_for_its_network() {
    let mut state = SpamState::default();
    let first = greylist_key("192.0.2.0/24", "a@x", "b@y");
    let second = greylist_key("192.0.2.0/24", "a@x", "c@y");
    state.apply_facts(&[seen(first, 100), passed(first, "192.0.2.0/24", 500)]);
    // The same triplet passing again (another message) does not count twice.
    state.apply_facts(&[passed(first, "192.0.2.0/24", 900)]);
    assert_eq!(state.network_passes("192.0.2.0/24", UnixMillis(1_000)), 1);
    state.apply_facts(&[passed(second, "192.0.2.0/24", 950)]);
    assert_eq!(state.network_passes("192.0.2.0/24", UnixMillis(1_000)), 2);
    let record = &state.greylist[&first];
    assert_eq!(record.passed_at, Some(UnixMillis(500)));
    assert_eq!(record.expires_at, UnixMillis(10_900));
    assert_eq!(
        state.network_passes("198.51.100.0/24", UnixMillis(1_000)),
        0
    );
}

#[test]
fn a_late_probe_never_overwrites_a_newer_one() {
    let mut state = SpamState::default();
    state.apply_facts(&[verdict("User@Example.net", false, 200)]);
    assert!(
        state
            .apply_facts(&[verdict("user@example.net", true, 100)])
            .is_empty()
    );
    let known = state.verdict("user@EXAMPLE.net", UnixMillis(300)).unwrap();
    assert!(!known.valid);
    state.apply_facts(&[verdict("user@example.net", true, 300)]);
    assert!(
        state
            .verdict("user@example.net", UnixMillis(301))
            .unwrap()
            .valid
    );
}

#[test]
fn expiry_drops_what_ran_out_and_reports_it() {
    let mut state = SpamState::default();
    let waiting = greylist_key("n1", "a@x", "b@y");
    let kept = greylist_key("n2", "a@x", "b@y");
    state.apply_facts(&[
        seen(waiting, 0),
        seen(kept, 0),
        passed(kept, "n2", 500),
        verdict("b@y", true, 0),
    ]);
    // Reads already hide expired records before the expiry command commits.
    assert!(state.triplet(&waiting, UnixMillis(1_000)).is_none());
    assert!(state.verdict("b@y", UnixMillis(5_000)).is_none());
    let changed = state.expire(UnixMillis(6_000));
    assert!(changed.contains(&SpamKey::Greylist(waiting)));
    assert!(changed.contains(&SpamKey::Verification(verification_key("b@y"))));
    assert!(!changed.contains(&SpamKey::Greylist(kept)));
    assert_eq!(state.greylist.len(), 1);
    assert!(state.verified.is_empty());
    let changed = state.expire(UnixMillis(20_000));
    assert!(changed.contains(&SpamKey::Greylist(kept)));
    assert!(changed.contains(&SpamKey::Allowlist(allowlist_key("n2"))));
    assert_eq!(state, SpamState::default());
}
