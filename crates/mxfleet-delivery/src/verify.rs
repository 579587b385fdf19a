//! Recipient verification: asks a relay domain's primary whether it would accept a
//! recipient, without sending a message (Postfix's `reject_unverified_recipient`,
//! Exim's callout), so that the SMTP session can refuse unknown users at RCPT instead
//! of accepting mail that would only bounce.
//!
//! Main types:
//! - [`RecipientVerifier`]: shares delivery's config (route and TLS per destination,
//!   client options) and router; cheap to clone.
//! - [`VerifyResult`]: `Valid`, `Invalid` (the primary refused the recipient for good),
//!   or `Unknown` (anything else: the caller decides, usually a 4xx or accept).
//!
//! One probe: route the domain to its primary exactly as delivery does (never the
//! fallback relay, which would accept anything), then target by target: connect, EHLO,
//! STARTTLS per the domain's policy (`probe::open_session`), `MAIL FROM:<sender>`,
//! `RCPT TO:<address>`, QUIT; never DATA. A target that cannot be connected to, or
//! whose session breaks, gives way to the next; the first RCPT or refused MAIL reply
//! decides. The whole probe, QUIT included, ends within the caller's timeout. Each
//! probe logs one `recipient_probe` line.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use crate::client::{RecipientCheck, SmtpConnection};
use crate::config::DeliveryConfig;
use crate::probe::{open_session, session_options};
use crate::route::Router;
use crate::target::ConnectTarget;

/// What the primary said about a recipient. Replies are one line, `code enhanced
/// text` (e.g. `550 5.1.1 <x@example.org>: user unknown`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyResult {
    /// RCPT got a 2xx.
    Valid { reply: String },
    /// RCPT got a 5xx: the primary will not take mail for this recipient.
    Invalid { reply: String },
    /// No verdict: a 4xx, a refused MAIL, no route, no host answering, or the timeout.
    Unknown { reason: String },
}

impl VerifyResult {
    /// `valid`, `invalid` or `unknown`, for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            VerifyResult::Valid { .. } => "valid",
            VerifyResult::Invalid { .. } => "invalid",
            VerifyResult::Unknown { .. } => "unknown",
        }
    }

    /// The remote reply or the reason.
    pub fn detail(&self) -> &str {
        match self {
            VerifyResult::Valid { reply } | VerifyResult::Invalid { reply } => reply,
            VerifyResult::Unknown { reason } => reason,
        }
    }
}

/// Verifies recipients against their domain's primary.
#[derive(Clone)]
pub struct RecipientVerifier {
    /// Delivery's config, shared: the same route and TLS policy per destination, and
    /// the same client options (HELO name, bind address, step timeouts).
    config: Arc<DeliveryConfig>,
    router: Arc<Router>,
}

impl RecipientVerifier {
    pub fn new(config: Arc<DeliveryConfig>, router: Arc<Router>) -> RecipientVerifier {
        RecipientVerifier { config, router }
    }

    /// Asks `domain`'s primary whether it accepts `address` from `sender` (`""`: the
    /// null sender), within `timeout` for the whole probe.
    pub async fn verify(
        &self,
        domain: &str,
        address: &str,
        sender: &str,
        timeout: Duration,
    ) -> VerifyResult {
        let deadline = Instant::now() + timeout;
        // The target being tried, kept outside the timed future so that a timeout can
        // still name it.
        let mut relay: Option<ConnectTarget> = None;
        let asked = tokio::time::timeout_at(
            deadline,
            self.ask_primary(domain, address, sender, &mut relay),
        )
        .await;
        let result = match asked {
            Ok((result, connection)) => {
                if let Some(connection) = connection {
                    // The verdict is in; QUIT only gets what time is left.
                    let _ = tokio::time::timeout_at(deadline, connection.quit()).await;
                }
                result
            }
            Err(_) => VerifyResult::Unknown {
                reason: format!("no verdict within {timeout:?}"),
            },
        };
        let relay = relay.map_or_else(|| "none".to_string(), |target| target.to_string());
        info!(
            domain,
            address,
            result = result.as_str(),
            relay = %relay,
            detail = result.detail(),
            "recipient_probe"
        );
        result
    }

    /// The verdict, and the connection that gave it (still to be closed).
    async fn ask_primary(
        &self,
        domain: &str,
        address: &str,
        sender: &str,
        relay: &mut Option<ConnectTarget>,
    ) -> (VerifyResult, Option<SmtpConnection>) {
        let destination = domain.to_ascii_lowercase();
        let policy = self.config.policy(&destination);
        let targets = match self.router.route(&destination, &policy.route.primary).await {
            Ok(targets) => targets,
            Err(e) => {
                let reason = format!("no route to the primary: {} ({e})", e.status());
                return (VerifyResult::Unknown { reason }, None);
            }
        };
        let options = session_options(&self.config, policy);
        let mut failures = Vec::new();
        for target in targets {
            *relay = Some(target.clone());
            let mut connection = match open_session(&target, &options).await {
                Ok(connection) => connection,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            match connection.check_recipient(sender, address).await {
                Ok(check) => return (verdict(&check), Some(connection)),
                Err(e) => {
                    failures.push(e.to_string());
                    connection.quit().await;
                }
            }
        }
        let reason = format!("no primary host answered: {}", failures.join("; "));
        (VerifyResult::Unknown { reason }, None)
    }
}

/// The verdict a recipient check's replies give: only RCPT decides, and only 2xx or
/// 5xx; a refused MAIL says nothing about the recipient.
fn verdict(check: &RecipientCheck) -> VerifyResult {
    if !(200..300).contains(&check.mail.code) {
        return VerifyResult::Unknown {
            reason: format!("MAIL FROM refused: {}", check.mail),
        };
    }
    match &check.rcpt {
        Some(rcpt) if (200..300).contains(&rcpt.code) => VerifyResult::Valid {
            reply: rcpt.to_string(),
        },
        Some(rcpt) if rcpt.code >= 500 => VerifyResult::Invalid {
            reply: rcpt.to_string(),
        },
        Some(rcpt) => VerifyResult::Unknown {
            reason: format!("RCPT TO: {rcpt}"),
        },
        None => VerifyResult::Unknown {
            reason: "RCPT not sent".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RemoteReply;

    fn reply(line: &str) -> RemoteReply {
        let (code, rest) = line.split_once(' ').expect("code and text");
        let (status, text) = rest.split_once(' ').expect("status and text");
        RemoteReply {
            code: code.parse().expect("numeric code"),
            status: Some(status.into()),
            text: text.into(),
        }
    }

    fn check(mail: &str, rcpt: Option<&str>) -> VerifyResult {
        verdict(&RecipientCheck {
            mail: reply(mail),
            rcpt: rcpt.map(reply),
        })
    }

    #[test]
    fn rcpt_2xx_is_valid_and_5xx_invalid_with_the_reply_line() {
        assert_eq!(
            check("250 2.1.0 Ok", Some("250 2.1.5 Ok")),
            VerifyResult::Valid {
                reply: "250 2.1.5 Ok".into()
            }
        );
        assert_eq!(
            check("250 2.1.0 Ok", Some("550 5.1.1 <x@y>: user unknown")),
            VerifyResult::Invalid {
                reply: "550 5.1.1 <x@y>: user unknown".into()
            }
        );
    }

    #[test]
    fn a_4xx_or_a_refused_mail_is_unknown() {
        assert_eq!(
            check("250 2.1.0 Ok", Some("450 4.2.1 try later")).as_str(),
            "unknown"
        );
        assert_eq!(check("550 5.7.1 no backups", None).as_str(), "unknown");
        assert_eq!(check("451 4.3.0 later", None).as_str(), "unknown");
    }
}
