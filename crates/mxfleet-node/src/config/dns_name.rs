//! DNS names as the config writes them: peer hosts, the SMTP hostname, relay domains and
//! the names a TLS certificate is served for.
//!
//! One syntax (RFC 1123: letters, digits and hyphens; labels of 1 to 63 characters, not
//! starting or ending with a hyphen; 253 characters at most; the last label not all
//! digits, so that a mistyped IPv4 address such as `10.0.1.300` is not taken for a name),
//! and one normal form (lower case, no trailing dot), so that `Example.ORG.` and
//! `example.org` compare equal wherever the config checks for duplicates.
//!
//! Internationalized names must be written as A-labels (`xn--…`): the config does no
//! IDNA mapping, and a U-label would never equal the A-label a peer sends.
//!
//! Each function returns the normalized name, or why the text is not one as a phrase
//! to follow the quoted text ("has an empty label"); the caller adds the text and key.

/// A host name with one or more labels, e.g. `mx1` or `mx1.example.net`.
pub(crate) fn host_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    let fault = |why: &str| Err(why.to_owned());
    if name.is_empty() {
        return fault("is empty");
    }
    if name.len() > 253 {
        return fault("is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return fault("has an empty label");
        }
        if label.len() > 63 {
            return fault("has a label longer than 63 characters");
        }
        if !label.is_ascii() {
            return fault("is not ASCII: write an internationalized name in its xn-- form");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return fault("may only contain letters, digits, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return fault("has a label that starts or ends with '-'");
        }
    }
    let last_label_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()));
    if last_label_numeric {
        return fault("ends in an all-digit label (an IP address is not a name)");
    }
    Ok(name.to_ascii_lowercase())
}

/// A fully qualified domain: a host name with at least two labels, e.g. `example.org`.
pub(crate) fn domain(text: &str) -> Result<String, String> {
    let name = host_name(text)?;
    if !name.contains('.') {
        return Err(r#"is not fully qualified: write e.g. "example.org""#.to_owned());
    }
    Ok(name)
}

/// A name a certificate is served for: a domain, or `*.` followed by a domain, which
/// matches exactly one more label (`*.example.net` matches `mx.example.net`, not
/// `example.net` and not `a.mx.example.net`), as in the SNI table of the SMTP listener.
pub(crate) fn certificate_name(text: &str) -> Result<String, String> {
    match text.strip_prefix("*.") {
        Some(parent) if !parent.contains('*') => domain(parent).map(|parent| format!("*.{parent}")),
        _ if text.contains('*') => {
            Err(r#"may only use '*' as its whole first label, e.g. "*.example.net""#.to_owned())
        }
        _ => domain(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        assert_eq!(
            host_name("MX1.Example.NET."),
            Ok("mx1.example.net".to_owned())
        );
        assert_eq!(host_name("dev-node"), Ok("dev-node".to_owned()));
        assert_eq!(
            domain("xn--bcher-kva.example"),
            Ok("xn--bcher-kva.example".to_owned())
        );
        assert_eq!(
            certificate_name("*.Example.net"),
            Ok("*.example.net".to_owned())
        );
    }

    #[test]
    fn malformed_names_say_why() {
        let cases = [
            (host_name(""), "is empty"),
            (host_name("."), "is empty"),
            (host_name("mx..example.net"), "empty label"),
            (host_name(&"a".repeat(64)), "longer than 63"),
            (host_name(&"a.".repeat(128)), "longer than 253"),
            (host_name("mx_1.example.net"), "only contain"),
            (host_name("mx 1.example.net"), "only contain"),
            (host_name("bücher.example"), "xn--"),
            (host_name("-mx.example.net"), "starts or ends"),
            (host_name("10.0.1.300"), "all-digit"),
            (domain("localhost"), "fully qualified"),
            (certificate_name("*.net"), "fully qualified"),
            (certificate_name("mx.*.example.net"), "whole first label"),
            (certificate_name("*mx.example.net"), "whole first label"),
            (certificate_name("*.*.example.net"), "whole first label"),
        ];
        for (result, expected) in cases {
            match result {
                Ok(name) => panic!("{name:?} was accepted, expected an error with {expected:?}"),
                Err(why) => assert!(why.contains(expected), "{why}"),
            }
        }
    }
}
