//! The opening of a session: the `220` greeting, then EHLO, falling back to HELO when
//! the server refuses EHLO with a 5xx (RFC 5321 §3.2). Capabilities are replaced on
//! every EHLO, so after STARTTLS only what the server announced inside TLS counts.

use tracing::{debug, info};

use super::response::Capabilities;
use super::{ClientError, SmtpConnection, Stage};

impl SmtpConnection {
    /// Reads the greeting; anything but `220` refuses the session.
    pub(super) async fn read_greeting(&mut self) -> Result<(), ClientError> {
        let reply = self
            .read_reply(Stage::Greeting, self.timeouts.greeting)
            .await?;
        if reply.code != 220 {
            info!(host = %self.host, %reply, "smtp_client_greeting_refused");
            return Err(ClientError::Rejected {
                host: self.host.clone(),
                stage: Stage::Greeting,
                reply,
            });
        }
        debug!(host = %self.host, %reply, "smtp_client_greeting");
        Ok(())
    }

    /// EHLO, or HELO after a 5xx to EHLO; records the capabilities.
    pub(super) async fn hello(&mut self) -> Result<(), ClientError> {
        let limit = self.timeouts.helo;
        let ehlo = format!("EHLO {}\r\n", self.helo_name);
        self.write_all(ehlo.as_bytes(), Stage::Ehlo, limit).await?;
        let raw = self.read_raw_reply(Stage::Ehlo, limit).await?;
        let reply = raw
            .parse()
            .map_err(|malformed| ClientError::MalformedReply {
                host: self.host.clone(),
                stage: Stage::Ehlo,
                detail: malformed.0,
            })?;
        if reply.code == 250 {
            self.capabilities = raw.capabilities();
            return Ok(());
        }
        if reply.code < 500 {
            return Err(self.hello_refused(reply));
        }
        info!(host = %self.host, %reply, "smtp_client_ehlo_refused_trying_helo");
        let helo = format!("HELO {}\r\n", self.helo_name);
        self.write_all(helo.as_bytes(), Stage::Ehlo, limit).await?;
        let reply = self.read_reply(Stage::Ehlo, limit).await?;
        if reply.code != 250 {
            return Err(self.hello_refused(reply));
        }
        self.capabilities = Capabilities::default();
        Ok(())
    }

    fn hello_refused(&self, reply: crate::RemoteReply) -> ClientError {
        info!(host = %self.host, %reply, "smtp_client_hello_refused");
        ClientError::Rejected {
            host: self.host.clone(),
            stage: Stage::Ehlo,
            reply,
        }
    }
}
