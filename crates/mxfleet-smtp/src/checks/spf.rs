//! SPF (RFC 7208) through mail-auth: the result for the MAIL FROM identity (the HELO
//! identity for the null sender, RFC 7208 §2.3), and the `Received-SPF:` header field
//! (§9.1) that delivery adds to the message.
//!
//! mail-auth asks the DNS through the checks' own hickory resolver (shared pool and
//! cache, absolute names). A whole evaluation, which may take up to ten lookups, is
//! limited by one deadline; running out is `temperror`.
//!
//! Everything the client chose (sender, HELO) is sanitised before it goes into the
//! header: control characters, `;`, quotes, backslashes and parentheses become `?`,
//! so that the client can neither end the field nor forge a key or a comment.
//!
//! Layout: [`SpfChecker`] → [`SpfEvaluation`] ([`SpfResult`], [`SpfIdentity`], the
//! header value), and [`fail_reply`] for a refused `fail`.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use mail_auth::MessageAuthenticator;
use mail_auth::spf::verify::SpfParameters;
use tracing::debug;

use crate::checks::dns::{CheckResolver, canonical_ip};
use crate::policy::echo;
use crate::reply::Reply;

/// An SPF result (RFC 7208 §2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl SpfResult {
    /// The name in the header, logs and metrics: `pass`, `softfail`, `temperror`...
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for SpfResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<mail_auth::SpfResult> for SpfResult {
    fn from(result: mail_auth::SpfResult) -> Self {
        match result {
            mail_auth::SpfResult::Pass => SpfResult::Pass,
            mail_auth::SpfResult::Fail => SpfResult::Fail,
            mail_auth::SpfResult::SoftFail => SpfResult::SoftFail,
            mail_auth::SpfResult::Neutral => SpfResult::Neutral,
            mail_auth::SpfResult::None => SpfResult::None,
            mail_auth::SpfResult::TempError => SpfResult::TempError,
            mail_auth::SpfResult::PermError => SpfResult::PermError,
        }
    }
}

/// Which identity was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpfIdentity {
    /// The MAIL FROM address.
    MailFrom,
    /// The HELO name, as `postmaster@<helo>`: the sender was null.
    Helo,
}

impl SpfIdentity {
    pub fn as_str(self) -> &'static str {
        match self {
            SpfIdentity::MailFrom => "mailfrom",
            SpfIdentity::Helo => "helo",
        }
    }
}

/// The outcome of one SPF evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpfEvaluation {
    pub result: SpfResult,
    pub identity: SpfIdentity,
    /// The value of a `Received-SPF:` field, without the name and the CRLF, unfolded:
    /// `pass (mx.example.net: domain of a@example.org designates 192.0.2.1 as
    /// permitted sender) client-ip=192.0.2.1; envelope-from="a@example.org";
    /// helo=mail.example.org; receiver=mx.example.net; identity=mailfrom;`
    pub received_spf: String,
}

/// Evaluates SPF with the checks' resolver.
#[derive(Clone)]
pub struct SpfChecker {
    authenticator: MessageAuthenticator,
    deadline: Duration,
}

impl fmt::Debug for SpfChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpfChecker")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl SpfChecker {
    /// RFC 7208 §4.6.4 lets a verifier stop after 20 seconds at the earliest.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);

    /// Asks the DNS through `resolver`'s hickory resolver (its nameservers, per-query
    /// timeout and cache); a whole evaluation may take [`Self::DEFAULT_DEADLINE`].
    pub fn new(resolver: &CheckResolver) -> Self {
        SpfChecker {
            authenticator: MessageAuthenticator(resolver.hickory().clone()),
            deadline: Self::DEFAULT_DEADLINE,
        }
    }

    /// Limits a whole evaluation to `deadline` instead.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// SPF for client `ip`, which said `helo` and gave `sender` (an address without
    /// `<>`, empty for the null sender), as seen by `our_hostname`.
    pub async fn evaluate(
        &self,
        ip: IpAddr,
        helo: &str,
        sender: &str,
        our_hostname: &str,
    ) -> SpfEvaluation {
        let ip = canonical_ip(ip);
        let (identity, parameters) = if sender.is_empty() {
            let parameters = SpfParameters::verify_ehlo(ip, helo, our_hostname);
            (SpfIdentity::Helo, parameters)
        } else {
            let parameters = SpfParameters::verify_mail_from(ip, helo, our_hostname, sender);
            (SpfIdentity::MailFrom, parameters)
        };
        let evaluation = self.authenticator.verify_spf(parameters);
        let result = match tokio::time::timeout(self.deadline, evaluation).await {
            Ok(output) => SpfResult::from(output.result()),
            Err(_) => SpfResult::TempError,
        };
        debug!(client = %ip, helo, from = sender, identity = identity.as_str(), result = result.as_str(), "spf_evaluated");
        SpfEvaluation {
            result,
            identity,
            received_spf: received_spf(result, identity, ip, helo, sender, our_hostname),
        }
    }
}

/// The refusal of a sender whose SPF result is `fail`, when that is configured:
/// `550 5.7.23 <sender>: Sender address rejected: SPF fail`.
pub fn fail_reply(sender: &str) -> Reply {
    Reply::new(
        550,
        "5.7.23",
        format!("<{}>: Sender address rejected: SPF fail", echo(sender)),
    )
}

/// The `Received-SPF:` value: the result, a comment in words, then RFC 7208 §9.1's
/// key-value pairs, each ended by `;`.
fn received_spf(
    result: SpfResult,
    identity: SpfIdentity,
    ip: IpAddr,
    helo: &str,
    sender: &str,
    receiver: &str,
) -> String {
    let checked = match identity {
        SpfIdentity::MailFrom => sanitise(sender),
        SpfIdentity::Helo => format!("postmaster@{}", sanitise(helo)),
    };
    let domain = checked.rsplit_once('@').map_or("", |(_, domain)| domain);
    let receiver_name = sanitise(receiver);
    let comment = match result {
        SpfResult::Pass => format!("domain of {checked} designates {ip} as permitted sender"),
        SpfResult::Fail => {
            format!("domain of {checked} does not designate {ip} as permitted sender")
        }
        SpfResult::SoftFail => {
            format!("transitioning domain of {checked} does not designate {ip} as permitted sender")
        }
        SpfResult::Neutral => {
            format!("{ip} is neither permitted nor denied by domain of {checked}")
        }
        SpfResult::None => format!("domain {domain} does not publish an SPF record"),
        SpfResult::TempError => {
            format!("temporary error looking up the SPF record of {domain}")
        }
        SpfResult::PermError => format!("permanent error in the SPF record of {domain}"),
    };
    let envelope_from = if sender.is_empty() { "<>" } else { sender };
    format!(
        "{result} ({receiver_name}: {comment}) client-ip={}; envelope-from={}; helo={}; receiver={}; identity={};",
        value(&ip.to_string()),
        value(envelope_from),
        value(helo),
        value(receiver),
        identity.as_str(),
    )
}

/// Client text made safe for the header: [`echo`]'s control characters and length
/// cut, and no character that could end a value or a comment.
fn sanitise(text: &str) -> String {
    echo(text)
        .chars()
        .map(|c| match c {
            ';' | '"' | '\\' | '(' | ')' => '?',
            other => other,
        })
        .collect()
}

/// A key-value pair's value: a dot-atom when it is one (`mail.example.org`), else a
/// quoted-string (`"a@example.org"`, `"2001:db8::1"`), as RFC 7208 §9.1's grammar asks.
fn value(text: &str) -> String {
    let text = sanitise(text);
    let atext =
        |c: char| c.is_ascii_alphanumeric() || !c.is_ascii() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = !text.is_empty()
        && text
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    if dot_atom {
        text
    } else {
        format!("\"{text}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> IpAddr {
        "192.0.2.1".parse().unwrap()
    }

    #[test]
    fn header_value_for_the_mail_from_identity() {
        let value = received_spf(
            SpfResult::Pass,
            SpfIdentity::MailFrom,
            ip(),
            "mail.example.org",
            "a@example.org",
            "mx2.example.net",
        );
        assert_eq!(
            value,
            "pass (mx2.example.net: domain of a@example.org designates 192.0.2.1 as permitted sender) \
             client-ip=192.0.2.1; envelope-from=\"a@example.org\"; helo=mail.example.org; \
             receiver=mx2.example.net; identity=mailfrom;"
        );
    }

    #[test]
    fn header_value_for_the_null_sender_names_the_helo_identity() {
        let value = received_spf(
            SpfResult::Fail,
            SpfIdentity::Helo,
            "2001:db8::1".parse().unwrap(),
            "mail.example.org",
            "",
            "mx2.example.net",
        );
        assert_eq!(
            value,
            "fail (mx2.example.net: domain of postmaster@mail.example.org does not designate \
             2001:db8::1 as permitted sender) client-ip=\"2001:db8::1\"; envelope-from=\"<>\"; \
             helo=mail.example.org; receiver=mx2.example.net; identity=helo;"
        );
    }

    #[test]
    fn client_text_cannot_forge_keys_comments_or_lines() {
        let value = received_spf(
            SpfResult::SoftFail,
            SpfIdentity::MailFrom,
            ip(),
            "evil; client-ip=10.0.0.1\r\nX-Injected: yes",
            "a(b)\"c\\d;@example.org",
            "mx2.example.net",
        );
        assert!(!value.contains(['\r', '\n']), "{value}");
        assert_eq!(value.matches(';').count(), 5, "{value}");
        assert_eq!(value.matches('(').count(), 1, "{value}");
        assert_eq!(value.matches(')').count(), 1, "{value}");
        assert!(
            value.contains("helo=\"evil? client-ip=10.0.0.1??X-Injected: yes\";"),
            "{value}"
        );
    }

    #[test]
    fn fail_reply_is_policyd_worded() {
        assert_eq!(
            fail_reply("a@example.org").to_string(),
            "550 5.7.23 <a@example.org>: Sender address rejected: SPF fail"
        );
    }
}
