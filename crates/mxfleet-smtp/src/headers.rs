//! Reading a header field out of a message's header section while it streams past:
//! `HeaderCapture` keeps the header section (up to a cap) and `field` finds a field by
//! name, unfolding continuation lines (RFC 5322 §2.2.3).

/// The header section of a message, collected from its content as it streams.
#[derive(Debug, Default)]
pub struct HeaderCapture {
    bytes: Vec<u8>,
    complete: bool,
}

/// More header than this is not kept (the message still flows to storage).
const MAX_CAPTURED: usize = 64 * 1024;

impl HeaderCapture {
    /// Appends a chunk of (unstuffed, CRLF) content; stops at the empty line.
    pub fn push(&mut self, content: &[u8]) {
        if self.complete {
            return;
        }
        let room = MAX_CAPTURED.saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&content[..content.len().min(room)]);
        if let Some(end) = find(&self.bytes, b"\r\n\r\n") {
            self.bytes.truncate(end + 2);
            self.complete = true;
        } else if self.bytes.starts_with(b"\r\n") {
            self.bytes.clear();
            self.complete = true;
        } else if self.bytes.len() >= MAX_CAPTURED {
            self.complete = true;
        }
    }

    /// The unfolded value of the first field called `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.bytes);
        let mut lines = text.split("\r\n").peekable();
        while let Some(line) = lines.next() {
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            if !field.trim_end().eq_ignore_ascii_case(name) {
                continue;
            }
            let mut value = value.trim().to_string();
            while let Some(next) = lines.peek() {
                if !next.starts_with([' ', '\t']) {
                    break;
                }
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            }
            return Some(value.trim().to_string());
        }
        None
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(chunks: &[&str]) -> HeaderCapture {
        let mut capture = HeaderCapture::default();
        for chunk in chunks {
            capture.push(chunk.as_bytes());
        }
        capture
    }

    #[test]
    fn finds_fields_case_insensitively_and_unfolds_them() {
        let capture = captured(&[
            "Subject: hi\r\nmessage-id:\r\n <abc@",
            "example.org>\r\nTo: a@b.example\r\n\r\nMessage-ID: <body@x>\r\n",
        ]);
        assert_eq!(
            capture.field("Message-ID").as_deref(),
            Some("<abc@example.org>")
        );
        assert_eq!(capture.field("subject").as_deref(), Some("hi"));
        assert_eq!(capture.field("From"), None);
    }

    #[test]
    fn fields_after_the_header_section_are_not_headers() {
        let capture = captured(&["Subject: x\r\n\r\nMessage-ID: <in-body@x>\r\n"]);
        assert_eq!(capture.field("Message-ID"), None);
        let no_headers = captured(&["\r\nMessage-ID: <in-body@x>\r\n"]);
        assert_eq!(no_headers.field("Message-ID"), None);
    }
}
