//! `mxfleet test-primary --listen ADDR --dir DIR --domain D…`: the built-in primary of
//! `mxfleet dev` ([`super::dev_primary`]) on its own, as the primary MX of a test
//! fleet (`deploy/compose/compose.yaml`). It accepts mail for the given domains, any
//! local part, and writes each message to `DIR/<n>.eml`.
//!
//! A test sink, not a mail server: no TLS, no spam checks, no delivery onwards, and
//! nothing is fsynced. Never point a production fleet at it.
//!
//! Lifecycle: the listener runs on one `TaskTracker` until SIGTERM or SIGINT cancels
//! its token; sessions in progress then get `421` and the process exits once they are
//! gone, or after the shutdown deadline.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::{EXIT_FAILED, SHUTDOWN_DEADLINE};

#[derive(Args)]
pub struct TestPrimaryArgs {
    /// The address to accept SMTP on.
    #[arg(long, default_value = "127.0.0.1:2526")]
    listen: SocketAddr,
    /// Where each accepted message is written, as `<n>.eml` (created if missing;
    /// numbering continues after the files already there).
    #[arg(long)]
    dir: PathBuf,
    /// A domain to accept mail for, any local part; repeat for more.
    #[arg(long = "domain", required = true)]
    domains: Vec<String>,
    /// The name in the banner and the EHLO reply.
    #[arg(long, default_value = "test-primary")]
    hostname: String,
}

pub async fn run(args: TestPrimaryArgs) -> u8 {
    match serve(args).await {
        Ok(()) => 0,
        Err(e) => {
            error!(cause = %format!("{e:#}"), "test_primary_failed");
            EXIT_FAILED
        }
    }
}

async fn serve(args: TestPrimaryArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = super::dev_primary::serve_on(
        listener,
        &args.hostname,
        args.dir.clone(),
        &args.domains,
        shutdown.clone(),
        &tracker,
    )
    .await
    .with_context(|| format!("cannot use {}", args.dir.display()))?;
    info!(
        listen = %addr,
        dir = %args.dir.display(),
        domains = %args.domains.join(","),
        "test_primary_listening"
    );

    let signal = mxfleet_node::signals::stop_requested().await?;
    info!(signal, "stop_requested");
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        warn!(deadline = ?SHUTDOWN_DEADLINE, "test_primary_drain_timed_out");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    /// One SMTP client line out, and the reply's last line back (multi-line replies
    /// are read to their end).
    struct Client {
        reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
        writer: tokio::net::tcp::OwnedWriteHalf,
    }

    impl Client {
        async fn reply(&mut self) -> String {
            loop {
                let mut line = String::new();
                self.reader.read_line(&mut line).await.expect("read reply");
                assert!(!line.is_empty(), "connection closed");
                if line.as_bytes().get(3) != Some(&b'-') {
                    return line.trim_end().to_owned();
                }
            }
        }

        async fn send(&mut self, line: &str) -> String {
            self.writer
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .expect("write command");
            self.reply().await
        }
    }

    async fn deliver(addr: std::net::SocketAddr, to: &str, subject: &str) {
        let (read, writer) = TcpStream::connect(addr)
            .await
            .expect("connect")
            .into_split();
        let mut s = Client {
            reader: BufReader::new(read),
            writer,
        };
        assert!(s.reply().await.starts_with("220 "));
        assert!(s.send("EHLO client.test").await.starts_with("250 "));
        assert!(
            s.send("MAIL FROM:<a@sender.test>")
                .await
                .starts_with("250 ")
        );
        assert!(s.send(&format!("RCPT TO:<{to}>")).await.starts_with("250 "));
        assert!(s.send("DATA").await.starts_with("354 "));
        let body = format!("Subject: {subject}\r\n\r\nhello\r\n.");
        assert!(s.send(&body).await.starts_with("250 "));
        assert!(s.send("QUIT").await.starts_with("221 "));
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A restarted sink (compose restarts it over the same volume) numbers its files
    /// after the ones already there instead of overwriting them.
    #[tokio::test]
    async fn sink_writes_each_message_after_the_files_already_there() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("7.eml"), "earlier").expect("seed file");
        let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = super::super::dev_primary::serve_on(
            listener,
            "sink.test",
            dir.path().to_path_buf(),
            &["example.test".to_owned()],
            shutdown.clone(),
            &tracker,
        )
        .await
        .expect("serve");

        deliver(addr, "anyone@example.test", "first").await;
        assert_eq!(read(&dir.path().join("7.eml")), "earlier");
        assert!(read(&dir.path().join("8.eml")).contains("Subject: first"));

        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
