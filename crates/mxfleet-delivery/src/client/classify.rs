//! The one place that decides whether an outcome of the SMTP client is temporary (try
//! again later, or at the next host) or permanent (give up and bounce).
//!
//! Replies follow their code class (RFC 5321 §4.2.1: 4xx transient, 5xx permanent),
//! through [`RemoteReply::severity`]. Connection-level errors are all temporary: they
//! say something about this host and this moment, never about the message or the
//! recipient. The match is exhaustive on purpose, so a new error variant has to be
//! classified here before it compiles.

use crate::reply::{RemoteReply, Severity};

use super::ClientError;

/// Temporary or permanent, for a reply or a connection-level error.
pub fn classify(outcome: Result<&RemoteReply, &ClientError>) -> Severity {
    match outcome {
        Ok(reply) => reply.severity(),
        Err(error) => match error {
            // Network trouble and silence: the host may be back later, or another MX
            // host may answer now.
            ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Io { .. }
            | ClientError::Closed { .. }
            | ClientError::MalformedReply { .. }
            | ClientError::Unusable { .. }
            | ClientError::WindowClosed { .. } => Severity::Temporary,
            // A refused greeting, EHLO/HELO or RSET concerns the session, not the
            // message: even a 5xx greeting means "use the next MX host".
            ClientError::Rejected { .. } => Severity::Temporary,
            // TLS trouble under any policy: the certificate, the offer or our own
            // settings may be fixed, and the caller may fall back to plaintext.
            ClientError::StartTlsNotOffered { .. }
            | ClientError::Tls { .. }
            | ClientError::TlsConfig { .. } => Severity::Temporary,
            // Our own storage failed mid-DATA; the server saw no final dot.
            ClientError::BodyRead { .. } => Severity::Temporary,
            // Possibly delivered: retrying risks a duplicate, giving up risks a loss,
            // and a duplicate is the lesser harm (RFC 1047). The caller counts these.
            ClientError::LostAfterDot { .. } => Severity::Temporary,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use super::*;
    use crate::client::Stage;

    fn reply(code: u16, status: Option<&str>) -> RemoteReply {
        RemoteReply {
            code,
            status: status.map(str::to_owned),
            text: "text".into(),
        }
    }

    fn host() -> String {
        "mx.example.org[192.0.2.1]:25".into()
    }

    #[test]
    fn reply_codes_follow_their_class() {
        assert_eq!(
            classify(Ok(&reply(451, Some("4.3.0")))),
            Severity::Temporary
        );
        assert_eq!(classify(Ok(&reply(421, None))), Severity::Temporary);
        assert_eq!(
            classify(Ok(&reply(452, Some("4.2.2")))),
            Severity::Temporary
        );
        assert_eq!(
            classify(Ok(&reply(550, Some("5.1.1")))),
            Severity::Permanent
        );
        assert_eq!(
            classify(Ok(&reply(552, Some("5.3.4")))),
            Severity::Permanent
        );
        assert_eq!(classify(Ok(&reply(554, None))), Severity::Permanent);
    }

    #[test]
    fn a_5xx_greeting_is_temporary_for_the_message() {
        let error = ClientError::Rejected {
            host: host(),
            stage: Stage::Greeting,
            reply: reply(554, Some("5.7.1")),
        };
        assert_eq!(error.severity(), Severity::Temporary);
        assert_eq!(error.reply().map(|r| r.code), Some(554));
    }

    #[test]
    fn connection_and_tls_errors_are_temporary() {
        let errors = [
            ClientError::Connect {
                host: host(),
                source: io::ErrorKind::ConnectionRefused.into(),
            },
            ClientError::Timeout {
                host: host(),
                stage: Stage::Rcpt,
                after: Duration::from_secs(300),
            },
            ClientError::Closed {
                host: host(),
                stage: Stage::Mail,
            },
            ClientError::StartTlsNotOffered { host: host() },
            ClientError::Tls {
                host: host(),
                source: io::Error::other("bad certificate"),
            },
        ];
        for error in errors {
            assert_eq!(error.severity(), Severity::Temporary, "{error}");
        }
    }

    #[test]
    fn lost_after_dot_is_temporary_and_flagged() {
        let error = ClientError::LostAfterDot {
            host: host(),
            source: Box::new(ClientError::Closed {
                host: host(),
                stage: Stage::Dot,
            }),
        };
        assert!(error.is_lost_after_dot());
        assert_eq!(error.severity(), Severity::Temporary);
        assert_eq!(error.stage(), Stage::Dot);
    }
}
