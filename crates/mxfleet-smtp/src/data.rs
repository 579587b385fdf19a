//! The sans-IO receiver for the SMTP DATA phase (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! **Threat: SMTP smuggling** (CVE-2023-51764 Postfix, CVE-2023-51765 sendmail,
//! CVE-2023-51766 Exim). If two SMTP servers on a path disagree about where DATA ends, an
//! attacker can hide a second SMTP transaction inside a message body: the sending server
//! sees one message, and the receiver sees the body end at, say, `\n.\r\n` and runs the
//! rest as commands (`MAIL FROM:<ceo@victim>` …), so the forged mail passes SPF as the
//! sending provider. As a backup MX we are a receiver and also a sender on the next hop, so
//! we must neither split messages ourselves nor relay bytes that the next hop could split.
//!
//! **What ends DATA**: only `CRLF . CRLF`. The `354` reply counts as a line start, so a
//! first line of `. CRLF` is an empty message. `\n.\r\n`, `\r\n.\n`, `\n.\n`,
//! `\r.\r`, `\r.\r\n`, `\r\n.\r<other>` and other variants with a bare line ending are
//! message content. Bytes after the marker are not consumed: they are pipelined commands.
//!
//! **Output contract**: `out` receives the content up to the marker (not including it),
//! dot-unstuffed: a line that starts with `.` after a real CRLF loses that dot. How bare
//! CR and bare LF (one not part of a CRLF pair) are handled depends on [`BareLineEndings`]:
//! - `Reject`: they pass through unchanged and [`DataReceiver::bare_line_ending_seen`]
//!   turns true. The session must answer `554 5.6.0` after the marker and discard `out`.
//! - `Normalize`: each one becomes CRLF, so `out` is canonical CRLF text. The line after a
//!   bare line ending does not count as a line start: nothing is unstuffed there, and
//!   `\n.\r\n` is stored as a line that is just `.`. This is safe only because **the
//!   sender side must dot-stuff every line that starts with `.`** when it relays `out`.
//!
//! Between calls the receiver holds at most two consumed bytes it has not emitted yet (`.`,
//! `.\r` or `\r` at a possible marker or CRLF). Input may be split at any byte.
//!
//! Layout:
//! - [`BareLineEndings`]: what to do with bare CR and bare LF.
//! - [`DataReceiver`]: the line state machine: unstuffing, end marker, bare line endings.
//! - [`Fed`]: what one [`DataReceiver::feed`] call did.
//! - `HeaderScanner` (private): counts `Received:` fields in the header section of `out`,
//!   which the session uses to detect mail loops.

/// What to do with a bare CR or bare LF in the message content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLineEndings {
    /// Pass them through and flag them; the session rejects the message with `554 5.6.0`.
    Reject,
    /// Rewrite each one as CRLF; the stored message is canonical CRLF text.
    Normalize,
}

/// The result of one [`DataReceiver::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Input bytes consumed. Equals the input length unless `finished` is true; then the
    /// bytes from `consumed` on belong to the next command.
    pub consumed: usize,
    /// The end marker `CRLF . CRLF` has been consumed.
    pub finished: bool,
}

/// Where the receiver is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// At the start of a line that follows a real CRLF (or the `354` reply).
    LineStart,
    /// Consumed `.` at a line start, not emitted: it is dot-stuffing or the marker.
    Dot,
    /// Consumed `.\r` at a line start: one `\n` away from the end marker.
    DotCr,
    /// Inside a line, or right after a bare line ending.
    InLine,
    /// Consumed `\r`, not emitted until we know whether `\n` follows.
    Cr,
    /// The end marker has been consumed; further input belongs to the next command.
    Finished,
}

/// Receives the bytes of one DATA phase. Create one per message, right after sending `354`.
#[derive(Debug)]
pub struct DataReceiver {
    bare_line_endings: BareLineEndings,
    state: LineState,
    /// Sticky: set at the first bare CR or bare LF, never reset.
    bare_seen: bool,
    content_len: u64,
    headers: HeaderScanner,
}

impl DataReceiver {
    /// A receiver positioned at the start of the first line, as after the `354` reply.
    pub fn new(bare_line_endings: BareLineEndings) -> Self {
        DataReceiver {
            bare_line_endings,
            state: LineState::LineStart,
            bare_seen: false,
            content_len: 0,
            headers: HeaderScanner::default(),
        }
    }

    /// Consumes bytes from `input` (a network read, any size, any split), appends the
    /// message content (dot-unstuffed; CRLF line endings in `Normalize` mode) to `out`. Returns the number of
    /// input bytes consumed and whether the end-of-data marker was reached. Bytes after the
    /// marker are NOT consumed (they are pipelined commands). Once finished, further calls
    /// consume nothing.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Fed {
        let mut pos = 0;
        // Arms that do not advance `pos` change state and look at the same byte again.
        while pos < input.len() {
            let byte = input[pos];
            match self.state {
                LineState::LineStart if byte == b'.' => {
                    self.state = LineState::Dot;
                    pos += 1;
                }
                LineState::Dot if byte == b'\r' => {
                    self.state = LineState::DotCr;
                    pos += 1;
                }
                // The held-back dot was stuffing: drop it.
                LineState::LineStart | LineState::Dot => self.state = LineState::InLine,
                LineState::DotCr if byte == b'\n' => {
                    self.state = LineState::Finished;
                    pos += 1;
                }
                LineState::Cr if byte == b'\n' => {
                    self.emit(b"\r\n", out);
                    self.state = LineState::LineStart;
                    pos += 1;
                }
                // The held-back `\r` is not followed by `\n`: a bare CR.
                LineState::DotCr | LineState::Cr => {
                    self.bare_line_ending(b'\r', out);
                    self.state = LineState::InLine;
                }
                LineState::InLine if byte == b'\r' => {
                    self.state = LineState::Cr;
                    pos += 1;
                }
                LineState::InLine if byte == b'\n' => {
                    self.bare_line_ending(b'\n', out);
                    pos += 1;
                }
                LineState::InLine => {
                    let rest = &input[pos..];
                    let run = rest.iter().position(|&b| b == b'\r' || b == b'\n');
                    let run = run.unwrap_or(rest.len());
                    self.emit(&rest[..run], out);
                    pos += run;
                }
                LineState::Finished => break,
            }
        }
        Fed {
            consumed: pos,
            finished: self.state == LineState::Finished,
        }
    }

    /// True once any bare LF or bare CR has appeared in the content.
    pub fn bare_line_ending_seen(&self) -> bool {
        self.bare_seen
    }

    /// Number of `Received:` header fields (field name matched case-insensitively) in the
    /// header section, i.e. before the first empty line. Continuation lines don't count.
    pub fn received_headers(&self) -> usize {
        self.headers.received
    }

    /// Bytes appended to `out` so far, over all calls.
    pub fn content_len(&self) -> u64 {
        self.content_len
    }

    fn bare_line_ending(&mut self, byte: u8, out: &mut Vec<u8>) {
        self.bare_seen = true;
        match self.bare_line_endings {
            BareLineEndings::Reject => self.emit(&[byte], out),
            BareLineEndings::Normalize => self.emit(b"\r\n", out),
        }
    }

    /// The single place where content reaches `out`, so the counters always agree with it.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
        self.content_len += bytes.len() as u64;
        self.headers.scan(bytes);
    }
}

/// The field name we count, lowercase, with its colon.
const RECEIVED: &[u8] = b"received:";

/// Counts `Received:` fields in the header section of the emitted (unstuffed) content.
/// Lines end at CRLF only: in `Normalize` mode bare endings have already become CRLF, and
/// in `Reject` mode the message is refused anyway. The section ends at the first empty line.
#[derive(Debug, Default)]
struct HeaderScanner {
    state: HeaderState,
    received: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderState {
    /// At a line start, having matched this many bytes of `RECEIVED`.
    Name(usize),
    /// The rest of this line does not matter.
    SkipLine,
    /// Saw `\r`; `empty_line` if it was the first byte of its line.
    Cr { empty_line: bool },
    /// Past the empty line that ends the header section.
    Body,
}

impl Default for HeaderState {
    fn default() -> Self {
        HeaderState::Name(0)
    }
}

impl HeaderScanner {
    fn scan(&mut self, bytes: &[u8]) {
        let mut pos = 0;
        while pos < bytes.len() {
            let byte = bytes[pos];
            pos += 1;
            self.state = match self.state {
                HeaderState::Body => return,
                HeaderState::SkipLine => match bytes[pos - 1..].iter().position(|&b| b == b'\r') {
                    Some(cr) => {
                        pos += cr;
                        HeaderState::Cr { empty_line: false }
                    }
                    None => return,
                },
                HeaderState::Name(matched) if byte == b'\r' => HeaderState::Cr {
                    empty_line: matched == 0,
                },
                HeaderState::Name(matched) if byte.to_ascii_lowercase() == RECEIVED[matched] => {
                    if matched + 1 == RECEIVED.len() {
                        self.received += 1;
                        HeaderState::SkipLine
                    } else {
                        HeaderState::Name(matched + 1)
                    }
                }
                HeaderState::Name(_) => HeaderState::SkipLine,
                HeaderState::Cr { empty_line: true } if byte == b'\n' => HeaderState::Body,
                HeaderState::Cr { empty_line: false } if byte == b'\n' => HeaderState::Name(0),
                HeaderState::Cr { .. } if byte == b'\r' => HeaderState::Cr { empty_line: false },
                HeaderState::Cr { .. } => HeaderState::SkipLine,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BareLineEndings::{Normalize, Reject};

    /// What a whole DATA phase produced.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        out: Vec<u8>,
        fed: Fed,
        bare: bool,
        received: usize,
    }

    /// Feeds `chunks` in order, like successive network reads, stopping at the marker.
    fn receive<'a>(mode: BareLineEndings, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
        let mut rx = DataReceiver::new(mode);
        let (mut out, mut consumed, mut finished) = (Vec::new(), 0, false);
        for chunk in chunks {
            let step = rx.feed(chunk, &mut out);
            (consumed, finished) = (consumed + step.consumed, step.finished);
            if finished {
                break;
            }
            assert_eq!(
                step.consumed,
                chunk.len(),
                "unfinished but not all consumed"
            );
        }
        assert_eq!(rx.content_len(), out.len() as u64);
        if mode == Normalize {
            // Canonical: every CR and every LF is part of a CRLF pair.
            let pairs = find_all(&out, b"\r\n").count();
            let count = |byte: u8| out.iter().filter(|&&b| b == byte).count();
            let shown = String::from_utf8_lossy(&out);
            assert!(pairs == count(b'\r') && pairs == count(b'\n'), "{shown:?}");
        }
        let (bare, received) = (rx.bare_line_ending_seen(), rx.received_headers());
        outcome(out, fed(consumed, finished), bare, received)
    }

    fn outcome(out: Vec<u8>, fed: Fed, bare: bool, received: usize) -> Outcome {
        Outcome {
            out,
            fed,
            bare,
            received,
        }
    }

    fn fed(consumed: usize, finished: bool) -> Fed {
        Fed { consumed, finished }
    }

    /// Start offsets of `needle` in `haystack`, overlapping ones included.
    fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
        (0..haystack.len()).filter(move |&i| haystack[i..].starts_with(needle))
    }

    struct Case {
        name: &'static str,
        input: &'static [u8],
        /// Output in `Reject` and in `Normalize` mode.
        out: [&'static [u8]; 2],
        /// `Some(consumed)` if the marker ends the message; `None` if all input is content.
        ends_at: Option<usize>,
        bare: bool,
        received: usize,
    }

    /// A case without bare line endings: both modes give the same output.
    fn clean(name: &'static str, input: &'static [u8], out: &'static [u8]) -> Case {
        let ends_at = Some(input.len() - if input.ends_with(b"QUIT\r\n") { 6 } else { 0 });
        Case {
            name,
            input,
            out: [out, out],
            ends_at,
            bare: false,
            received: 0,
        }
    }

    /// A message whose body contains the fake marker `$fake`, then ends properly, then
    /// pipelines QUIT; the content after `$fake` must still be part of the message.
    macro_rules! smuggling {
        ($name:literal, $fake:literal, reject: $reject:literal, normalize: $normalize:literal) => {
            Case {
                name: $name,
                input: concat!("Subject: x\r\n\r\nbefore", $fake, "after\r\n.\r\nQUIT\r\n")
                    .as_bytes(),
                out: [
                    concat!("Subject: x\r\n\r\nbefore", $reject, "after\r\n").as_bytes(),
                    concat!("Subject: x\r\n\r\nbefore", $normalize, "after\r\n").as_bytes(),
                ],
                ends_at: Some(concat!("Subject: x\r\n\r\nbefore", $fake, "after\r\n.\r\n").len()),
                bare: true,
                received: 0,
            }
        };
    }

    const RECEIVED_IN: &[u8] = b"Received: from a\r\n\tby b; Received: folded\r\n\
        RECEIVED: from c\r\n received: continuation\r\nreceived:from d\r\n\
        Received-SPF: pass\r\nX-Received: no\r\nSubject: loops\r\n\r\n\
        Received: in the body\r\n.\r\n";

    fn cases() -> Vec<Case> {
        let received_out = &RECEIVED_IN[..RECEIVED_IN.len() - 3];
        vec![
            clean(
                "plain message",
                b"Subject: hi\r\n\r\nHi\r\n.\r\nQUIT\r\n",
                b"Subject: hi\r\n\r\nHi\r\n",
            ),
            clean("empty message", b".\r\nQUIT\r\n", b""),
            clean(
                "dot-stuffed lines",
                b"..first\r\n\r\n..foo\r\n..\r\n...\r\n.x\r\n.\r\n",
                b".first\r\n\r\n.foo\r\n.\r\n..\r\nx\r\n",
            ),
            Case {
                ends_at: None,
                ..clean("dot ending a line is no marker", b"abc.\r\n", b"abc.\r\n")
            },
            Case {
                ends_at: None,
                ..clean("partial marker is held back", b"line\r\n.\r", b"line\r\n")
            },
            Case {
                received: 3,
                ..clean("received headers", RECEIVED_IN, received_out)
            },
            smuggling!("cve_2023_51764_lf_dot_crlf", "\n.\r\n",
                reject: "\n.\r\n", normalize: "\r\n.\r\n"),
            smuggling!("crlf_dot_lf", "\r\n.\n", reject: "\r\n\n", normalize: "\r\n\r\n"),
            smuggling!("lf_dot_lf", "\n.\n", reject: "\n.\n", normalize: "\r\n.\r\n"),
            smuggling!("cr_dot_cr", "\r.\r", reject: "\r.\r", normalize: "\r\n.\r\n"),
            smuggling!("cr_dot_crlf", "\r.\r\n", reject: "\r.\r\n", normalize: "\r\n.\r\n"),
            smuggling!("crlf_dot_cr_crlf", "\r\n.\r\r\n",
                reject: "\r\n\r\r\n", normalize: "\r\n\r\n\r\n"),
            smuggling!("crlf_dot_cr_other", "\r\n.\rX", reject: "\r\n\rX", normalize: "\r\n\r\nX"),
        ]
    }

    /// Every case in both modes, fed whole, byte by byte, and split in two at every position.
    #[test]
    fn table_every_split() {
        for case in cases() {
            for (mode, out) in [(Reject, case.out[0]), (Normalize, case.out[1])] {
                let fed = match case.ends_at {
                    Some(consumed) => fed(consumed, true),
                    None => fed(case.input.len(), false),
                };
                let expected = outcome(out.to_vec(), fed, case.bare, case.received);
                let (input, what) = (case.input, format!("{} {mode:?}", case.name));
                assert_eq!(receive(mode, [input]), expected, "{what} whole");
                assert_eq!(receive(mode, input.chunks(1)), expected, "{what} 1-byte");
                for at in 0..=input.len() {
                    let (a, b) = input.split_at(at);
                    assert_eq!(receive(mode, [a, b]), expected, "{what} split {at}");
                }
            }
        }
    }

    #[test]
    fn feed_after_finish_consumes_nothing() {
        let mut rx = DataReceiver::new(Reject);
        let mut out = Vec::new();
        assert!(rx.feed(b"a\r\n.\r\n", &mut out).finished);
        assert_eq!(rx.feed(b"QUIT\r\n", &mut out), fed(0, true));
        assert_eq!(out, b"a\r\n");
    }

    /// Reference model: split on real CRLF, unstuff, then (Normalize) rewrite bare CR/LF.
    fn model(mode: BareLineEndings, content: &[u8]) -> (Vec<u8>, bool) {
        let (mut out, mut bare, mut rest) = (Vec::new(), false, content);
        while !rest.is_empty() {
            let end = find_all(rest, b"\r\n").next().unwrap_or(rest.len());
            let line = rest[..end].strip_prefix(b".").unwrap_or(&rest[..end]);
            for &b in line {
                bare |= b == b'\r' || b == b'\n';
                match (mode, b) {
                    (Normalize, b'\r' | b'\n') => out.extend_from_slice(b"\r\n"),
                    _ => out.push(b),
                }
            }
            let next_line = (end + 2).min(rest.len());
            out.extend_from_slice(&rest[end..next_line]);
            rest = &rest[next_line..];
        }
        (out, bare)
    }

    /// Short random mixes of CR, LF and dots, fed in random chunks, against the model.
    #[test]
    fn random_inputs_match_model() {
        let mut seed: u64 = 0x5eed_cafe;
        let mut next = move |bound: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 33) as usize % bound
        };
        for _ in 0..3000 {
            let mut input: Vec<u8> = (0..next(24)).map(|_| b"\r\n.a"[next(4)]).collect();
            input.extend_from_slice(b"\r\n.\r\nNOOP");
            // The message ends at the first `\r\n.\r\n` in `\r\n` + input (354 is a line end).
            let with_354 = [b"\r\n", &input[..]].concat();
            let marker = find_all(&with_354, b"\r\n.\r\n").next().unwrap();
            for mode in [Reject, Normalize] {
                let mut chunks = Vec::new();
                let mut rest = &input[..];
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(next(rest.len()) + 1);
                    chunks.push(chunk);
                    rest = tail;
                }
                let (out, bare) = model(mode, &input[..marker]);
                let expected = outcome(out, fed(marker + 3, true), bare, 0);
                let shown = String::from_utf8_lossy(&input);
                assert_eq!(receive(mode, chunks), expected, "{mode:?} {shown:?}");
            }
        }
    }
}
