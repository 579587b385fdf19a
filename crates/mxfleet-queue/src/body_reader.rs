//! [`BodyReader`]: a stored message body as delivery and the admin API read it, hashed
//! again on the way so that bytes that change between the check at open and the read
//! (a disk that returns different data the second time) are never passed on as whole.
//!
//! `Queue::open_body` checks the whole body before it hands out a reader; this is the
//! second line. When the reader reaches the end and the digest does not match, the read
//! that would have reported the end fails instead (`InvalidData`), and keeps failing.
//! A reader that streams into an SMTP DATA phase therefore fails before it can write
//! the final dot, and the receiving server discards the partial message. Readers that
//! stop early (headers for `queue show`, the quoted start of a DSN) get no check beyond
//! the one at open.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use mxfleet_core::BodyDigest;
use sha2::{Digest, Sha256};
use tokio::fs::File;
use tokio::io::{AsyncRead, ReadBuf};
use tracing::warn;

/// Where the reader is in its check.
enum Check {
    /// Hashing what has been read so far; the end has not been seen.
    Reading(Sha256),
    /// The end was reached and everything read matched the digest.
    Matched,
    /// The end was reached and the bytes hashed to this instead: every further read
    /// fails.
    Mismatched(BodyDigest),
}

/// A body file that verifies its SHA-256 when it reaches the end. See the module docs.
pub struct BodyReader {
    file: File,
    digest: BodyDigest,
    check: Check,
}

impl BodyReader {
    /// Reads `file` from its current position, which must be the start of the body
    /// named `digest`.
    pub fn new(file: File, digest: BodyDigest) -> Self {
        BodyReader {
            file,
            digest,
            check: Check::Reading(Sha256::new()),
        }
    }

    fn mismatch_error(&self, actual: &BodyDigest) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "body {} changed while it was read (its bytes hash to {actual})",
                self.digest
            ),
        )
    }
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Every field is Unpin, so the reader is too.
        let this = self.get_mut();
        if let Check::Mismatched(actual) = &this.check {
            return Poll::Ready(Err(this.mismatch_error(actual)));
        }
        let before = buf.filled().len();
        // A read into a full buffer returns nothing without meaning the end.
        let room = buf.remaining() > 0;
        ready!(Pin::new(&mut this.file).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        let Check::Reading(hasher) = &mut this.check else {
            return Poll::Ready(Ok(()));
        };
        if !read.is_empty() {
            hasher.update(read);
            return Poll::Ready(Ok(()));
        }
        if !room {
            return Poll::Ready(Ok(()));
        }
        let actual = BodyDigest(std::mem::take(hasher).finalize().into());
        if actual == this.digest {
            this.check = Check::Matched;
            return Poll::Ready(Ok(()));
        }
        warn!(digest = %this.digest, actual = %actual, "body_changed_while_read");
        let error = this.mismatch_error(&actual);
        this.check = Check::Mismatched(actual);
        Poll::Ready(Err(error))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn reader_over(dir: &tempfile::TempDir, bytes: &[u8], digest: BodyDigest) -> BodyReader {
        let path = dir.path().join("body");
        std::fs::write(&path, bytes).expect("write body");
        BodyReader::new(File::open(&path).await.expect("open body"), digest)
    }

    #[tokio::test]
    async fn a_matching_body_reads_to_the_end_in_any_chunk_size() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let body: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in [1usize, 7, 4096, 65_536] {
            let mut reader = reader_over(&dir, &body, BodyDigest::of(&body)).await;
            let mut read = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                read.extend_from_slice(&buf[..n]);
            }
            assert_eq!(read, body, "chunk {chunk}");
            // The end stays the end.
            assert_eq!(reader.read(&mut buf).await?, 0);
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_body_that_does_not_match_fails_at_the_end_and_stays_failed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut reader =
            reader_over(&dir, b"original bodY", BodyDigest::of(b"original body")).await;
        let error = reader
            .read_to_end(&mut Vec::new())
            .await
            .expect_err("the digest does not match");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error.to_string().contains("changed while it was read"),
            "{error}"
        );
        let again = reader.read(&mut [0u8; 16]).await.expect_err("still failed");
        assert_eq!(again.kind(), io::ErrorKind::InvalidData);
        Ok(())
    }

    #[tokio::test]
    async fn an_empty_body_matches_the_digest_of_nothing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut reader = reader_over(&dir, b"", BodyDigest::of(b"")).await;
        let mut read = Vec::new();
        assert_eq!(reader.read_to_end(&mut read).await?, 0);
        Ok(())
    }
}
