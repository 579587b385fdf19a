//! The content phase after `354`: the prefix, then the stored content read in chunks,
//! dot-stuffed, each write under the data-block timeout; then the reply to the final
//! dot. Once the dot is out, any failure to get its reply becomes
//! [`ClientError::LostAfterDot`]: the server may already have taken the message.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use super::body::DotStuffer;
use super::{ClientError, SmtpConnection, Stage};
use crate::reply::RemoteReply;

/// Content bytes read per chunk, and roughly the size of each write.
const CONTENT_CHUNK: usize = 64 * 1024;

impl SmtpConnection {
    /// Streams `prefix` and `body` with the end marker. Never holds more than about two
    /// chunks in memory.
    pub(super) async fn send_content(
        &mut self,
        prefix: &[u8],
        mut body: impl AsyncRead + Unpin,
        not_after: Option<&watch::Receiver<Instant>>,
    ) -> Result<(), ClientError> {
        let limit = self.timeouts.data_block;
        let mut stuffer = DotStuffer::default();
        let mut wire = Vec::with_capacity(2 * CONTENT_CHUNK);
        stuffer.push(prefix, &mut wire);
        let mut chunk = vec![0u8; CONTENT_CHUNK];
        loop {
            if wire.len() >= CONTENT_CHUNK {
                self.write_all(&wire, Stage::Data, limit).await?;
                wire.clear();
            }
            let read = body
                .read(&mut chunk)
                .await
                .map_err(|source| ClientError::BodyRead {
                    host: self.host.clone(),
                    source,
                })?;
            if read == 0 {
                break;
            }
            stuffer.push(&chunk[..read], &mut wire);
        }
        if not_after.is_some() {
            // The content goes out first; the end marker only while the window holds.
            self.write_all(&wire, Stage::Data, limit).await?;
            wire.clear();
            if not_after.is_some_and(|deadline| Instant::now() >= *deadline.borrow()) {
                warn!(host = %self.host, "smtp_client_window_closed_before_dot");
                return Err(ClientError::WindowClosed {
                    host: self.host.clone(),
                });
            }
        }
        stuffer.finish(&mut wire);
        // Until this write completes the server has no end marker, so a failure here
        // is an ordinary data-stage error: nothing was delivered.
        self.write_all(&wire, Stage::Data, limit).await
    }

    /// The reply to the final dot, or `LostAfterDot`.
    pub(super) async fn read_final_reply(&mut self) -> Result<RemoteReply, ClientError> {
        match self
            .read_reply(Stage::Dot, self.timeouts.data_termination)
            .await
        {
            Ok(reply) => Ok(reply),
            Err(source) => {
                warn!(host = %self.host, cause = %source, "smtp_client_lost_after_dot");
                Err(ClientError::LostAfterDot {
                    host: self.host.clone(),
                    source: Box::new(source),
                })
            }
        }
    }
}
