//! Greylisting decisions against an in-memory fleet with a hand-set clock.

use std::net::IpAddr;
use std::time::Duration;

use mxfleet_core::UnixMillis;

use super::*;
use crate::checks::memory::MemorySpamState;

const START: UnixMillis = UnixMillis(1_700_000_000_000);

fn config() -> GreylistConfig {
    GreylistConfig {
        delay: Duration::from_secs(300),
        retry_window: Duration::from_secs(86_400),
        expiry: Duration::from_secs(35 * 86_400),
        auto_allowlist_after: 2,
        allowlist_networks: Vec::new(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn first_try_is_refused_and_a_retry_after_the_delay_passes() {
    let fleet = MemorySpamState::at(START);
    let decide_now = || {
        decide(
            &config(),
            &[],
            &fleet,
            ip("192.0.2.7"),
            "a@x.org",
            "u@y.net",
        )
    };
    assert_eq!(decide_now(), GreylistOutcome::New);
    fleet.advance(60_000);
    assert_eq!(
        decide_now(),
        GreylistOutcome::TooEarly {
            retry_in: Duration::from_secs(240)
        }
    );
    fleet.advance(240_000);
    assert_eq!(decide_now(), GreylistOutcome::Passed);
    assert_eq!(decide_now(), GreylistOutcome::Known);
    // New, the pass; the second `Known` did not refresh (well within a tenth of expiry).
    assert_eq!(fleet.facts_recorded(), 2);
}

#[test]
fn the_network_not_the_address_is_the_client() {
    let fleet = MemorySpamState::at(START);
    let cfg = config();
    assert!(decide(&cfg, &[], &fleet, ip("192.0.2.7"), "a@x", "u@y").defers());
    fleet.advance(300_000);
    // The retry comes from another address of the same /24 (an MTA pool).
    assert_eq!(
        decide(&cfg, &[], &fleet, ip("192.0.2.200"), "a@x", "u@y"),
        GreylistOutcome::Passed
    );
    // Another /24 is another client.
    assert_eq!(
        decide(&cfg, &[], &fleet, ip("192.0.3.7"), "a@x", "u@y"),
        GreylistOutcome::New
    );
}

#[test]
fn networks_are_auto_allowlisted_after_enough_passes() {
    let fleet = MemorySpamState::at(START);
    let cfg = config();
    for recipient in ["one@y", "two@y"] {
        assert!(decide(&cfg, &[], &fleet, ip("198.51.100.1"), "a@x", recipient).defers());
    }
    fleet.advance(300_000);
    for recipient in ["one@y", "two@y"] {
        assert_eq!(
            decide(&cfg, &[], &fleet, ip("198.51.100.1"), "a@x", recipient),
            GreylistOutcome::Passed
        );
    }
    assert_eq!(
        decide(&cfg, &[], &fleet, ip("198.51.100.9"), "new@x", "three@y"),
        GreylistOutcome::AutoAllowlisted
    );
    let off = GreylistConfig {
        auto_allowlist_after: 0,
        ..cfg
    };
    assert_eq!(
        decide(&off, &[], &fleet, ip("198.51.100.9"), "new@x", "three@y"),
        GreylistOutcome::New
    );
}

#[test]
fn allowlisted_networks_and_the_null_sender_from_them_pass() {
    let fleet = MemorySpamState::at(START);
    let allowlist = ["203.0.113.0/24".parse().unwrap()];
    assert_eq!(
        decide(&config(), &allowlist, &fleet, ip("203.0.113.5"), "", "u@y"),
        GreylistOutcome::Allowlisted
    );
    assert_eq!(fleet.facts_recorded(), 0);
    // The null sender from anywhere else is greylisted like any sender.
    assert!(decide(&config(), &allowlist, &fleet, ip("192.0.2.1"), "", "u@y").defers());
}

#[test]
fn a_waiting_triplet_is_forgotten_after_the_retry_window() {
    let fleet = MemorySpamState::at(START);
    let cfg = config();
    assert!(decide(&cfg, &[], &fleet, ip("192.0.2.7"), "a@x", "u@y").defers());
    fleet.advance(86_400_000);
    assert_eq!(
        decide(&cfg, &[], &fleet, ip("192.0.2.7"), "a@x", "u@y"),
        GreylistOutcome::New
    );
}

#[test]
fn a_known_triplet_is_refreshed_once_a_tenth_of_the_expiry_has_gone_by() {
    let fleet = MemorySpamState::at(START);
    let cfg = config();
    decide(&cfg, &[], &fleet, ip("192.0.2.7"), "a@x", "u@y");
    fleet.advance(300_000);
    decide(&cfg, &[], &fleet, ip("192.0.2.7"), "a@x", "u@y");
    let recorded = fleet.facts_recorded();
    fleet.advance(4 * 86_400_000);
    assert_eq!(
        decide(&cfg, &[], &fleet, ip("192.0.2.7"), "a@x", "u@y"),
        GreylistOutcome::Known
    );
    assert_eq!(fleet.facts_recorded(), recorded + 1);
    // Still known 34 days after the refresh, which the original pass would not be.
    fleet.advance(34 * 86_400_000);
    assert_eq!(
        decide(&cfg, &[], &fleet, ip("192.0.2.7"), "a@x", "u@y"),
        GreylistOutcome::Known
    );
}
