//! SMTP replies: a code, an enhanced status code (RFC 3463, on every reply), and text.
//! Multi-line replies (EHLO) are written with `-` continuation lines.

use std::borrow::Cow;
use std::fmt;

/// One SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code, e.g. `"5.7.1"`.
    pub status: &'static str,
    /// Text lines; more than one makes a multi-line reply.
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, status: &'static str, text: impl Into<Cow<'static, str>>) -> Self {
        Reply {
            code,
            status,
            lines: vec![text.into()],
        }
    }

    /// True for 4xx and 5xx.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// True for 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The reply as it goes on the wire, CRLF-terminated.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let separator = if i == last { ' ' } else { '-' };
            if self.status.is_empty() {
                out.push_str(&format!("{}{separator}{line}\r\n", self.code));
            } else {
                out.push_str(&format!(
                    "{}{separator}{} {line}\r\n",
                    self.code, self.status
                ));
            }
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.code,
            self.status,
            self.lines.join(" / ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_replies_are_framed_per_rfc_5321() {
        assert_eq!(Reply::new(250, "2.1.0", "Ok").to_wire(), "250 2.1.0 Ok\r\n");
        let multi = Reply {
            code: 250,
            status: "",
            lines: vec!["mx.example".into(), "PIPELINING".into(), "SIZE 100".into()],
        };
        assert_eq!(
            multi.to_wire(),
            "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
        );
    }
}
