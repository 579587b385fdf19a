//! Host-name and address-literal syntax, shared by address domains ([`super::parse_path`])
//! and HELO names ([`super::check_helo`]).
//!
//! - [`check_name`]: labels of 1-63 octets, letters/digits/hyphens (hyphen not first or
//!   last), at most 253 octets, top label not all digits. Non-ASCII letters are allowed
//!   so that SMTPUTF8 U-labels pass; we do no IDNA mapping, so a U-label never equals
//!   its `xn--` A-label here, and comparisons against relay domains fail closed.
//! - [`parse_address_literal`]: `[1.2.3.4]` and `[IPv6:...]`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest domain name, in octets, without a trailing dot (RFC 1035 §2.3.4 less the
/// length octets and root label).
pub(crate) const MAX_NAME: usize = 253;
/// Longest label, in octets (RFC 1035 §2.3.4). For a U-label this counts UTF-8 octets,
/// an approximation of the A-label length, which we cannot compute without IDNA.
pub(crate) const MAX_LABEL: usize = 63;

/// Why a name is not a valid host name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameFault {
    Empty,
    TooLong,
    EmptyLabel,
    LabelTooLong,
    Space,
    BadCharacter,
    MisplacedHyphen,
    NumericTopLabel,
}

impl NameFault {
    /// A short phrase for reply texts and errors.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NameFault::Empty => "empty domain",
            NameFault::TooLong => "domain longer than 253 octets",
            NameFault::EmptyLabel => "empty label in domain",
            NameFault::LabelTooLong => "domain label longer than 63 octets",
            NameFault::Space => "space in domain",
            NameFault::BadCharacter => "character not allowed in domain",
            NameFault::MisplacedHyphen => "hyphen at the start or end of a domain label",
            NameFault::NumericTopLabel => "all-numeric top-level domain",
        }
    }
}

/// What a caller tolerates beyond RFC 1123 letters, digits and hyphens.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NameRules {
    /// `_` in labels. Postfix's `valid_hostname` accepts it ("grr..") because Windows
    /// hosts announce such names in HELO; no mail domain needs it.
    pub(crate) allow_underscore: bool,
}

/// Checks the syntax of a host name without a trailing dot. Whether it needs a dot
/// (FQDN) is the caller's decision.
pub(crate) fn check_name(name: &str, rules: NameRules) -> Result<(), NameFault> {
    if name.is_empty() {
        return Err(NameFault::Empty);
    }
    // Spaces first: "exa mple.org" is better reported as a space than as a bad label.
    if name.chars().any(char::is_whitespace) {
        return Err(NameFault::Space);
    }
    if name.len() > MAX_NAME {
        return Err(NameFault::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameFault::EmptyLabel);
        }
        if label.len() > MAX_LABEL {
            return Err(NameFault::LabelTooLong);
        }
        if !label.chars().all(|c| is_label_char(c, rules)) {
            return Err(NameFault::BadCharacter);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameFault::MisplacedHyphen);
        }
    }
    // RFC 1123 §2.1: a top-level label is alphabetic, which is what keeps `1.2.3.4`
    // from passing as a name.
    let top = name.rsplit('.').next().unwrap_or(name);
    if top.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameFault::NumericTopLabel);
    }
    Ok(())
}

fn is_label_char(c: char, rules: NameRules) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '-' || (rules.allow_underscore && c == '_');
    }
    !c.is_control() && !c.is_whitespace() && !is_invisible_or_dot_like(c)
}

/// Non-ASCII characters we refuse in U-labels: IDNA maps these ideographic and
/// full-width full stops to `.`, and these invisible or bidi-control characters make two
/// different names look alike in logs and in the operator's config.
fn is_invisible_or_dot_like(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3002}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FF0E}'
            | '\u{FF61}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Parses an address literal, brackets included: `[192.0.2.1]` or `[IPv6:2001:db8::1]`
/// (RFC 5321 §4.1.3; the `IPv6:` tag is case-insensitive like all ABNF strings).
/// General literals (`[tag:content]`) are not supported and give `None`.
pub(crate) fn parse_address_literal(literal: &str) -> Option<IpAddr> {
    let inner = literal.strip_prefix('[')?.strip_suffix(']')?;
    let tag = "IPv6:";
    match inner.get(..tag.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(tag) => {
            inner[tag.len()..].parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        }
        _ => inner.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: NameRules = NameRules {
        allow_underscore: false,
    };

    #[test]
    fn name_syntax_table() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.org", vec!["a".repeat(62); 4].join("."));
        let table: &[(&str, Result<(), NameFault>)] = &[
            ("example.org", Ok(())),
            ("mx-1.example.org", Ok(())),
            ("xn--bcher-kva.example", Ok(())),
            ("bücher.example", Ok(())),
            ("例え.テスト", Ok(())),
            ("localhost", Ok(())),
            ("", Err(NameFault::Empty)),
            ("exa mple.org", Err(NameFault::Space)),
            ("example.org\u{3000}", Err(NameFault::Space)),
            (&long_name, Err(NameFault::TooLong)),
            ("example..org", Err(NameFault::EmptyLabel)),
            (".example.org", Err(NameFault::EmptyLabel)),
            (&long_label, Err(NameFault::LabelTooLong)),
            ("exa_mple.org", Err(NameFault::BadCharacter)),
            ("exa+mple.org", Err(NameFault::BadCharacter)),
            ("例え\u{3002}テスト", Err(NameFault::BadCharacter)),
            ("pay\u{200B}pal.example", Err(NameFault::BadCharacter)),
            ("-example.org", Err(NameFault::MisplacedHyphen)),
            ("example-.org", Err(NameFault::MisplacedHyphen)),
            ("1.2.3.4", Err(NameFault::NumericTopLabel)),
            ("host.123", Err(NameFault::NumericTopLabel)),
        ];
        for (name, expected) in table {
            assert_eq!(check_name(name, STRICT), *expected, "{name:?}");
        }
        let lenient = NameRules {
            allow_underscore: true,
        };
        assert_eq!(check_name("my_pc.example", lenient), Ok(()));
    }

    #[test]
    fn address_literals() {
        let table: &[(&str, bool)] = &[
            ("[192.0.2.1]", true),
            ("[IPv6:2001:db8::1]", true),
            ("[ipv6:::1]", true),
            ("[IPv6:::ffff:192.0.2.1]", true),
            ("[192.0.2.256]", false),
            ("[192.0.2]", false),
            ("[2001:db8::1]", false),
            ("[IPv6:2001:db8::1%eth0]", false),
            ("[IPv6:192.0.2.1]", false),
            ("[x400:foo]", false),
            ("192.0.2.1", false),
            ("[192.0.2.1", false),
            ("[]", false),
        ];
        for (literal, valid) in table {
            assert_eq!(
                parse_address_literal(literal).is_some(),
                *valid,
                "{literal:?}"
            );
        }
    }
}
