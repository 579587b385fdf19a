//! Verification decisions: the cache first, a probe while the primary is up, the
//! configured action otherwise.

use std::time::Duration;

use mxfleet_core::UnixMillis;

use super::*;
use crate::checks::memory::{MemorySpamState, ScriptedProber};

fn config(action: UnknownRecipientAction) -> VerifyConfig {
    VerifyConfig {
        positive_expiry: Duration::from_secs(31 * 86_400),
        negative_expiry: Duration::from_secs(3 * 86_400),
        unknown_action: action,
        probe_timeout: Duration::from_secs(5),
        probe_sender: String::new(),
    }
}

fn prober() -> ScriptedProber {
    let prober = ScriptedProber::default();
    prober.answer(
        "good@example.org",
        ProbeOutcome::Valid {
            reply: "250 2.1.5 Ok".into(),
        },
    );
    prober.answer(
        "bad@example.org",
        ProbeOutcome::Invalid {
            reply: "550 5.1.1 <bad@example.org>: user unknown".into(),
        },
    );
    prober
}

#[tokio::test]
async fn primed_while_up_and_used_while_down() {
    let fleet = MemorySpamState::at(UnixMillis(1_000_000));
    let prober = prober();
    let cfg = config(UnknownRecipientAction::Defer);
    fleet.set_primary_down("example.org", false);
    let check = |address: &'static str| decide(&cfg, &fleet, &prober, "example.org", address);
    assert_eq!(check("good@example.org").await, VerifyOutcome::ProbedValid);
    assert!(matches!(
        check("bad@example.org").await,
        VerifyOutcome::ProbedInvalid { .. }
    ));
    assert_eq!(prober.probes(), 2);

    fleet.set_primary_down("example.org", true);
    assert_eq!(check("good@example.org").await, VerifyOutcome::CachedValid);
    match check("bad@example.org").await {
        VerifyOutcome::CachedInvalid { reply } => assert!(reply.contains("user unknown")),
        other => panic!("expected the cached refusal, got {other:?}"),
    }
    assert!(matches!(
        check("unknown@example.org").await,
        VerifyOutcome::Unknown {
            action: UnknownRecipientAction::Defer,
            ..
        }
    ));
    // Nothing was probed while the primary was down.
    assert_eq!(prober.probes(), 2);
}

#[tokio::test]
async fn verdicts_expire_positive_and_negative_apart() {
    let fleet = MemorySpamState::at(UnixMillis(1_000_000));
    let prober = prober();
    let cfg = config(UnknownRecipientAction::Accept);
    decide(&cfg, &fleet, &prober, "example.org", "good@example.org").await;
    decide(&cfg, &fleet, &prober, "example.org", "bad@example.org").await;
    fleet.advance(4 * 86_400_000);
    assert_eq!(
        decide(&cfg, &fleet, &prober, "example.org", "good@example.org").await,
        VerifyOutcome::CachedValid
    );
    // The negative answer ran out after 3 days: probed again.
    assert!(matches!(
        decide(&cfg, &fleet, &prober, "example.org", "bad@example.org").await,
        VerifyOutcome::ProbedInvalid { .. }
    ));
    assert_eq!(prober.probes(), 3);
}

#[tokio::test]
async fn a_probe_without_an_answer_is_not_cached() {
    let fleet = MemorySpamState::at(UnixMillis(1_000_000));
    let prober = prober();
    let cfg = config(UnknownRecipientAction::Accept);
    for _ in 0..2 {
        assert!(matches!(
            decide(&cfg, &fleet, &prober, "example.org", "maybe@example.org").await,
            VerifyOutcome::Unknown {
                action: UnknownRecipientAction::Accept,
                ..
            }
        ));
    }
    assert_eq!(prober.probes(), 2);
    assert_eq!(fleet.facts_recorded(), 0);
}

struct SilentPrimary;

#[async_trait::async_trait]
impl RecipientProber for SilentPrimary {
    async fn probe(&self, _domain: &str, _address: &str) -> ProbeOutcome {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_hangs_ends_at_the_timeout() {
    let fleet = MemorySpamState::at(UnixMillis(1_000_000));
    let cfg = config(UnknownRecipientAction::Defer);
    let outcome = decide(&cfg, &fleet, &SilentPrimary, "example.org", "x@example.org").await;
    match outcome {
        VerifyOutcome::Unknown { reason, action } => {
            assert_eq!(action, UnknownRecipientAction::Defer);
            assert!(reason.contains("no answer"), "{reason}");
        }
        other => panic!("expected unknown, got {other:?}"),
    }
}
