//! Sans-IO dot-stuffing for DATA (RFC 5321 §4.5.2): content in, wire bytes out, one
//! chunk at a time, so a message is never held whole in memory.
//!
//! A line that starts with `.` gets a second one. The stuffer remembers across chunks
//! whether the next byte starts a line, so a `\r\n` and its `.` may arrive in
//! different reads. A line starts after every LF, bare or not: the content is already
//! CRLF-normalised, and stuffing after a bare LF too means that no content, however
//! broken, can form an end marker at a lenient receiver (SMTP smuggling).
//! [`DotStuffer::finish`] ends the content with CRLF if it does not already, then
//! writes the terminating `.\r\n`.

/// Dot-stuffing state for one message; create one per DATA.
#[derive(Debug)]
pub(super) struct DotStuffer {
    /// The next content byte is the first of a line (true at the start of content).
    at_line_start: bool,
    /// The last two content bytes, to see whether the content ended with CRLF.
    last_two: [u8; 2],
    /// Any content at all was pushed.
    any_content: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            last_two: [0, 0],
            any_content: false,
        }
    }
}

impl DotStuffer {
    /// Appends the stuffed form of `content` to `out`.
    pub(super) fn push(&mut self, content: &[u8], out: &mut Vec<u8>) {
        out.reserve(content.len() + content.len() / 64 + 1);
        let mut rest = content;
        while !rest.is_empty() {
            if self.at_line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            let line_len = match rest.iter().position(|b| *b == b'\n') {
                Some(lf) => {
                    self.at_line_start = true;
                    lf + 1
                }
                None => {
                    self.at_line_start = false;
                    rest.len()
                }
            };
            out.extend_from_slice(&rest[..line_len]);
            rest = &rest[line_len..];
        }
        self.any_content |= !content.is_empty();
        match content {
            [.., a, b] => self.last_two = [*a, *b],
            [b] => self.last_two = [self.last_two[1], *b],
            [] => {}
        }
    }

    /// Appends the end of the message: a CRLF if the content did not end with one
    /// (empty content needs none), then `.` CRLF.
    pub(super) fn finish(self, out: &mut Vec<u8>) {
        if self.any_content && self.last_two != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stuffs `content` fed in pieces of `chunk` bytes.
    fn stuff(content: &[u8], chunk: usize) -> Vec<u8> {
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::new();
        for piece in content.chunks(chunk.max(1)) {
            stuffer.push(piece, &mut out);
        }
        stuffer.finish(&mut out);
        out
    }

    /// The receiver's view: undo the stuffing up to the first CRLF.CRLF.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let mut content = Vec::new();
        for line in wire.split_inclusive(|b| *b == b'\n') {
            if line == b".\r\n" {
                return content;
            }
            content.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        panic!("no end marker in {:?}", String::from_utf8_lossy(wire));
    }

    #[test]
    fn lines_starting_with_a_dot_get_another_at_every_chunk_split() {
        let content = b".first\r\nmiddle\r\n.\r\n..two\r\nend.\r\n.";
        let expected = b"..first\r\nmiddle\r\n..\r\n...two\r\nend.\r\n..\r\n.\r\n";
        for chunk in 1..=content.len() {
            assert_eq!(stuff(content, chunk), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn crlf_dot_split_across_reads() {
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::new();
        stuffer.push(b"a\r", &mut out);
        stuffer.push(b"\n", &mut out);
        stuffer.push(b".", &mut out);
        stuffer.push(b"\r\n", &mut out);
        stuffer.finish(&mut out);
        assert_eq!(out, b"a\r\n..\r\n.\r\n");
    }

    #[test]
    fn missing_final_crlf_is_added_once() {
        assert_eq!(stuff(b"no newline", 3), b"no newline\r\n.\r\n");
        assert_eq!(stuff(b"ends\r\n", 1), b"ends\r\n.\r\n");
        assert_eq!(stuff(b"bare cr\r", 1), b"bare cr\r\r\n.\r\n");
        assert_eq!(stuff(b"", 1), b".\r\n");
        assert_eq!(stuff(b"\r\n", 1), b"\r\n.\r\n");
    }

    #[test]
    fn smuggling_shapes_cannot_end_the_message_early() {
        // Bare LF before a dot line: stuffed, so no receiver sees `.` alone on a line.
        let content = b"x\n.\r\nMAIL FROM:<evil@example>\r\n";
        let wire = stuff(content, 2);
        assert_eq!(wire, b"x\n..\r\nMAIL FROM:<evil@example>\r\n.\r\n");
        // Bare CR before a dot is not a line start for anyone.
        assert_eq!(stuff(b"x\r.\r\n", 1), b"x\r.\r\n.\r\n");
    }

    #[test]
    fn round_trip_is_exact() {
        let content: Vec<u8> = (0..2000u32)
            .flat_map(|i| match i % 4 {
                0 => b".dot\r\n".to_vec(),
                1 => b"..\r\n".to_vec(),
                2 => format!("line {i}\r\n").into_bytes(),
                _ => b".\r\n".to_vec(),
            })
            .collect();
        for chunk in [1, 2, 3, 7, 64, 4096, content.len()] {
            assert_eq!(unstuff(&stuff(&content, chunk)), content, "chunk {chunk}");
        }
    }
}
