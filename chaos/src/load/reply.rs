//! SMTP replies from the server (sans-IO): one or more lines with the same three-digit
//! code, `-` after the code on every line but the last (RFC 5321 §4.2.1).
//!
//! [`parse_reply`] takes whatever bytes have arrived so far and says whether a whole
//! reply is there; the session feeds it until one is.

use std::fmt;

/// A reply longer than this is treated as garbage rather than buffered without end.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// One complete reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Every line as received, without its line ending, code included.
    pub lines: Vec<String>,
}

impl Reply {
    /// The last line, e.g. `250 2.0.0 queued as 00000000002A`: what the history keeps.
    pub fn last_line(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or_default()
    }

    /// The first digit: 2 success, 3 go on, 4 temporary, 5 permanent.
    pub fn class(&self) -> u16 {
        self.code / 100
    }
}

/// Bytes that are not an SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GarbageReply {
    /// The offending line (lossy UTF-8, shortened).
    pub line: String,
}

impl fmt::Display for GarbageReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an SMTP reply: {:?}", self.line)
    }
}

impl std::error::Error for GarbageReply {}

/// The first complete reply in `input` and how many bytes it took, `None` if more bytes
/// are needed. Lines end in LF; a CR before it is dropped (bare LF is tolerated).
pub fn parse_reply(input: &[u8]) -> Result<Option<(Reply, usize)>, GarbageReply> {
    let mut lines = Vec::new();
    let mut code = None;
    let mut consumed = 0;
    while let Some(end) = input[consumed..].iter().position(|b| *b == b'\n') {
        let raw = &input[consumed..consumed + end];
        consumed += end + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw).into_owned();
        let Some((line_code, last)) = code_and_continuation(raw) else {
            return Err(garbage(text));
        };
        if *code.get_or_insert(line_code) != line_code {
            return Err(garbage(text));
        }
        lines.push(text);
        if last {
            return Ok(Some((
                Reply {
                    code: line_code,
                    lines,
                },
                consumed,
            )));
        }
    }
    if input.len() > MAX_REPLY_BYTES {
        return Err(garbage(String::from_utf8_lossy(&input[..80]).into_owned()));
    }
    Ok(None)
}

/// `250-…` → (250, false); `250 …` or `250` → (250, true); anything else → `None`.
fn code_and_continuation(line: &[u8]) -> Option<(u16, bool)> {
    let (digits, rest) = line.split_at_checked(3)?;
    if !matches!(digits[0], b'2'..=b'5') || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0, |code, d| code * 10 + u16::from(d - b'0'));
    match rest.first() {
        None | Some(b' ') => Some((code, true)),
        Some(b'-') => Some((code, false)),
        Some(_) => None,
    }
}

fn garbage(mut line: String) -> GarbageReply {
    if line.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|i| line.is_char_boundary(*i))
            .unwrap_or(0);
        line.truncate(cut);
    }
    GarbageReply { line }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Reply {
        let (reply, consumed) = parse_reply(input).expect("valid").expect("complete");
        assert_eq!(consumed, input.len());
        reply
    }

    #[test]
    fn a_single_line_reply() {
        let reply = parse_all(b"220 mx1.test ESMTP mxfleet\r\n");
        assert_eq!(reply.code, 220);
        assert_eq!(reply.class(), 2);
        assert_eq!(reply.last_line(), "220 mx1.test ESMTP mxfleet");
        assert_eq!(parse_all(b"250\r\n").code, 250);
    }

    #[test]
    fn a_multi_line_reply_ends_at_the_line_without_a_dash() {
        let input = b"250-mx1.test\r\n250-PIPELINING\r\n250 SIZE 10000000\r\nextra";
        let (reply, consumed) = parse_reply(input).unwrap().unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(
            reply.lines,
            ["250-mx1.test", "250-PIPELINING", "250 SIZE 10000000"]
        );
        assert_eq!(reply.last_line(), "250 SIZE 10000000");
        assert_eq!(&input[consumed..], b"extra");
    }

    #[test]
    fn incomplete_input_asks_for_more_at_every_split() {
        let input = b"250-mx1.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n";
        for split in 0..input.len() {
            assert_eq!(parse_reply(&input[..split]), Ok(None), "split at {split}");
        }
        assert_eq!(parse_all(input).lines.len(), 3);
    }

    #[test]
    fn bare_lf_is_tolerated() {
        assert_eq!(parse_all(b"354 go ahead\n").code, 354);
    }

    #[test]
    fn garbage_is_an_error() {
        for input in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"2x0 ok\r\n",
            b"250ok\r\n",
            b"650 no such class\r\n",
            b"\r\n",
            b"HTTP/1.1 400 Bad Request\r\n",
            b"250-first\r\n451 second code differs\r\n",
            b"\xff\xfe\xfd\r\n",
        ] {
            assert!(parse_reply(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn an_endless_reply_is_garbage() {
        let endless = vec![b'2'; MAX_REPLY_BYTES + 1];
        assert!(parse_reply(&endless).is_err());
        let mut continued = Vec::new();
        while continued.len() <= MAX_REPLY_BYTES {
            continued.extend_from_slice(b"250-more\r\n");
        }
        assert!(parse_reply(&continued).is_err());
    }
}
