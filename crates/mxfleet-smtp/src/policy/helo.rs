//! HELO/EHLO name syntax: [`check_helo`], the equivalent of Postfix's
//! `reject_invalid_helo_hostname`. Syntax only: no DNS, no FQDN requirement, because a
//! backup MX must take mail from any MTA the primary would take it from, and real MTAs
//! announce single-label and underscore names.

use std::net::IpAddr;

use crate::reply::Reply;

use super::domain::{self, NameRules};
use super::echo;

/// Accepts a host name (single labels, underscores, one trailing dot and bare IP
/// addresses allowed, as Postfix allows them) or an address literal that parses
/// (`[192.0.2.1]`, `[IPv6:2001:db8::1]`). Refuses everything else with
/// `501 5.5.2 <host>: Helo command rejected: Invalid name`.
pub fn check_helo(host: &str) -> Result<(), Reply> {
    if is_valid_helo(host) {
        Ok(())
    } else {
        Err(Reply::new(
            501,
            "5.5.2",
            format!("<{}>: Helo command rejected: Invalid name", echo(host)),
        ))
    }
}

fn is_valid_helo(host: &str) -> bool {
    if host.starts_with('[') {
        return domain::parse_address_literal(host).is_some();
    }
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    domain::check_name(
        name,
        NameRules {
            allow_underscore: true,
        },
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_table() {
        let long_label = format!("{}.example", "a".repeat(64));
        let table: &[(&str, bool)] = &[
            ("mx.example.org", true),
            ("MX1.Example.ORG", true),
            ("localhost", true),
            ("my_pc", true),
            ("mx.example.org.", true),
            ("xn--bcher-kva.example", true),
            ("bücher.example", true),
            ("[192.0.2.1]", true),
            ("[IPv6:2001:db8::1]", true),
            ("[ipv6:::1]", true),
            ("192.0.2.1", true),
            ("2001:db8::1", true),
            ("", false),
            (".", false),
            ("mx example", false),
            (" mx.example.org", false),
            ("mx.example.org\r\nRCPT TO:<x@y>", false),
            ("mx..example", false),
            ("mx.example.org..", false),
            ("-mx.example", false),
            ("mx-.example", false),
            ("mx@example.org", false),
            ("mx/example", false),
            ("<mx.example.org>", false),
            (&long_label, false),
            ("12345", false),
            ("[192.0.2.256]", false),
            ("[192.0.2.1", false),
            ("192.0.2.1]", false),
            ("[2001:db8::1]", false),
            ("[IPv6:192.0.2.1]", false),
            ("[mx.example.org]", false),
            ("[]", false),
        ];
        for (host, valid) in table {
            let result = check_helo(host);
            assert_eq!(result.is_ok(), *valid, "{host:?}: {result:?}");
            if let Err(reply) = result {
                assert_eq!((reply.code, reply.status), (501, "5.5.2"), "{host:?}");
                assert!(reply.lines[0].ends_with(">: Helo command rejected: Invalid name"));
            }
        }
    }

    #[test]
    fn rejected_helo_is_echoed_without_control_characters() {
        let reply = check_helo("evil\r\n250 ok").unwrap_err();
        assert_eq!(
            reply.to_wire(),
            "501 5.5.2 <evil??250 ok>: Helo command rejected: Invalid name\r\n"
        );
    }
}
