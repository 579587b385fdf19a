//! Sans-IO reply handling: cut whole replies out of the bytes read so far, then parse
//! them with smtp-proto (`ResponseReceiver` for code, status and text, `EhloResponse`
//! for capabilities).
//!
//! Framing is ours because pipelined replies arrive back to back and smtp-proto's
//! parsers want one complete reply: a reply ends at the first line whose code is not
//! followed by `-` (RFC 5321 §4.2.1). Bytes after it stay buffered for the next reply.
//! Nothing here panics on hostile input; every oddity is a [`MalformedReply`].

use smtp_proto::response::parser::ResponseReceiver;
use smtp_proto::{
    EXT_8BIT_MIME, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING, EXT_SIZE, EXT_SMTP_UTF8,
    EXT_START_TLS, EhloResponse,
};

use crate::reply::RemoteReply;

/// Replies longer than this (all lines together) are refused, so that a server cannot
/// make us buffer without bound.
pub(super) const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Why some bytes are not a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MalformedReply(pub String);

/// Bytes read from the server and not yet consumed as replies. Owned by the
/// connection; bytes of replies still unread survive from one command to the next.
#[derive(Debug, Default)]
pub(super) struct ReplyBuffer {
    input: Vec<u8>,
}

impl ReplyBuffer {
    pub(super) fn extend(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// True when bytes beyond the last consumed reply are waiting.
    pub(super) fn has_pending(&self) -> bool {
        !self.input.is_empty()
    }

    /// Drops buffered bytes (STARTTLS: nothing said in plaintext may be read as TLS
    /// session data).
    pub(super) fn clear(&mut self) {
        self.input.clear();
    }

    /// Takes the next complete reply, `Ok(None)` when more bytes are needed.
    pub(super) fn next_reply(&mut self) -> Result<Option<RawReply>, MalformedReply> {
        let mut line_start = 0;
        while let Some(offset) = self.input[line_start..].iter().position(|b| *b == b'\n') {
            let line_end = line_start + offset + 1;
            let line = &self.input[line_start..line_end];
            if !line
                .get(..3)
                .is_some_and(|code| code.iter().all(u8::is_ascii_digit))
            {
                return Err(MalformedReply(format!(
                    "line does not start with a reply code: {:?}",
                    String::from_utf8_lossy(line).trim_end()
                )));
            }
            let is_last = line.get(3) != Some(&b'-');
            if is_last {
                let bytes: Vec<u8> = self.input.drain(..line_end).collect();
                return Ok(Some(RawReply { bytes }));
            }
            line_start = line_end;
        }
        if self.input.len() > MAX_REPLY_BYTES {
            return Err(MalformedReply(format!(
                "reply longer than {MAX_REPLY_BYTES} bytes"
            )));
        }
        Ok(None)
    }
}

/// One complete reply as it came over the wire, all lines included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RawReply {
    bytes: Vec<u8>,
}

impl RawReply {
    #[cfg(test)]
    pub(super) fn from_wire(bytes: &[u8]) -> Self {
        RawReply {
            bytes: bytes.to_vec(),
        }
    }

    /// Code, enhanced status and text (continuation lines joined with a space).
    pub(super) fn parse(&self) -> Result<RemoteReply, MalformedReply> {
        let parsed = ResponseReceiver::default().parse(&mut self.bytes.iter());
        let response = match parsed {
            Ok(response) => response,
            // smtp-proto keeps at most 4 KiB of text; the last line alone still carries
            // the code and status of a long multi-line reply.
            Err(smtp_proto::Error::ResponseTooLong) => {
                let last_line = self.last_line();
                ResponseReceiver::default()
                    .parse(&mut last_line.iter())
                    .map_err(|error| MalformedReply(error.to_string()))?
            }
            Err(error) => return Err(MalformedReply(error.to_string())),
        };
        if !(200..600).contains(&response.code) {
            return Err(MalformedReply(format!(
                "reply code {} out of range",
                response.code
            )));
        }
        let status = match response.esc {
            [0, 0, 0] => None,
            [class, subject, detail] => Some(format!("{class}.{subject}.{detail}")),
        };
        let text = response
            .message
            .split('\n')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(RemoteReply {
            code: response.code,
            status,
            text: text.trim().to_owned(),
        })
    }

    fn last_line(&self) -> &[u8] {
        let body = self.bytes.strip_suffix(b"\n").unwrap_or(&self.bytes);
        match body.iter().rposition(|b| *b == b'\n') {
            Some(lf) => &self.bytes[lf + 1..],
            None => &self.bytes,
        }
    }

    /// The extensions a `250` EHLO reply announces. A reply smtp-proto cannot read is
    /// taken to announce nothing, which is always safe.
    pub(super) fn capabilities(&self) -> Capabilities {
        match EhloResponse::<String>::parse(&mut self.bytes.iter()) {
            Ok(ehlo) => Capabilities::from_ehlo(&ehlo),
            Err(_) => Capabilities::default(),
        }
    }
}

/// What the server announced in its EHLO reply; all off after HELO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server spoke ESMTP (EHLO succeeded).
    pub extended: bool,
    pub pipelining: bool,
    /// SIZE (RFC 1870) was announced, so MAIL may carry `SIZE=`.
    pub size: bool,
    /// The SIZE limit; `None` when SIZE was not announced or announced without a
    /// number (no fixed limit).
    pub size_limit: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub starttls: bool,
    pub enhanced_status_codes: bool,
}

impl Capabilities {
    fn from_ehlo(ehlo: &EhloResponse<String>) -> Self {
        let size_limit = (ehlo.has_capability(EXT_SIZE) && ehlo.size > 0).then_some(ehlo.size);
        Capabilities {
            extended: true,
            pipelining: ehlo.has_capability(EXT_PIPELINING),
            size: ehlo.has_capability(EXT_SIZE),
            size_limit: size_limit.map(|size| size as u64),
            eight_bit_mime: ehlo.has_capability(EXT_8BIT_MIME),
            smtputf8: ehlo.has_capability(EXT_SMTP_UTF8),
            starttls: ehlo.has_capability(EXT_START_TLS),
            enhanced_status_codes: ehlo.has_capability(EXT_ENHANCED_STATUS_CODES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies_from_chunks(wire: &[u8], chunk: usize) -> Vec<RemoteReply> {
        let mut buffer = ReplyBuffer::default();
        let mut out = Vec::new();
        for piece in wire.chunks(chunk) {
            buffer.extend(piece);
            while let Some(raw) = buffer.next_reply().unwrap() {
                out.push(raw.parse().unwrap());
            }
        }
        assert!(!buffer.has_pending());
        out
    }

    #[test]
    fn pipelined_replies_split_anywhere_come_out_in_order() {
        let wire =
            b"250 2.1.0 Ok\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n451 4.3.0 later\r\n354 go\r\n";
        for chunk in 1..wire.len() {
            let replies = replies_from_chunks(wire, chunk);
            let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
            assert_eq!(codes, [250, 550, 451, 354], "chunk {chunk}");
            assert_eq!(replies[1].status.as_deref(), Some("5.1.1"));
            assert_eq!(replies[1].text, "no such user");
            assert_eq!(replies[3].status, None);
        }
    }

    #[test]
    fn bare_lf_and_empty_text_are_accepted() {
        let replies = replies_from_chunks(b"220\n250 ok\n", 3);
        assert_eq!(replies[0].code, 220);
        assert_eq!(replies[0].text, "");
        assert_eq!(replies[1].text, "ok");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for wire in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"2x0 ok\r\n",
            b"099 odd\r\n",
            b"999 odd\r\n",
        ] {
            let mut buffer = ReplyBuffer::default();
            buffer.extend(wire);
            let parsed = buffer.next_reply().and_then(|raw| match raw {
                Some(raw) => raw.parse().map(Some),
                None => Ok(None),
            });
            assert!(
                parsed.is_err(),
                "{:?} gave {parsed:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn long_multiline_reply_keeps_code_and_status() {
        let mut wire = Vec::new();
        for i in 0..200 {
            wire.extend_from_slice(format!("550-5.7.1 policy explanation line {i}\r\n").as_bytes());
        }
        wire.extend_from_slice(b"550 5.7.1 see https://example.net/policy\r\n");
        let reply = replies_from_chunks(&wire, 1000).remove(0);
        assert_eq!((reply.code, reply.status.as_deref()), (550, Some("5.7.1")));
        assert_eq!(reply.text, "see https://example.net/policy");
    }

    #[test]
    fn endless_reply_is_refused() {
        let mut buffer = ReplyBuffer::default();
        buffer.extend(&vec![b'2'; MAX_REPLY_BYTES + 1]);
        assert!(buffer.next_reply().is_err());
    }

    #[test]
    fn ehlo_capabilities() {
        let raw = RawReply::from_wire(
            b"250-mx.example.org hi\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n\
              250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n",
        );
        let caps = raw.capabilities();
        assert!(caps.extended && caps.pipelining && caps.eight_bit_mime && caps.starttls);
        assert!(caps.smtputf8 && caps.enhanced_status_codes);
        assert_eq!(caps.size_limit, Some(1000));
        let unlimited = RawReply::from_wire(b"250-mx\r\n250 SIZE\r\n").capabilities();
        assert_eq!(unlimited.size_limit, None);
        assert!(!unlimited.pipelining);
    }
}
