//! The numbered test messages (sans-IO): headers, a pseudo-random body, dot-stuffing for
//! the wire, and the hash the checker compares.
//!
//! Every message starts with `X-Chaos-Id: {n}`, so whatever the fleet prepends (its
//! `Received:` header) can be cut off by finding that line again. The bytes depend only on
//! the seed, the message number and the configuration, never on the clock, so a
//! resubmission sends exactly the same bytes and a run can be replayed from its seed.

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};

/// The name of every message's first header field.
pub const CHAOS_ID_HEADER: &str = "X-Chaos-Id";

/// Body lines stay within the 78 characters RFC 5322 recommends.
const MAX_LINE: usize = 78;

/// Characters of body lines: printable ASCII, including the space and the dot.
const LINE_CHARS: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_!?()";

/// A fixed date: the header must not depend on the clock (see the module header).
const DATE: &str = "Thu, 1 Jan 2026 00:00:00 +0000";

/// One message, ready to submit any number of times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChaosMessage {
    pub id: u64,
    /// `<chaos-{seed}-{id}@load.chaos>`.
    pub message_id: String,
    pub sender: String,
    pub recipient: String,
    /// The message as submitted: unstuffed, CRLF line endings, ending in CRLF.
    pub content: Vec<u8>,
    /// Hex SHA-256 of `content`.
    pub sha256: String,
}

impl ChaosMessage {
    /// Message `id` of the run seeded with `seed`, with a body of about `body_len` bytes
    /// (exactly, or one byte less when a line ending does not fit).
    pub fn build(
        seed: u64,
        id: u64,
        sender: &str,
        recipient_domain: &str,
        body_len: usize,
    ) -> ChaosMessage {
        let message_id = format!("<chaos-{seed}-{id}@load.chaos>");
        let recipient = format!("user{}@{recipient_domain}", id % 50);
        let mut content = format!(
            "{CHAOS_ID_HEADER}: {id}\r\nFrom: <{sender}>\r\nTo: <{recipient}>\r\n\
             Subject: chaos message {id}\r\nDate: {DATE}\r\nMessage-ID: {message_id}\r\n\r\n"
        )
        .into_bytes();
        content.extend(body(&mut message_rng(seed, id, 0), body_len));
        let sha256 = sha256_hex(&content);
        ChaosMessage {
            id,
            message_id,
            sender: sender.to_owned(),
            recipient,
            content,
            sha256,
        }
    }
}

/// A random source for message `id`'s decision number `stream` that does not depend on
/// which worker handles the message or when.
pub fn message_rng(seed: u64, id: u64, stream: u64) -> StdRng {
    let mixed = seed
        ^ id.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ stream.wrapping_add(1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    StdRng::seed_from_u64(mixed)
}

/// Short random lines with CRLF endings, `len` bytes (or one less). About one line in
/// six starts with a dot and one in twenty is a lone dot, so every message exercises
/// dot-stuffing, including the line that would otherwise end DATA.
fn body(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len);
    while len.saturating_sub(body.len()) >= 2 {
        let room = len - body.len() - 2;
        if room >= 1 && rng.random_ratio(1, 20) {
            body.extend_from_slice(b".\r\n");
            continue;
        }
        let width = rng.random_range(0..=MAX_LINE).min(room);
        let start = body.len();
        body.extend((0..width).map(|_| LINE_CHARS[rng.random_range(0..LINE_CHARS.len())]));
        if width > 0 && rng.random_ratio(1, 6) {
            body[start] = b'.';
        }
        body.extend_from_slice(b"\r\n");
    }
    body
}

/// DATA content for the wire: every line starting with `.` gets another one (RFC 5321
/// §4.5.2), then the final `.` line. `content` must end in CRLF.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(content.len() + content.len() / 40 + 3);
    for line in content.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b".") {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a receiver does with DATA content: up to the `.` line, one leading dot off
    /// each line. `None` if the terminator is missing or something follows it.
    fn unstuff(wire: &[u8]) -> Option<Vec<u8>> {
        let mut content = Vec::new();
        let mut lines = wire.split_inclusive(|b| *b == b'\n');
        for line in lines.by_ref() {
            if line == b".\r\n" {
                return lines.next().is_none().then_some(content);
            }
            content.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        None
    }

    fn lines(content: &[u8]) -> Vec<&[u8]> {
        content.split_inclusive(|b| *b == b'\n').collect()
    }

    #[test]
    fn the_first_line_is_the_chaos_id_and_headers_follow() {
        let message = ChaosMessage::build(7, 42, "load@client.chaos", "example.test", 500);
        let text = String::from_utf8(message.content.clone()).expect("ASCII");
        let (headers, _) = text.split_once("\r\n\r\n").expect("a header section");
        let names: Vec<&str> = headers
            .split("\r\n")
            .map(|line| line.split_once(':').expect("header line").0)
            .collect();
        assert_eq!(
            names,
            ["X-Chaos-Id", "From", "To", "Subject", "Date", "Message-ID"]
        );
        assert!(text.starts_with("X-Chaos-Id: 42\r\n"), "{text}");
        assert!(text.contains("\r\nMessage-ID: <chaos-7-42@load.chaos>\r\n"));
        assert!(text.contains("\r\nTo: <user42@example.test>\r\n"));
        assert_eq!(message.message_id, "<chaos-7-42@load.chaos>");
        assert_eq!(message.recipient, "user42@example.test");
        assert_eq!(
            ChaosMessage::build(7, 51, "s@x", "example.test", 0).recipient,
            "user1@example.test"
        );
    }

    #[test]
    fn lines_are_short_crlf_terminated_and_the_body_has_the_asked_size() {
        for body_len in [0, 1, 2, 3, 80, 1000, 4096] {
            let message = ChaosMessage::build(3, 9, "s@x", "d.test", body_len);
            let header_len = message
                .content
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("end of header")
                + 4;
            let body = message.content.len() - header_len;
            assert!(
                body == body_len || body + 1 == body_len,
                "asked {body_len}, got {body}"
            );
            assert!(message.content.ends_with(b"\r\n"));
            for line in lines(&message.content) {
                assert!(line.ends_with(b"\r\n"), "{line:?}");
                assert!(line.len() - 2 <= MAX_LINE, "{line:?}");
                assert!(!line[..line.len() - 2].contains(&b'\r'));
            }
        }
    }

    #[test]
    fn the_same_seed_and_number_give_the_same_bytes_and_hash() {
        let first = ChaosMessage::build(11, 5, "s@x", "d.test", 3000);
        let again = ChaosMessage::build(11, 5, "s@x", "d.test", 3000);
        assert_eq!(first, again);
        assert_eq!(first.sha256, sha256_hex(&first.content));
        assert_eq!(first.sha256.len(), 64);
        let other_seed = ChaosMessage::build(12, 5, "s@x", "d.test", 3000);
        assert_ne!(first.sha256, other_seed.sha256);
        let other_number = ChaosMessage::build(11, 6, "s@x", "d.test", 3000);
        assert_ne!(first.sha256, other_number.sha256);
    }

    #[test]
    fn sha256_hex_is_the_standard_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bodies_exercise_dot_stuffing_and_survive_the_round_trip() {
        let message = ChaosMessage::build(1, 1, "s@x", "d.test", 8000);
        let content_lines = lines(&message.content);
        assert!(content_lines.contains(&&b".\r\n"[..]), "a lone dot line");
        assert!(
            content_lines
                .iter()
                .any(|l| l.len() > 3 && l.starts_with(b".")),
            "a dot-prefixed text line"
        );
        let wire = dot_stuff(&message.content);
        let wire_lines = lines(&wire);
        assert_eq!(
            wire_lines.iter().filter(|l| **l == b".\r\n").count(),
            1,
            "only the terminator is a lone dot on the wire"
        );
        assert_eq!(wire_lines.last(), Some(&&b".\r\n"[..]));
        assert_eq!(unstuff(&wire), Some(message.content));
    }

    #[test]
    fn dot_stuffing_handles_edge_lines() {
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\n..b\r\n"), b"a\r\n...b\r\n.\r\n");
        assert_eq!(dot_stuff(b"a.\r\n.\r\nb\r\n"), b"a.\r\n..\r\nb\r\n.\r\n");
        for content in [&b""[..], b".\r\n", b"..\r\n.\r\n", b"x\r\n. y\r\n"] {
            assert_eq!(unstuff(&dot_stuff(content)).as_deref(), Some(content));
        }
    }

    #[test]
    fn message_rngs_differ_by_seed_number_and_stream() {
        let draw = |seed, id, stream| message_rng(seed, id, stream).random::<u64>();
        assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
        assert_ne!(draw(1, 2, 3), draw(2, 2, 3));
        assert_ne!(draw(1, 2, 3), draw(1, 3, 3));
        assert_ne!(draw(1, 2, 3), draw(1, 2, 4));
    }
}
