//! The spam checks seen from the SMTP client's side: greylisting, primary-aware mode,
//! recipient verification, rate limits and the pregreet test, each over a real
//! session against an in-memory fleet (`MemorySpamState`) whose clock the test moves;
//! and the DNS checks (DNSBL, sender domain, SPF) against a real in-process DNS
//! server (`mxfleet_testkit::dns`).

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use common::{MemoryIntake, config, spawn_session};
use mxfleet_core::UnixMillis;
use mxfleet_smtp::checks::config::{RateLimitConfig, UnknownRecipientAction};
use mxfleet_smtp::checks::dns::{CheckResolver, CheckResolverOptions};
use mxfleet_smtp::checks::dnsbl::Dnsbl;
use mxfleet_smtp::checks::memory::{MemorySpamState, ScriptedProber};
use mxfleet_smtp::checks::spf::SpfChecker;
use mxfleet_smtp::checks::{Check, DnsChecks, FleetChecks, ProbeOutcome, SpamChecks, SpamConfig};
use mxfleet_smtp::{MessageIntake, SessionConfig, SessionEnd};
use mxfleet_testkit::dns::{TestDns, Zone};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const START: UnixMillis = UnixMillis(1_800_000_000_000);

/// A client talking to one session, a command at a time.
struct Dialog {
    reader: BufReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
    session: JoinHandle<SessionEnd>,
}

impl Dialog {
    fn open(config: Arc<SessionConfig>, intake: Arc<MemoryIntake>) -> Dialog {
        let (client, session) = spawn_session(
            config,
            intake as Arc<dyn MessageIntake>,
            CancellationToken::new(),
        );
        let (reader, writer) = tokio::io::split(client);
        Dialog {
            reader: BufReader::new(reader),
            writer,
            session,
        }
    }

    /// The next whole reply (all its lines), or "" at end of stream.
    async fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                    .await
                    .expect("a reply within 10 s")
                    .expect("read");
            if read == 0 {
                return reply;
            }
            reply.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return reply;
            }
        }
    }

    /// Writes a command line; a session that already closed just gets nothing.
    async fn send(&mut self, line: &str) {
        let _ = self
            .writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await;
    }

    async fn say(&mut self, line: &str) -> String {
        self.send(line).await;
        self.reply().await
    }

    /// Banner, EHLO and MAIL FROM, each expected to succeed.
    async fn start(config: Arc<SessionConfig>, intake: Arc<MemoryIntake>, from: &str) -> Dialog {
        let mut dialog = Dialog::open(config, intake);
        assert!(dialog.reply().await.starts_with("220 "));
        assert!(dialog.say("EHLO client.example").await.starts_with("250"));
        let mail = dialog.say(&format!("MAIL FROM:<{from}>")).await;
        assert_eq!(mail, "250 2.1.0 Ok\r\n");
        dialog
    }

    async fn quit(mut self) -> SessionEnd {
        let _ = self.say("QUIT").await;
        self.session.await.expect("session task")
    }
}

fn spam_config(checks: &[Check]) -> SpamConfig {
    let mut config = SpamConfig {
        dns_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    config
        .domain_checks
        .insert("example.net".into(), checks.iter().copied().collect());
    config
}

fn session_with(spam: SpamChecks) -> Arc<SessionConfig> {
    let mut session = Arc::unwrap_or_clone(config(|_| {}));
    session.spam = Arc::new(spam);
    Arc::new(session)
}

fn fleet_checks(
    config: SpamConfig,
    fleet: Arc<MemorySpamState>,
    prober: Arc<ScriptedProber>,
) -> SpamChecks {
    SpamChecks::new(
        config,
        None,
        Some(FleetChecks {
            state: fleet,
            prober,
        }),
        Vec::new(),
    )
    .expect("checks")
}

#[tokio::test]
async fn a_new_triplet_is_greylisted_and_its_retry_after_the_delay_passes() {
    let fleet = Arc::new(MemorySpamState::at(START));
    let session = session_with(fleet_checks(
        spam_config(&[Check::Greylisting]),
        fleet.clone(),
        Arc::default(),
    ));
    let intake = Arc::new(MemoryIntake::default());

    let mut first = Dialog::start(session.clone(), intake.clone(), "a@client.example").await;
    assert_eq!(
        first.say("RCPT TO:<x@example.net>").await,
        "451 4.7.1 <x@example.net>: Recipient address rejected: Greylisted, try again in 300 seconds\r\n"
    );
    // A domain without greylisting is not affected, in the same transaction.
    assert_eq!(
        first.say("RCPT TO:<alice@example.org>").await,
        "250 2.1.5 Ok\r\n"
    );
    first.quit().await;

    fleet.advance(120_000);
    let mut early = Dialog::start(session.clone(), intake.clone(), "a@client.example").await;
    assert!(
        early
            .say("RCPT TO:<x@example.net>")
            .await
            .contains("try again in 180 seconds"),
        "a retry before the delay is refused with the time left"
    );
    early.quit().await;

    fleet.advance(180_000);
    let mut retry = Dialog::start(session, intake.clone(), "a@client.example").await;
    assert_eq!(
        retry.say("RCPT TO:<x@example.net>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert!(retry.say("DATA").await.starts_with("354"));
    assert!(
        retry
            .say("Subject: hi\r\n\r\nhello\r\n.")
            .await
            .starts_with("250 2.0.0 Ok: queued as")
    );
    retry.quit().await;
    assert_eq!(intake.queued.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_primary_aware_domain_takes_mail_only_while_the_primary_is_down() {
    let fleet = Arc::new(MemorySpamState::at(START));
    let session = session_with(fleet_checks(
        spam_config(&[Check::PrimaryAware]),
        fleet.clone(),
        Arc::default(),
    ));
    let intake = Arc::new(MemoryIntake::default());
    let refusal = "451 4.7.1 <x@example.net>: Recipient address rejected: this backup MX takes mail for example.net only while its primary is down; try the primary MX\r\n";

    // No node has reported on the primary yet: assume it is up.
    let mut dialog = Dialog::start(session.clone(), intake.clone(), "a@client.example").await;
    assert_eq!(dialog.say("RCPT TO:<x@example.net>").await, refusal);
    fleet.set_primary_down("example.net", false);
    assert_eq!(dialog.say("RCPT TO:<x@example.net>").await, refusal);
    fleet.set_primary_down("example.net", true);
    assert_eq!(
        dialog.say("RCPT TO:<x@example.net>").await,
        "250 2.1.5 Ok\r\n"
    );
    fleet.set_primary_down("example.net", false);
    assert_eq!(
        dialog.say("RCPT TO:<y@example.net>").await,
        refusal.replace("x@", "y@")
    );
    dialog.quit().await;
}

#[tokio::test]
async fn verified_recipients_are_cached_while_the_primary_is_up_and_used_while_down() {
    let fleet = Arc::new(MemorySpamState::at(START));
    let prober = Arc::new(ScriptedProber::default());
    prober.answer(
        "good@example.net",
        ProbeOutcome::Valid {
            reply: "250 2.1.5 Ok".into(),
        },
    );
    prober.answer(
        "bad@example.net",
        ProbeOutcome::Invalid {
            reply: "550 5.1.1 <bad@example.net>: User unknown".into(),
        },
    );
    let mut config = spam_config(&[Check::VerifyRecipients]);
    config.verify.unknown_action = UnknownRecipientAction::Defer;
    let session = session_with(fleet_checks(config, fleet.clone(), prober.clone()));
    let intake = Arc::new(MemoryIntake::default());

    fleet.set_primary_down("example.net", false);
    let mut up = Dialog::start(session.clone(), intake.clone(), "a@client.example").await;
    assert_eq!(
        up.say("RCPT TO:<good@example.net>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        up.say("RCPT TO:<bad@example.net>").await,
        "550 5.1.1 <bad@example.net>: Recipient address rejected: undeliverable address: the primary MX said: 550 5.1.1 <bad@example.net>: User unknown\r\n"
    );
    up.quit().await;
    assert_eq!(prober.probes(), 2);

    fleet.set_primary_down("example.net", true);
    let mut down = Dialog::start(session, intake, "a@client.example").await;
    assert_eq!(
        down.say("RCPT TO:<Good@example.net>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert!(
        down.say("RCPT TO:<bad@example.net>")
            .await
            .starts_with("550 5.1.1 ")
    );
    assert_eq!(
        down.say("RCPT TO:<new@example.net>").await,
        "450 4.1.1 <new@example.net>: Recipient address rejected: unverified address: the primary MX is down and the address is not in the cache\r\n"
    );
    down.quit().await;
    assert_eq!(
        prober.probes(),
        2,
        "nothing is probed while the primary is down"
    );
}

fn rate_checks(limits: RateLimitConfig) -> SpamChecks {
    let config = SpamConfig {
        rate_limits: limits,
        ..Default::default()
    };
    SpamChecks::new(config, None, None, Vec::new()).expect("checks")
}

#[tokio::test]
async fn a_connection_rate_limit_answers_421_and_resets_with_the_window() {
    let session = session_with(rate_checks(RateLimitConfig {
        window: Duration::from_millis(400),
        client_connection_rate_limit: 2,
        ..Default::default()
    }));
    let intake = Arc::new(MemoryIntake::default());
    let started = std::time::Instant::now();
    let mut banners = Vec::new();
    for _ in 0..3 {
        let mut dialog = Dialog::open(session.clone(), intake.clone());
        banners.push(dialog.reply().await);
        let _ = dialog.say("QUIT").await;
    }
    // The three connections fit in one window unless this machine stalled for 400 ms.
    if started.elapsed() < Duration::from_millis(400) {
        assert!(banners[0].starts_with("220 ") && banners[1].starts_with("220 "));
        assert_eq!(
            banners[2],
            "421 4.7.0 mx2.example.org Error: too many connections from 192.0.2.7\r\n"
        );
    }
    // Once the window rolls over, the client is served again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut dialog = Dialog::open(session.clone(), intake.clone());
        if dialog.reply().await.starts_with("220 ") {
            dialog.quit().await;
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the limit never reset"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn message_and_recipient_rate_limits_answer_450() {
    let session = session_with(rate_checks(RateLimitConfig {
        window: Duration::from_secs(3600),
        client_message_rate_limit: 1,
        client_recipient_rate_limit: 2,
        ..Default::default()
    }));
    let intake = Arc::new(MemoryIntake::default());
    let mut dialog = Dialog::start(session, intake, "a@client.example").await;
    assert_eq!(
        dialog.say("RCPT TO:<alice@example.org>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        dialog.say("RCPT TO:<bob@example.org>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        dialog.say("RCPT TO:<x@example.net>").await,
        "450 4.7.1 Error: too many recipients from 192.0.2.7\r\n"
    );
    assert!(dialog.say("RSET").await.starts_with("250"));
    assert_eq!(
        dialog.say("MAIL FROM:<a@client.example>").await,
        "450 4.7.1 Error: too much mail from 192.0.2.7\r\n"
    );
    dialog.quit().await;
}

fn pregreet_checks() -> SpamChecks {
    let mut config = SpamConfig::default();
    config.hygiene.greet_wait = Duration::from_millis(300);
    SpamChecks::new(config, None, None, Vec::new()).expect("checks")
}

#[tokio::test]
async fn a_client_that_talks_before_the_banner_is_refused() {
    let session = session_with(pregreet_checks());
    let intake = Arc::new(MemoryIntake::default());
    let mut eager = Dialog::open(session.clone(), intake.clone());
    eager.send("EHLO spamware.example").await;
    assert_eq!(
        eager.reply().await,
        "220-mx2.example.org ESMTP mxfleet\r\n554 5.5.1 Error: talked before the banner\r\n"
    );
    assert_eq!(eager.session.await.unwrap(), SessionEnd::LimitReached);

    let mut patient = Dialog::open(session, intake);
    assert_eq!(
        patient.reply().await,
        "220-mx2.example.org ESMTP mxfleet\r\n220 mx2.example.org ESMTP mxfleet\r\n"
    );
    assert!(patient.say("EHLO mta.example").await.starts_with("250"));
    assert_eq!(patient.quit().await, SessionEnd::Quit);
}

// DNS checks over a real in-process DNS server: the session's client 192.0.2.7 is
// listed on `dnsbl.test` (weight 1, threshold 1), `client.example` publishes SPF
// for it, and `nowhere.example` does not exist.
async fn start_dns() -> TestDns {
    TestDns::start([
        Zone::new("dnsbl.test").a("7.2.0.192", Ipv4Addr::new(127, 0, 0, 2)),
        Zone::new("client.example")
            .txt("@", "v=spf1 ip4:192.0.2.0/24 -all")
            .a("@", Ipv4Addr::new(192, 0, 2, 1)),
        Zone::new("forged.example")
            .txt("@", "v=spf1 ip4:198.51.100.1 -all")
            .a("@", Ipv4Addr::new(198, 51, 100, 1)),
        Zone::new("nowhere.example"),
    ])
    .await
}

/// The DNS machinery for `config`, asking `dns`.
fn dns_machinery(dns: &TestDns, config: &SpamConfig) -> DnsChecks {
    let options = CheckResolverOptions::new(Duration::from_secs(2));
    let resolver = CheckResolver::from_nameservers(&[dns.addr], &options).expect("resolver");
    DnsChecks {
        dnsbl: Dnsbl::new(&config.dnsbl, &resolver, Duration::from_secs(2)),
        spf: SpfChecker::new(&resolver),
        resolver,
    }
}

async fn dns_checks(checks: &[Check], reject_spf_fail: bool) -> (TestDns, SpamChecks) {
    let dns = start_dns().await;
    let mut config = spam_config(checks);
    config.dnsbl.sites = vec!["dnsbl.test".parse().expect("site")];
    config.spf.reject_fail = reject_spf_fail;
    let machinery = dns_machinery(&dns, &config);
    let checks = SpamChecks::new(config, Some(machinery), None, Vec::new()).expect("checks");
    (dns, checks)
}

#[tokio::test]
async fn a_listed_client_is_refused_at_rcpt_for_the_domains_that_ask() {
    let (_dns, checks) = dns_checks(&[Check::Dnsbl], false).await;
    let session = session_with(checks);
    let intake = Arc::new(MemoryIntake::default());
    let mut dialog = Dialog::start(session, intake, "a@client.example").await;
    assert_eq!(
        dialog.say("RCPT TO:<x@example.net>").await,
        "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using dnsbl.test\r\n"
    );
    // example.org does not use the DNSBL.
    assert_eq!(
        dialog.say("RCPT TO:<alice@example.org>").await,
        "250 2.1.5 Ok\r\n"
    );
    dialog.quit().await;
}

#[tokio::test]
async fn an_unknown_sender_domain_is_deferred_as_postfix_does() {
    let (_dns, checks) = dns_checks(&[Check::UnknownSenderDomain], false).await;
    let session = session_with(checks);
    let intake = Arc::new(MemoryIntake::default());
    let mut dialog = Dialog::start(session.clone(), intake.clone(), "a@nowhere.example").await;
    assert_eq!(
        dialog.say("RCPT TO:<x@example.net>").await,
        "450 4.1.8 <a@nowhere.example>: Sender address rejected: Domain not found\r\n"
    );
    dialog.quit().await;
    let mut known = Dialog::start(session, intake, "a@client.example").await;
    assert_eq!(
        known.say("RCPT TO:<x@example.net>").await,
        "250 2.1.5 Ok\r\n"
    );
    known.quit().await;
}

#[tokio::test]
async fn the_spf_result_travels_with_the_message_and_a_fail_is_refused_only_on_request() {
    let (_dns, checks) = dns_checks(&[Check::Spf], false).await;
    let session = session_with(checks);
    let intake = Arc::new(MemoryIntake::default());
    let mut dialog = Dialog::start(session, intake.clone(), "a@client.example").await;
    assert_eq!(
        dialog.say("RCPT TO:<x@example.net>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert!(dialog.say("DATA").await.starts_with("354"));
    assert!(
        dialog
            .say("Subject: hi\r\n\r\nhello\r\n.")
            .await
            .starts_with("250 2.0.0")
    );
    // Forged: SPF fails, but forwarding through a backup MX is where SPF misleads, so
    // by default it is only recorded.
    assert!(
        dialog
            .say("MAIL FROM:<a@forged.example>")
            .await
            .starts_with("250")
    );
    assert_eq!(
        dialog.say("RCPT TO:<x@example.net>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert!(dialog.say("DATA").await.starts_with("354"));
    assert!(
        dialog
            .say("Subject: hi\r\n\r\nhello\r\n.")
            .await
            .starts_with("250 2.0.0")
    );
    dialog.quit().await;
    let queued = intake.queued.lock().unwrap().clone();
    let spf = |n: usize| {
        queued[n]
            .0
            .trace
            .as_ref()
            .and_then(|t| t.received_spf.clone())
            .expect("a Received-SPF value")
    };
    assert!(spf(0).starts_with("pass (mx2.example.org: domain of a@client.example designates 192.0.2.7 as permitted sender)"), "{}", spf(0));
    assert!(spf(1).starts_with("fail "), "{}", spf(1));

    let (_dns, strict) = dns_checks(&[Check::Spf], true).await;
    let mut dialog = Dialog::start(session_with(strict), Arc::default(), "a@forged.example").await;
    assert_eq!(
        dialog.say("RCPT TO:<x@example.net>").await,
        "550 5.7.23 <a@forged.example>: Sender address rejected: SPF fail\r\n"
    );
    dialog.quit().await;
}

#[tokio::test]
async fn mail_refused_by_another_check_never_creates_a_greylisting_triplet() {
    let dns = start_dns().await;
    let fleet = Arc::new(MemorySpamState::at(START));
    // Listed in the order an operator might write it; greylisting still runs last.
    let config = spam_config(&[Check::Greylisting, Check::UnknownSenderDomain]);
    let checks = SpamChecks::new(
        config.clone(),
        Some(dns_machinery(&dns, &config)),
        Some(FleetChecks {
            state: fleet.clone(),
            prober: Arc::new(ScriptedProber::default()),
        }),
        Vec::new(),
    )
    .expect("checks");
    let session = session_with(checks);
    let mut dialog = Dialog::start(session, Arc::default(), "a@nowhere.example").await;
    assert!(
        dialog
            .say("RCPT TO:<x@example.net>")
            .await
            .starts_with("450 4.1.8 ")
    );
    dialog.quit().await;
    assert_eq!(
        fleet.facts_recorded(),
        0,
        "greylisting runs after the other checks"
    );
}
