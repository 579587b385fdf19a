//! Text hygiene for DSNs: untrusted text (remote replies, addresses) loses its line
//! breaks and control characters, and every generated line is folded to stay within
//! RFC 5322's 998-octet limit (and near 78 where there are spaces to fold at).

/// RFC 5322 §2.1.1: no line may exceed 998 octets, CRLF excluded.
const MAX_LINE: usize = 998;

/// Where lines are folded when a space allows it (RFC 5322's "SHOULD" of 78).
const FOLD_WIDTH: usize = 78;

/// A word longer than this is cut, so that a field name or indent plus the word stays
/// under [`MAX_LINE`].
const MAX_WORD: usize = MAX_LINE - 98;

/// For the US-ASCII parts: every control character (CR and LF included) becomes a space,
/// so that a remote server cannot start a line of its own, and every non-ASCII
/// character becomes `\x{HEX}` (the RFC 6533 notation).
pub(super) fn ascii_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_control() {
            out.push(' ');
        } else if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    out
}

/// For the top-level header, where UTF-8 is allowed (RFC 6532): control characters are
/// dropped, everything else is kept.
pub(super) fn header_text(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// An RFC 3464 address field value: `rfc822; addr` for an ASCII address, or
/// `utf-8; addr` with the RFC 6533 `utf-8-addr-xtext` encoding otherwise (`+`, `=`,
/// `\`, spaces, controls and non-ASCII written as `\x{HEX}`).
pub(super) fn typed_address(address: &str) -> String {
    if address.is_ascii() {
        return format!("rfc822; {}", ascii_text(address).trim());
    }
    let mut encoded = String::with_capacity(address.len() + 16);
    for c in address.chars() {
        let is_qchar = matches!(c, '!'..='*' | ','..='<' | '>'..='[' | ']'..='~');
        if is_qchar {
            encoded.push(c);
        } else {
            encoded.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    format!("utf-8; {encoded}")
}

/// `Name: value` as one header field, folded at spaces near [`FOLD_WIDTH`], ending
/// with CRLF. `value` must already be free of CR and LF.
pub(super) fn fold_field(name: &str, value: &str) -> String {
    wrap(&format!("{name}: "), value, " ", FOLD_WIDTH)
}

/// Lays the words of `text` out after `first`, breaking lines before `width` where a
/// space allows, continuing on lines that start with `indent`. Each line ends with CRLF
/// and none exceeds [`MAX_LINE`]: a word too long for that is cut into pieces (which
/// reads as an inserted space once unfolded — only for words of hundreds of octets).
/// Runs of spaces collapse into one.
pub(super) fn wrap(first: &str, text: &str, indent: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut line = first.to_string();
    let mut line_has_words = false;
    for word in text.split(' ').filter(|word| !word.is_empty()) {
        for piece in pieces(word, MAX_WORD) {
            let separator = usize::from(line_has_words);
            if line_has_words && line.len() + separator + piece.len() > width {
                out.push_str(&line);
                out.push_str("\r\n");
                line = indent.to_string();
                line_has_words = false;
            }
            if line_has_words {
                line.push(' ');
            }
            line.push_str(piece);
            line_has_words = true;
        }
    }
    out.push_str(line.trim_end());
    out.push_str("\r\n");
    out
}

/// `word` cut at character boundaries into pieces of at most `max` bytes.
fn pieces(word: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_text_turns_line_breaks_into_spaces_and_escapes_non_ascii() {
        assert_eq!(ascii_text("a\r\nb\tc\x7f"), "a  b c ");
        assert_eq!(ascii_text("café"), "caf\\x{E9}");
    }

    #[test]
    fn utf8_addresses_use_the_rfc_6533_encoding() {
        assert_eq!(
            typed_address("bob@example.test"),
            "rfc822; bob@example.test"
        );
        assert_eq!(
            typed_address("jöe+x@example.test"),
            "utf-8; j\\x{F6}e\\x{2B}x@example.test"
        );
    }

    #[test]
    fn wrap_folds_at_spaces_and_cuts_only_giant_words() {
        let folded = fold_field("Diagnostic-Code", &"word ".repeat(40));
        for line in folded.split("\r\n").filter(|line| !line.is_empty()) {
            assert!(line.len() <= FOLD_WIDTH, "{line:?}");
        }
        assert!(folded.starts_with("Diagnostic-Code: word word"));
        assert!(folded.contains("\r\n word"));

        let giant = "x".repeat(5000);
        let folded = fold_field("Diagnostic-Code", &giant);
        assert!(folded.split("\r\n").all(|line| line.len() <= MAX_LINE));
        assert_eq!(folded.matches('x').count(), 5000);
    }

    #[test]
    fn pieces_respect_character_boundaries() {
        let word = "é".repeat(10);
        let cut: Vec<&str> = pieces(&word, 5).collect();
        assert!(cut.iter().all(|piece| piece.len() <= 5));
        assert_eq!(cut.concat(), word);
    }
}
