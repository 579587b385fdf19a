//! The spam checks of one session: [`ClientChecks`] (per connection) and
//! [`TransactionChecks`] (per MAIL FROM), and the RCPT TO decision that runs a relay
//! domain's check list in order.
//!
//! The order is Postfix's usual one, cheapest and most certain first, and greylisting
//! last so that mail refused for another reason never creates a triplet:
//! recipient rate, primary-aware mode, DNSBL, RHSBL, reverse DNS, sender domain, SPF,
//! recipient verification, greylisting.
//!
//! Lifecycle: DNS answers are computed at most once per session (client) or per
//! transaction (sender), on first use, in `OnceCell`s; the DNSBL lookup starts when
//! the session does. Every refusal is returned as a [`Refusal`] and logged here with
//! its check and cause; the session sends the reply and counts it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OnceCell;
use tracing::info;

use super::config::{Check, UnknownRecipientAction};
use super::dnsbl::{DnsblHit, DnsblVerdict};
use super::greylist::{self, GreylistOutcome};
use super::rate::RateLimited;
use super::sender::{
    self, ClientHostnameStatus, SenderDomainStatus, client_hostname_status, sender_domain_status,
};
use super::spam_checks::SpamChecks;
use super::spf::{SpfEvaluation, SpfResult};
use super::verify::{self, VerifyOutcome};
use crate::metrics::{RejectReason, SmtpMetrics};
use crate::policy::Mailbox;
use crate::reply::Reply;

/// A refusal by a spam check: the reply and the reason it is counted under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reply: Reply,
    pub reason: RejectReason,
}

impl Refusal {
    fn new(reply: Reply, reason: RejectReason) -> Self {
        Refusal { reply, reason }
    }
}

/// What the checks know about one client, for one session.
pub struct ClientChecks {
    checks: Arc<SpamChecks>,
    ip: IpAddr,
    metrics: SmtpMetrics,
    dnsbl: Arc<OnceCell<DnsblVerdict>>,
    hostname: OnceCell<ClientHostnameStatus>,
}

/// What the checks know about one transaction's sender.
#[derive(Default)]
pub struct TransactionChecks {
    sender_domain: OnceCell<SenderDomainStatus>,
    rhsbl: OnceCell<Option<DnsblHit>>,
    spf: OnceCell<SpfEvaluation>,
}

impl std::fmt::Debug for TransactionChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionChecks")
            .field("spf", &self.spf.get().map(|e| e.result))
            .finish_non_exhaustive()
    }
}

impl TransactionChecks {
    /// The `Received-SPF:` value, when SPF was evaluated for this transaction.
    pub fn received_spf(&self) -> Option<String> {
        self.spf
            .get()
            .map(|evaluation| evaluation.received_spf.clone())
    }
}

impl ClientChecks {
    pub(crate) fn new(checks: Arc<SpamChecks>, ip: IpAddr, metrics: SmtpMetrics) -> Self {
        ClientChecks {
            checks,
            ip,
            metrics,
            dnsbl: Arc::new(OnceCell::new()),
            hostname: OnceCell::new(),
        }
    }

    /// Starts the DNSBL lookup in the background. The task is not tracked for
    /// shutdown: it only waits for DNS, bounded by `dns_timeout`, and owns nothing that
    /// must be finished.
    pub(crate) fn prefetch_dnsbl(&self) {
        if self.checks.dns.is_none() {
            return;
        }
        let cell = self.dnsbl.clone();
        let checks = self.checks.clone();
        let ip = self.ip;
        tokio::spawn(async move {
            if let Some(dns) = checks.dns.as_ref() {
                cell.get_or_init(|| dns.dnsbl.score_client(ip)).await;
            }
        });
    }

    /// The pregreet wait (`greet_wait`), zero when the test is off.
    pub fn greet_wait(&self) -> std::time::Duration {
        self.checks.config.hygiene.greet_wait
    }

    /// At connect: the connection rate limits.
    pub fn on_connect(&self, hostname: &str) -> Result<(), Refusal> {
        let counted = self.checks.rates.connection(self.ip, Instant::now());
        self.rate_refusal(counted, hostname)
    }

    /// At MAIL FROM: the message rate limits.
    pub fn on_mail(&self, hostname: &str) -> Result<(), Refusal> {
        let counted = self.checks.rates.message(self.ip, Instant::now());
        self.rate_refusal(counted, hostname)
    }

    /// A rate limit's verdict as a refusal, logged once (`smtp_rate_limited`).
    fn rate_refusal(
        &self,
        counted: Result<(), RateLimited>,
        hostname: &str,
    ) -> Result<(), Refusal> {
        counted.map_err(|limited| {
            info!(client = %self.ip, limit = %limited, "smtp_rate_limited");
            Refusal::new(limited.reply(hostname), RejectReason::RateLimited)
        })
    }

    /// At RCPT TO, once the relay policy has accepted `recipient`: the recipient rate
    /// limit, then the checks of the recipient's domain.
    pub async fn on_rcpt(
        &self,
        transaction: &TransactionChecks,
        hostname: &str,
        helo: &str,
        sender: Option<&Mailbox>,
        recipient: &Mailbox,
    ) -> Result<(), Refusal> {
        let counted = self.checks.rates.recipient(self.ip, Instant::now());
        self.rate_refusal(counted, hostname)?;
        let Some(domain_checks) = self.checks.config.checks_for(&recipient.domain) else {
            return Ok(());
        };
        let context = RcptContext {
            helo,
            sender,
            recipient,
            hostname,
        };
        for check in domain_checks {
            if let Err(refusal) = self.run(*check, transaction, &context).await {
                info!(
                    client = %self.ip,
                    helo,
                    from = sender.map(Mailbox::to_string).unwrap_or_default(),
                    to = %recipient,
                    check = check.as_str(),
                    reply = %refusal.reply,
                    "spam_check_refused"
                );
                return Err(refusal);
            }
        }
        Ok(())
    }
}

/// The addresses one RCPT TO decision is about.
struct RcptContext<'a> {
    helo: &'a str,
    sender: Option<&'a Mailbox>,
    recipient: &'a Mailbox,
    hostname: &'a str,
}

impl ClientChecks {
    /// Runs one check. A `CheckSet` iterates in `Check`'s declaration order, which is
    /// the order described in the module header.
    async fn run(
        &self,
        check: Check,
        transaction: &TransactionChecks,
        context: &RcptContext<'_>,
    ) -> Result<(), Refusal> {
        match check {
            Check::PrimaryAware => self.primary_aware(context),
            Check::Dnsbl => self.dnsbl().await,
            Check::RhsblSender => self.rhsbl(transaction, context).await,
            Check::UnknownClientHostname => self.client_hostname().await,
            Check::UnknownSenderDomain => self.sender_domain(transaction, context).await,
            Check::Spf => self.spf(transaction, context).await,
            Check::VerifyRecipients => self.verify(context).await,
            Check::Greylisting => self.greylist(context),
        }
    }

    fn primary_aware(&self, context: &RcptContext<'_>) -> Result<(), Refusal> {
        let Some(fleet) = self.checks.fleet.as_ref() else {
            return Ok(());
        };
        let domain = &context.recipient.domain;
        let down = fleet.state.primary_down(domain);
        let result = match down {
            Some(true) => "primary_down",
            Some(false) => "primary_up",
            None => "primary_unknown",
        };
        self.metrics.spam_check("primary_aware", result);
        if down == Some(true) {
            return Ok(());
        }
        Err(Refusal::new(
            Reply::new(
                451,
                "4.7.1",
                format!(
                    "<{}>: Recipient address rejected: this backup MX takes mail for {domain} only while its primary is down; try the primary MX",
                    context.recipient
                ),
            ),
            RejectReason::PrimaryUp,
        ))
    }

    async fn dnsbl(&self) -> Result<(), Refusal> {
        let Some(dns) = self.checks.dns.as_ref() else {
            return Ok(());
        };
        let verdict = self
            .dnsbl
            .get_or_init(|| dns.dnsbl.score_client(self.ip))
            .await;
        // `Dnsbl` has logged each failed site (`dnsbl_lookup_failed`): they never block.
        let threshold = self.checks.config.dnsbl.threshold;
        if verdict.blocks(threshold) {
            self.metrics.spam_check("dnsbl", "listed");
            return Err(Refusal::new(verdict.reply(self.ip), RejectReason::Dnsbl));
        }
        let result = if verdict.failed.is_empty() {
            "clean"
        } else {
            "lookup_failed"
        };
        self.metrics.spam_check("dnsbl", result);
        Ok(())
    }

    async fn rhsbl(
        &self,
        transaction: &TransactionChecks,
        context: &RcptContext<'_>,
    ) -> Result<(), Refusal> {
        let (Some(dns), Some(sender)) = (self.checks.dns.as_ref(), context.sender) else {
            return Ok(());
        };
        let hit = transaction
            .rhsbl
            .get_or_init(|| dns.dnsbl.listed_domain(&sender.domain))
            .await;
        match hit {
            Some(hit) => {
                self.metrics.spam_check("rhsbl_sender", "listed");
                Err(Refusal::new(
                    hit.sender_reply(&sender.to_string()),
                    RejectReason::RhsblSender,
                ))
            }
            None => {
                self.metrics.spam_check("rhsbl_sender", "clean");
                Ok(())
            }
        }
    }

    async fn client_hostname(&self) -> Result<(), Refusal> {
        let Some(dns) = self.checks.dns.as_ref() else {
            return Ok(());
        };
        let status = self
            .hostname
            .get_or_init(|| client_hostname_status(&dns.resolver, self.ip))
            .await;
        self.metrics
            .spam_check("unknown_client_hostname", status.as_str());
        let code = self.checks.config.hygiene.unknown_client_reject_code;
        match sender::client_hostname_reply(status, self.ip, code) {
            Some(reply) => Err(Refusal::new(reply, RejectReason::UnknownClientHostname)),
            None => Ok(()),
        }
    }

    async fn sender_domain(
        &self,
        transaction: &TransactionChecks,
        context: &RcptContext<'_>,
    ) -> Result<(), Refusal> {
        let (Some(dns), Some(sender)) = (self.checks.dns.as_ref(), context.sender) else {
            return Ok(());
        };
        let status = transaction
            .sender_domain
            .get_or_init(|| sender_domain_status(&dns.resolver, &sender.domain))
            .await;
        self.metrics
            .spam_check("unknown_sender_domain", status.as_str());
        let code = self.checks.config.hygiene.unknown_address_reject_code;
        match sender::sender_domain_reply(status, &sender.to_string(), &sender.domain, code) {
            Some(reply) => Err(Refusal::new(reply, RejectReason::UnknownSenderDomain)),
            None => Ok(()),
        }
    }

    async fn spf(
        &self,
        transaction: &TransactionChecks,
        context: &RcptContext<'_>,
    ) -> Result<(), Refusal> {
        let Some(dns) = self.checks.dns.as_ref() else {
            return Ok(());
        };
        let sender = context.sender.map(Mailbox::to_string).unwrap_or_default();
        let evaluation = transaction
            .spf
            .get_or_init(|| {
                dns.spf
                    .evaluate(self.ip, context.helo, &sender, context.hostname)
            })
            .await;
        self.metrics.spam_check("spf", evaluation.result.as_str());
        if evaluation.result == SpfResult::Fail && self.checks.config.spf.reject_fail {
            return Err(Refusal::new(
                super::spf::fail_reply(&sender),
                RejectReason::SpfFail,
            ));
        }
        Ok(())
    }

    async fn verify(&self, context: &RcptContext<'_>) -> Result<(), Refusal> {
        let Some(fleet) = self.checks.fleet.as_ref() else {
            return Ok(());
        };
        let address = context.recipient.to_string().to_lowercase();
        let domain = &context.recipient.domain;
        let outcome = verify::decide(
            &self.checks.config.verify,
            fleet.state.as_ref(),
            fleet.prober.as_ref(),
            domain,
            &address,
        )
        .await;
        let (source, result) = outcome.labels();
        info!(client = %self.ip, to = %address, source, result, "recipient_verification");
        self.metrics.spam_check(
            "verify_recipients",
            match (source, result) {
                ("cache", "valid") => "cache_valid",
                ("cache", _) => "cache_invalid",
                ("probe", "valid") => "probe_valid",
                ("probe", _) => "probe_invalid",
                _ => "unknown",
            },
        );
        let rejected = |reply: Reply| Err(Refusal::new(reply, RejectReason::UnverifiedRecipient));
        match outcome {
            VerifyOutcome::CachedValid | VerifyOutcome::ProbedValid => Ok(()),
            VerifyOutcome::CachedInvalid { reply } | VerifyOutcome::ProbedInvalid { reply } => {
                rejected(Reply::new(
                    550,
                    "5.1.1",
                    format!(
                        "<{address}>: Recipient address rejected: undeliverable address: the primary MX said: {}",
                        crate::policy::echo(&reply)
                    ),
                ))
            }
            VerifyOutcome::Unknown { action, reason } => match action {
                UnknownRecipientAction::Accept => Ok(()),
                UnknownRecipientAction::Defer => rejected(Reply::new(
                    450,
                    "4.1.1",
                    format!(
                        "<{address}>: Recipient address rejected: unverified address: {}",
                        crate::policy::echo(&reason)
                    ),
                )),
            },
        }
    }

    fn greylist(&self, context: &RcptContext<'_>) -> Result<(), Refusal> {
        let Some(fleet) = self.checks.fleet.as_ref() else {
            return Ok(());
        };
        let sender = context.sender.map(Mailbox::to_string).unwrap_or_default();
        let recipient = context.recipient.to_string();
        let config = &self.checks.config.greylisting;
        let outcome = greylist::decide(
            config,
            &self.checks.greylist_allowlist,
            fleet.state.as_ref(),
            self.ip,
            &sender,
            &recipient,
        );
        self.metrics.spam_check("greylisting", outcome.as_str());
        if !outcome.defers() {
            if outcome == GreylistOutcome::Passed {
                info!(client = %self.ip, from = %sender, to = %recipient, "greylist_passed");
            }
            return Ok(());
        }
        let retry_in = outcome.retry_in(config).as_secs().max(1);
        Err(Refusal::new(
            Reply::new(
                451,
                "4.7.1",
                format!(
                    "<{recipient}>: Recipient address rejected: Greylisted, try again in {retry_in} seconds"
                ),
            ),
            RejectReason::Greylisted,
        ))
    }
}
