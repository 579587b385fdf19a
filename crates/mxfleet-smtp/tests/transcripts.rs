//! Transcript tests: every verb and reply code of the session, over an in-memory
//! stream, against an in-memory intake. Each script is also replayed with its input
//! split into arbitrary chunks, and must produce byte-identical replies.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MemoryIntake, config, spawn_session};
use mxfleet_core::BodyDigest;
use mxfleet_smtp::{
    ClientInfo, IntakeError, MessageIntake, SessionConfig, SessionEnd, run_session,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Runs a session fed with `chunks` (written one after another) and returns everything
/// the server wrote, how the session ended, and what was queued.
async fn converse(
    config: Arc<SessionConfig>,
    chunks: Vec<Vec<u8>>,
) -> (String, SessionEnd, Arc<MemoryIntake>) {
    let intake = Arc::new(MemoryIntake::default());
    let (client, session) = spawn_session(
        config,
        intake.clone() as Arc<dyn MessageIntake>,
        CancellationToken::new(),
    );
    let (mut reader, mut writer) = tokio::io::split(client);
    let feeder = tokio::spawn(async move {
        for chunk in chunks {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        // Keep our side open: the server closes after QUIT or a fatal reply.
        std::future::pending::<()>().await;
    });
    let mut output = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut output)).await;
    feeder.abort();
    let end = session.await.unwrap();
    (String::from_utf8_lossy(&output).into_owned(), end, intake)
}

/// Splits `script` into chunks at pseudo-random points (seeded), including 1-byte ones.
fn chunked(script: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut chunks = Vec::new();
    let mut rest = script;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (state % 7) as usize + 1;
        let (head, tail) = rest.split_at(take.min(rest.len()));
        chunks.push(head.to_vec());
        rest = tail;
    }
    chunks
}

/// Runs `script` whole and in several chunkings; asserts identical replies; returns them.
async fn transcript(
    config: Arc<SessionConfig>,
    script: &str,
) -> (String, SessionEnd, Arc<MemoryIntake>) {
    let (whole, end, intake) = converse(config.clone(), vec![script.as_bytes().to_vec()]).await;
    for seed in 1..=4 {
        let (split, split_end, _) =
            converse(config.clone(), chunked(script.as_bytes(), seed)).await;
        assert_eq!(
            split, whole,
            "chunking with seed {seed} changed the replies"
        );
        assert_eq!(split_end, end);
    }
    (whole, end, intake)
}

/// The reply lines, without the banner.
fn replies(output: &str) -> Vec<&str> {
    output.lines().skip(1).collect()
}

#[tokio::test]
async fn a_pipelined_transaction_is_queued_with_one_reply_per_command() {
    let script = "EHLO client.example\r\nMAIL FROM:<sender@client.example> SIZE=100\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<anyone@example.net>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n";
    let (output, end, intake) = transcript(config(|_| {}), script).await;
    assert!(output.starts_with("220 mx2.example.org ESMTP mxfleet\r\n"));
    let lines = replies(&output);
    assert_eq!(
        lines,
        vec![
            "250-mx2.example.org",
            "250-PIPELINING",
            "250-SIZE 64000000",
            "250-8BITMIME",
            "250-SMTPUTF8",
            "250 ENHANCEDSTATUSCODES",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as 000000000001",
            "221 2.0.0 Bye",
        ]
    );
    assert_eq!(end, SessionEnd::Quit);
    let queued = intake.queued.lock().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0.sender, "sender@client.example");
    assert_eq!(
        queued[0].0.recipients,
        vec!["alice@example.org", "anyone@example.net"]
    );
    assert_eq!(
        queued[0].1,
        BodyDigest::of(b"Subject: hi\r\n\r\nbody\r\n.dot\r\n")
            .0
            .to_vec()
    );
}

#[tokio::test]
async fn every_verb_answers_with_its_code() {
    let script = "HELO client.example\r\nNOOP\r\nVRFY alice\r\nEXPN staff\r\nHELP\r\nRSET\r\nMAIL FROM:<>\r\nRSET\r\nQUIT\r\n";
    let (output, end, _) = transcript(config(|_| {}), script).await;
    let codes: Vec<&str> = replies(&output).iter().map(|l| &l[..3]).collect();
    assert_eq!(
        codes,
        vec![
            "250", "250", "252", "502", "214", "250", "250", "250", "221"
        ]
    );
    assert!(
        output.contains("250 mx2.example.org\r\n"),
        "HELO reply: {output}"
    );
    assert!(output.contains("502 5.5.1 Error: EXPN command is disabled"));
    assert_eq!(end, SessionEnd::Quit);
}

#[tokio::test]
async fn commands_out_of_sequence_get_503_and_unknown_ones_500() {
    let script = "MAIL FROM:<a@client.example>\r\nEHLO c.example\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nMAIL FROM:<a@client.example>\r\nMAIL FROM:<a@client.example>\r\nDATA\r\nFOO bar\r\nSTARTTLS\r\nQUIT\r\n";
    let (output, _, _) = transcript(config(|_| {}), script).await;
    let lines = replies(&output);
    assert_eq!(lines[0], "503 5.5.1 Error: send HELO/EHLO first");
    // lines[1..7] are the EHLO reply.
    assert_eq!(
        lines[7], "503 5.5.1 Error: need MAIL command",
        "RCPT before MAIL"
    );
    assert_eq!(
        lines[8], "503 5.5.1 Error: need MAIL command",
        "DATA before MAIL"
    );
    assert_eq!(
        lines[11], "503 5.5.1 Error: need RCPT command",
        "DATA before RCPT"
    );
    assert!(lines.contains(&"503 5.5.1 Error: nested MAIL command"));
    assert!(lines.contains(&"500 5.5.2 Error: command not recognized"));
    assert!(
        lines.contains(&"502 5.5.1 Error: command not implemented"),
        "STARTTLS without TLS: {output}"
    );
}

#[tokio::test]
async fn relay_and_recipient_checks_answer_at_rcpt_time() {
    let script = "EHLO c.example\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<mallory@example.org>\r\nRCPT TO:<victim@elsewhere.example>\r\nRCPT TO:<user%victim.example@example.org>\r\nRCPT TO:<user@[192.0.2.1]>\r\nRCPT TO:<Alice@EXAMPLE.org>\r\nQUIT\r\n";
    let (output, _, _) = transcript(config(|_| {}), script).await;
    let lines = replies(&output);
    assert!(
        lines[7].starts_with("550 5.1.1 <mallory@example.org>"),
        "{}",
        lines[7]
    );
    assert!(
        lines[8].starts_with("554 5.7.1 <victim@elsewhere.example>: Relay access denied"),
        "{}",
        lines[8]
    );
    assert!(
        lines[9].starts_with("554 5.7.1"),
        "percent hack: {}",
        lines[9]
    );
    // An address literal never reaches the relay check: the command parser refuses it.
    assert_eq!(
        lines[10], "501 5.1.3 Bad recipient address syntax",
        "IP literal"
    );
    assert_eq!(
        lines[11], "250 2.1.5 Ok",
        "case-insensitive listed recipient"
    );
}

#[tokio::test]
async fn a_declared_size_over_the_limit_is_refused_at_mail() {
    let script = "EHLO c.example\r\nMAIL FROM:<s@client.example> SIZE=1000001\r\nQUIT\r\n";
    let (output, _, _) = transcript(config(|l| l.max_message_size = 1_000_000), script).await;
    assert!(
        output.contains("552 5.3.4 Message size exceeds fixed limit"),
        "{output}"
    );
}

#[tokio::test]
async fn an_undeclared_oversized_message_is_refused_after_the_dot_and_nothing_is_queued() {
    let body = "x".repeat(300) + "\r\n";
    let script = format!(
        "EHLO c.example\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n{}.\r\nQUIT\r\n",
        body.repeat(10)
    );
    let (output, end, intake) = transcript(config(|l| l.max_message_size = 1000), &script).await;
    assert!(
        output.contains("552 5.3.4 Message size exceeds fixed limit"),
        "{output}"
    );
    assert_eq!(
        end,
        SessionEnd::Quit,
        "the session goes on after the refusal"
    );
    assert!(intake.queued.lock().unwrap().is_empty());
}

#[tokio::test]
async fn too_many_recipients_get_452_and_the_rest_are_kept() {
    let script = "EHLO c.example\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n";
    let (output, _, intake) = transcript(config(|l| l.max_recipients = 2), script).await;
    assert!(
        output.contains("452 4.5.3 Error: too many recipients"),
        "{output}"
    );
    assert_eq!(intake.queued.lock().unwrap()[0].0.recipients.len(), 2);
}

#[tokio::test]
async fn smuggling_vectors_never_end_data_and_the_message_is_refused() {
    for vector in ["\n.\r\n", "\r\n.\n", "\n.\n", "\r.\r", "\r.\r\n"] {
        let script = format!(
            "EHLO c.example\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: a{vector}MAIL FROM:<evil@client.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n"
        );
        let (output, end, intake) = transcript(config(|_| {}), &script).await;
        let lines = replies(&output);
        assert!(
            lines.iter().any(|l| l.starts_with("554 5.6.0")),
            "vector {vector:?}: {output}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("250 2.0.0 Ok: queued")),
            "vector {vector:?}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("354")).count(),
            1,
            "vector {vector:?}"
        );
        assert_eq!(end, SessionEnd::Quit);
        assert!(intake.queued.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_looping_message_is_refused() {
    let headers = "Received: from a by b; Mon, 1 Jan 2026 00:00:00 +0000\r\n".repeat(51);
    let script = format!(
        "EHLO c.example\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n{headers}\r\nbody\r\n.\r\nQUIT\r\n"
    );
    let (output, _, _) = transcript(config(|_| {}), &script).await;
    assert!(output.contains("554 5.4.6"), "{output}");
}

#[tokio::test]
async fn no_quorum_answers_451_and_disk_full_452() {
    let script = "EHLO c.example\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n";
    for (fail, expected) in [
        (
            (|| IntakeError::NoQuorum("cut off".into())) as fn() -> IntakeError,
            "451 4.3.0",
        ),
        (
            (|| IntakeError::StorageFull("disk".into())) as fn() -> IntakeError,
            "452 4.3.1",
        ),
    ] {
        let intake = Arc::new(MemoryIntake::default());
        *intake.fail_with.lock().unwrap() = Some(fail);
        let (client, session) = spawn_session(
            config(|_| {}),
            intake.clone() as Arc<dyn MessageIntake>,
            CancellationToken::new(),
        );
        let (mut reader, mut writer) = tokio::io::split(client);
        writer.write_all(script.as_bytes()).await.unwrap();
        let mut output = String::new();
        reader.read_to_string(&mut output).await.unwrap();
        session.await.unwrap();
        assert!(output.contains(expected), "{expected}: {output}");
    }
}

#[tokio::test]
async fn too_many_errors_end_the_session_with_421() {
    let script = "EHLO c.example\r\nBAD\r\nBAD\r\nBAD\r\nNOOP\r\n";
    let (output, end, _) = transcript(config(|l| l.max_errors = 3), script).await;
    assert!(
        output.ends_with("421 4.7.0 mx2.example.org Error: too many errors\r\n"),
        "{output}"
    );
    assert_eq!(end, SessionEnd::TooManyErrors);
}

#[tokio::test]
async fn an_overlong_command_line_is_refused() {
    let script = format!("EHLO c.example\r\nNOOP {}\r\nQUIT\r\n", "x".repeat(3000));
    let (output, _, _) = transcript(config(|_| {}), &script).await;
    assert!(
        output.contains("500 5.5.2 Error: line too long"),
        "{output}"
    );
    assert!(output.contains("221 2.0.0 Bye"));
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_dropped_with_421_after_the_command_timeout() {
    let intake = Arc::new(MemoryIntake::default());
    let (client, session) = spawn_session(
        config(|l| l.command_timeout = Duration::from_secs(300)),
        intake as Arc<dyn MessageIntake>,
        CancellationToken::new(),
    );
    let (mut reader, mut writer) = tokio::io::split(client);
    writer
        .write_all(b"EHLO slow.example\r\nMAIL FROM:<s@client.example>\r\n")
        .await
        .unwrap();
    let mut output = String::new();
    reader.read_to_string(&mut output).await.unwrap();
    assert_eq!(session.await.unwrap(), SessionEnd::Timeout);
    assert!(
        output.ends_with("421 4.4.2 mx2.example.org Error: timeout exceeded\r\n"),
        "{output}"
    );
}

#[tokio::test]
async fn shutdown_answers_421_to_an_idle_session() {
    let intake = Arc::new(MemoryIntake::default());
    let (client, server) = tokio::io::duplex(1 << 16);
    let shutdown = CancellationToken::new();
    let session = tokio::spawn(run_session(
        server,
        ClientInfo {
            addr: "192.0.2.7:1".parse().unwrap(),
        },
        config(|_| {}),
        intake as Arc<dyn MessageIntake>,
        shutdown.clone(),
    ));
    let (mut reader, mut writer) = tokio::io::split(client);
    writer.write_all(b"EHLO c.example\r\n").await.unwrap();
    let mut banner_and_ehlo = vec![0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("250 ENHANCEDSTATUSCODES") {
        let n = reader.read(&mut banner_and_ehlo).await.unwrap();
        seen.push_str(&String::from_utf8_lossy(&banner_and_ehlo[..n]));
    }
    shutdown.cancel();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "421 4.3.2 mx2.example.org Service shutting down\r\n");
    assert_eq!(session.await.unwrap(), SessionEnd::Shutdown);
}

#[tokio::test]
async fn too_many_transactions_in_one_session_get_421() {
    let one = "MAIL FROM:<s@client.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nhi\r\n.\r\n";
    let script = format!("EHLO c.example\r\n{}{}QUIT\r\n", one, one);
    let (output, end, intake) = transcript(config(|l| l.max_transactions = 1), &script).await;
    assert!(
        output.ends_with("421 4.7.0 mx2.example.org Error: too many messages in one session\r\n"),
        "{output}"
    );
    assert_eq!(end, SessionEnd::LimitReached);
    assert_eq!(intake.queued.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_trickling_data_is_cut_off_by_the_total_data_timeout() {
    let intake = Arc::new(MemoryIntake::default());
    let (client, session) = spawn_session(
        config(|l| {
            l.data_block_timeout = Duration::from_secs(180);
            l.data_total_timeout = Duration::from_secs(600);
        }),
        intake.clone() as Arc<dyn MessageIntake>,
        CancellationToken::new(),
    );
    let (mut reader, mut writer) = tokio::io::split(client);
    writer
        .write_all(b"EHLO slow.example\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        .await
        .unwrap();
    // One byte every 100 s: each read is within the per-read timeout, but the whole
    // DATA phase is not (slowloris).
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(100)).await;
            if writer.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut output = String::new();
    reader.read_to_string(&mut output).await.unwrap();
    trickle.abort();
    assert_eq!(session.await.unwrap(), SessionEnd::Timeout);
    assert!(
        output.ends_with("421 4.4.2 mx2.example.org Error: timeout exceeded\r\n"),
        "{output}"
    );
    assert!(intake.queued.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_message_id_header_is_recorded_in_the_envelope() {
    let script = "EHLO c.example\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\nMessage-ID:\r\n <m1@client.example>\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    let (_, _, intake) = transcript(config(|_| {}), script).await;
    let queued = intake.queued.lock().unwrap();
    assert_eq!(
        queued[0].0.message_id.as_deref(),
        Some("<m1@client.example>")
    );
}

#[tokio::test]
async fn etrn_flushes_relay_domains_for_allowed_clients_only() {
    let mut allowed = (*config(|_| {})).clone();
    allowed.etrn_networks = vec!["192.0.2.0/24".parse().unwrap()];
    let script = "ETRN example.org\r\nEHLO client.example\r\nETRN example.org\r\nETRN @example.net\r\nETRN other.example\r\nETRN #queue\r\nMAIL FROM:<>\r\nETRN example.org\r\nRSET\r\nQUIT\r\n";
    let (output, _, intake) = transcript(Arc::new(allowed), script).await;
    assert!(
        output.contains(" ETRN\r\n"),
        "EHLO announces ETRN: {output}"
    );
    let codes: Vec<&str> = replies(&output)
        .iter()
        .filter(|l| !l.starts_with("250-"))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        vec![
            "503", "250", "250", "250", "459", "501", "250", "503", "250", "221"
        ],
        "{output}"
    );
    assert!(
        output.contains("250 2.0.0 Queuing for node example.org started"),
        "{output}"
    );
    assert!(
        output.contains("459 4.7.1 <other.example>: service unavailable"),
        "{output}"
    );
    assert_eq!(
        *intake.flushed.lock().unwrap(),
        vec!["example.org".to_string(), "example.net".to_string()]
    );

    // Without ETRN networks, nobody may use it, and EHLO does not offer it.
    let (output, _, intake) = transcript(
        config(|_| {}),
        "EHLO client.example\r\nETRN example.org\r\nQUIT\r\n",
    )
    .await;
    assert!(
        !output.lines().any(|l| l == "250-ETRN" || l == "250 ETRN"),
        "EHLO must not offer ETRN: {output}"
    );
    assert!(
        output.contains("459 4.7.1 <example.org>: client not allowed to use ETRN"),
        "{output}"
    );
    assert!(intake.flushed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn etrn_answers_458_when_the_fleet_cannot_flush() {
    let mut allowed = (*config(|_| {})).clone();
    allowed.etrn_networks = vec!["192.0.2.7".parse().unwrap()];
    let intake = Arc::new(MemoryIntake::default());
    *intake.fail_with.lock().unwrap() = Some(|| IntakeError::NoQuorum("cut off".into()));
    let (client, session) = spawn_session(
        Arc::new(allowed),
        intake.clone() as Arc<dyn MessageIntake>,
        CancellationToken::new(),
    );
    let (mut reader, mut writer) = tokio::io::split(client);
    writer
        .write_all(b"EHLO client.example\r\nETRN example.org\r\nQUIT\r\n")
        .await
        .unwrap();
    let mut output = String::new();
    reader.read_to_string(&mut output).await.unwrap();
    session.await.unwrap();
    assert!(
        output.contains("458 4.3.0 Unable to queue messages for node example.org"),
        "{output}"
    );
}
