//! STARTTLS (RFC 3207): upgrade the connection, then forget everything said before it.
//!
//! Anything the client pipelined after STARTTLS arrived in plaintext, so it could have
//! been injected by a man in the middle; it is discarded, never executed inside the TLS
//! session (the CVE-2011-0411 class). After the handshake the client must say EHLO again.

use tracing::info;

use super::{Session, SessionEnd, Stop};
use crate::reply::Reply;

impl Session {
    pub(super) async fn starttls(&mut self) -> Result<(), Stop> {
        let Some(tls) = self.config.tls.clone() else {
            return self.error_reply(Reply::new(502, "5.5.1", "Error: command not implemented"));
        };
        if self.tls.is_some() {
            return self.error_reply(Reply::new(503, "5.5.1", "Error: TLS already active"));
        }
        if self.transaction.is_some() {
            return self.error_reply(Reply::new(
                503,
                "5.5.1",
                "Error: MAIL transaction in progress",
            ));
        }
        self.queue_reply(&Reply::new(220, "2.0.0", "Ready to start TLS"));
        self.flush().await?;
        if !self.input.is_empty() {
            info!(client = %self.client.addr, bytes = self.input.len(), "smtp_starttls_pipelined_input_discarded");
            self.input.clear();
        }
        let Some(plain) = self.io.take() else {
            return Err(Stop::Ended(SessionEnd::IoError));
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let handshake = acceptor.accept(plain);
        match tokio::time::timeout(self.config.limits.tls_handshake_timeout, handshake).await {
            Ok(Ok(stream)) => {
                let (_, connection) = stream.get_ref();
                let version = connection
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                let cipher = connection
                    .negotiated_cipher_suite()
                    .map(|c| format!("{:?}", c.suite()))
                    .unwrap_or_default();
                info!(client = %self.client.addr, %version, %cipher, "smtp_tls_established");
                self.tls = Some(format!("{version} {cipher}"));
                self.io = Some(Box::new(stream));
                self.greeting = None;
                self.transaction = None;
                Ok(())
            }
            Ok(Err(e)) => {
                info!(client = %self.client.addr, cause = %e, "smtp_tls_handshake_failed");
                Err(Stop::Ended(SessionEnd::TlsFailed))
            }
            Err(_) => {
                info!(client = %self.client.addr, "smtp_tls_handshake_timeout");
                Err(Stop::Ended(SessionEnd::Timeout))
            }
        }
    }
}
