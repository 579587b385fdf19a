//! STARTTLS over a real handshake (and the command-injection defence), and the
//! listener's connection limits over real TCP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MemoryIntake, config, spawn_session};
use mxfleet_smtp::listener::{ConnectionLimits, serve};
use mxfleet_smtp::tls::{CertificatePem, server_config};
use mxfleet_smtp::{MessageIntake, SessionConfig};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Reads one complete (possibly multi-line) SMTP reply.
async fn read_reply<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> String {
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(n > 0, "connection closed; got so far: {reply:?}");
        reply.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            return reply;
        }
    }
}

fn tls_config(base: Arc<SessionConfig>) -> (Arc<SessionConfig>, rustls::RootCertStore) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let server = server_config(&[CertificatePem {
        chain: generated.cert.pem().into_bytes(),
        key: generated.signing_key.serialize_pem().into_bytes(),
        names: vec!["localhost".into()],
    }])
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone()).unwrap();
    let mut config = (*base).clone();
    config.tls = Some(server);
    (Arc::new(config), roots)
}

async fn tls_client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    roots: rustls::RootCertStore,
) -> tokio_rustls::client::TlsStream<S> {
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), stream)
        .await
        .expect("TLS handshake")
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded_not_executed() {
    let (config, roots) = tls_config(config(|_| {}));
    let intake = Arc::new(MemoryIntake::default());
    let (client, session) = spawn_session(
        config,
        intake as Arc<dyn MessageIntake>,
        CancellationToken::new(),
    );
    let mut plain = BufReader::new(client);
    assert!(read_reply(&mut plain).await.starts_with("220 "));
    plain
        .get_mut()
        .write_all(b"EHLO c.example\r\n")
        .await
        .unwrap();
    let ehlo = read_reply(&mut plain).await;
    assert!(
        ehlo.contains("250 STARTTLS\r\n"),
        "STARTTLS offered: {ehlo}"
    );
    // A man in the middle appends a command to the plaintext STARTTLS packet.
    plain
        .get_mut()
        .write_all(b"STARTTLS\r\nMAIL FROM:<injected@attacker.example>\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_reply(&mut plain).await,
        "220 2.0.0 Ready to start TLS\r\n"
    );
    let tls = tls_client(plain.into_inner(), roots).await;
    let mut tls = BufReader::new(tls);
    // If the injected MAIL had run, it would answer first (and a transaction would be open).
    tls.get_mut()
        .write_all(b"MAIL FROM:<real@client.example>\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_reply(&mut tls).await,
        "503 5.5.1 Error: send HELO/EHLO first\r\n"
    );
    tls.get_mut()
        .write_all(b"EHLO c.example\r\n")
        .await
        .unwrap();
    let after = read_reply(&mut tls).await;
    assert!(
        !after.contains("STARTTLS"),
        "not offered again inside TLS: {after}"
    );
    tls.get_mut()
        .write_all(b"STARTTLS\r\nQUIT\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_reply(&mut tls).await,
        "503 5.5.1 Error: TLS already active\r\n"
    );
    assert_eq!(read_reply(&mut tls).await, "221 2.0.0 Bye\r\n");
    session.await.unwrap();
}

#[tokio::test]
async fn a_client_over_its_connection_limit_gets_421() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(serve(
        listener,
        config(|_| {}),
        ConnectionLimits {
            max_connections: 10,
            max_per_client: 2,
        },
        Arc::new(MemoryIntake::default()) as Arc<dyn MessageIntake>,
        shutdown.clone(),
        tracker.clone(),
    ));
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut connection = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        assert!(read_reply(&mut connection).await.starts_with("220 "));
        held.push(connection);
    }
    let mut third = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    assert_eq!(
        read_reply(&mut third).await,
        "421 4.7.0 mx2.example.org Error: too many connections from your IP\r\n"
    );
    // Closing one frees its slot.
    drop(held.pop());
    let mut again = None;
    for _ in 0..100 {
        let mut connection = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        if read_reply(&mut connection).await.starts_with("220 ") {
            again = Some(connection);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a freed slot is reusable");
    shutdown.cancel();
    tracker.close();
    drop(held);
    drop(again);
    tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .expect("listener stops");
}
