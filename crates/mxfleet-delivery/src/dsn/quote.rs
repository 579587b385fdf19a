//! Part 3 of a DSN: how much of the original message goes back to the sender.
//!
//! A small original returns whole as `message/rfc822`; a large one returns as its header
//! section only, `text/rfc822-headers` (RFC 6522), so that a bounce never doubles the
//! load a large message put on the sender's mailbox. Bytes are quoted exactly as stored
//! (already CRLF); nothing is re-encoded.

/// The slice of the original that the report carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QuotedOriginal<'a> {
    /// The whole message.
    Whole(&'a [u8]),
    /// The header section, each line with its CRLF, without the empty line after it.
    HeadersOnly(&'a [u8]),
}

impl<'a> QuotedOriginal<'a> {
    pub(super) fn bytes(&self) -> &'a [u8] {
        match *self {
            QuotedOriginal::Whole(bytes) | QuotedOriginal::HeadersOnly(bytes) => bytes,
        }
    }
}

/// Chooses between the whole message and its headers. `passed` is what the caller read
/// from the blob (a prefix of the message, or all of it), `full_size` the message's size.
pub(super) fn select(passed: &[u8], full_size: u64, max_quoted_body: usize) -> QuotedOriginal<'_> {
    let small_enough = full_size <= max_quoted_body as u64;
    let all_passed = passed.len() as u64 >= full_size;
    if small_enough && all_passed {
        // `full_size <= passed.len()`, so this fits in usize.
        return QuotedOriginal::Whole(&passed[..full_size as usize]);
    }
    QuotedOriginal::HeadersOnly(header_section(passed))
}

/// Everything before the first empty line. When the prefix holds no empty line (the
/// header section is longer than what was read), every complete line of it.
fn header_section(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") {
        return &[];
    }
    if let Some(blank) = find(message, b"\r\n\r\n") {
        return &message[..blank + 2];
    }
    match message.windows(2).rposition(|pair| pair == b"\r\n") {
        Some(last_break) => &message[..last_break + 2],
        None => &[],
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"Subject: hi\r\nFrom: a@x\r\n\r\nbody\r\n";

    #[test]
    fn small_messages_return_whole() {
        let size = MESSAGE.len() as u64;
        assert_eq!(select(MESSAGE, size, 1000), QuotedOriginal::Whole(MESSAGE));
        assert_eq!(
            select(MESSAGE, size, MESSAGE.len()),
            QuotedOriginal::Whole(MESSAGE)
        );
    }

    #[test]
    fn large_messages_return_headers_up_to_the_empty_line() {
        let headers = b"Subject: hi\r\nFrom: a@x\r\n".as_slice();
        assert_eq!(
            select(MESSAGE, MESSAGE.len() as u64, 10),
            QuotedOriginal::HeadersOnly(headers)
        );
    }

    #[test]
    fn a_truncated_prefix_is_never_returned_as_whole() {
        let prefix = &MESSAGE[..20];
        assert_eq!(
            select(prefix, MESSAGE.len() as u64, 1000),
            QuotedOriginal::HeadersOnly(b"Subject: hi\r\n".as_slice())
        );
    }

    #[test]
    fn header_section_edge_cases() {
        assert_eq!(header_section(b"\r\nbody"), b"");
        assert_eq!(header_section(b"no line break at all"), b"");
        assert_eq!(
            header_section(b"A: 1\r\nB: 2\r\nC: trunc"),
            b"A: 1\r\nB: 2\r\n"
        );
    }
}
