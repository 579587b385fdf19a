//! Postfix lookup tables as the importer meets them: references in `main.cf`
//! (`hash:/etc/postfix/relay_recipients`), the text source files `postmap` compiles, and
//! what their entries mean for `relay_recipient_maps` and `transport_maps`.
//!
//! Only tables with a text source can be read: `hash:`, `btree:`, `lmdb:`, `cdb:`,
//! `dbm:` and `sdbm:` (the source is the path without the `.db` suffix, which is how
//! `main.cf` names them anyway) and `texthash:` (the path is the text). `proxy:` in front
//! of one of those is looked through. Database, regular-expression and `inline:` tables
//! are reported instead.
//!
//! Layout: [`MapRef`] and [`parse_map_ref`]; [`parse_map_text`] ([`MapEntry`]);
//! [`RecipientTable`] (relay recipients grouped by domain); [`transport_key`] (what a
//! transport entry's key matches) and [`transport_next_hop`] (one transport entry as an
//! mxfleet `next_hop`); tests at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use mxfleet_delivery::route::NextHop;

/// A `type:name` table reference in `main.cf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapRef {
    /// A table compiled from (or read as) a text file: `source` is that file.
    Text { reference: String, source: PathBuf },
    /// Any other table type: its entries cannot be known from files.
    Unreadable { reference: String, kind: String },
}

/// Table types compiled by `postmap` from a text file at the same path.
const COMPILED_FROM_TEXT: &[&str] = &["hash", "btree", "lmdb", "cdb", "dbm", "sdbm"];

/// `hash:/etc/postfix/transport` and the like; `None` when `text` is not `type:name`.
pub fn parse_map_ref(text: &str) -> Option<MapRef> {
    let (kind, name) = text.split_once(':')?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    if kind == "proxy" {
        return parse_map_ref(name).map(|inner| match inner {
            MapRef::Text { source, .. } => MapRef::Text {
                reference: text.to_owned(),
                source,
            },
            MapRef::Unreadable { kind, .. } => MapRef::Unreadable {
                reference: text.to_owned(),
                kind,
            },
        });
    }
    let readable = kind == "texthash" || COMPILED_FROM_TEXT.contains(&kind);
    Some(if readable && name.starts_with('/') {
        MapRef::Text {
            reference: text.to_owned(),
            source: PathBuf::from(name),
        }
    } else {
        MapRef::Unreadable {
            reference: text.to_owned(),
            kind: kind.to_owned(),
        }
    })
}

/// One entry of a table's text source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// Lower case, as `postmap` stores it.
    pub key: String,
    pub value: String,
    /// 1-based line where the entry starts.
    pub line: usize,
}

/// The entries of a `postmap` source: `key value` per logical line, `#` comment lines
/// and blank lines skipped, a line starting with white space continuing the previous
/// one. A key without a value is kept with an empty value.
pub fn parse_map_text(text: &str) -> Vec<MapEntry> {
    let mut entries: Vec<MapEntry> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace)
            && let Some(last) = entries.last_mut()
        {
            if !last.value.is_empty() {
                last.value.push(' ');
            }
            last.value.push_str(trimmed);
            continue;
        }
        let (key, value) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        entries.push(MapEntry {
            key: key.to_lowercase(),
            value: value.trim().to_owned(),
            line: index + 1,
        });
    }
    entries
}

/// Whom one relay domain accepts, from `relay_recipient_maps`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainRecipients {
    /// An `@domain` entry: every local part.
    pub catch_all: bool,
    /// Lower-case local parts, sorted.
    pub local_parts: BTreeSet<String>,
}

/// `relay_recipient_maps` entries grouped by domain, and the entries that fit no
/// relay domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientTable {
    pub by_domain: BTreeMap<String, DomainRecipients>,
    /// `(entry, why it was left out)`.
    pub left_out: Vec<(String, String)>,
}

impl RecipientTable {
    /// Adds the entries of one table source (`origin` names it in reasons); only
    /// domains in `relay_domains` are kept.
    pub fn add(&mut self, entries: &[MapEntry], origin: &str, relay_domains: &BTreeSet<String>) {
        for entry in entries {
            let where_ = format!("{origin} line {}", entry.line);
            let Some((local, domain)) = entry.key.rsplit_once('@') else {
                self.left_out.push((
                    entry.key.clone(),
                    format!(
                        "{where_}: a bare local part only matches Postfix's local domains; \
                         write it as user@domain for each relay domain"
                    ),
                ));
                continue;
            };
            let domain = domain.trim_end_matches('.');
            if !relay_domains.contains(domain) {
                self.left_out.push((
                    entry.key.clone(),
                    format!("{where_}: {domain} is not in relay_domains"),
                ));
                continue;
            }
            let recipients = self.by_domain.entry(domain.to_owned()).or_default();
            if local.is_empty() {
                recipients.catch_all = true;
            } else {
                recipients.local_parts.insert(local.to_owned());
            }
        }
    }
}

/// What the key of a `transport_maps` entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKey<'a> {
    /// `example.org`: that domain.
    Domain(&'a str),
    /// `*`: every destination without an entry of its own.
    Wildcard,
    /// `.example.org`: the subdomains of example.org.
    Subdomains(&'a str),
    /// `user@example.org` (or `user@`): one recipient.
    Recipient,
}

/// Classifies a (lower-case) `transport_maps` key.
pub fn transport_key(key: &str) -> TransportKey<'_> {
    if key == "*" {
        TransportKey::Wildcard
    } else if key.contains('@') {
        TransportKey::Recipient
    } else if let Some(parent) = key.strip_prefix('.') {
        TransportKey::Subdomains(parent)
    } else {
        TransportKey::Domain(key.trim_end_matches('.'))
    }
}

/// What one transport entry says about a relay domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportRoute {
    /// Deliver by SMTP to this mxfleet `next_hop` (`"mx"` or `[host]:port` entries).
    NextHop(String),
    /// Not expressible in mxfleet; the reason.
    Unsupported(String),
}

/// The transport value `value` of `domain` (`smtp:[mail.example.org]:25`,
/// `relay:[10.0.0.1]`, `smtp:`, `:[host]`) as an mxfleet `next_hop`.
///
/// An unbracketed host asks Postfix for that host's MX records: that is `"mx"` when the
/// host is the domain itself on port 25, and has no mxfleet form otherwise (mxfleet's
/// `"mx"` connects to the fleet-wide `delivery.mx_port`).
pub fn transport_next_hop(domain: &str, value: &str) -> TransportRoute {
    let (transport, next_hop) = value.split_once(':').unwrap_or((value, ""));
    if !transport.is_empty() && transport != "smtp" && transport != "relay" {
        return TransportRoute::Unsupported(format!(
            "the {transport:?} transport; mxfleet delivers relay domains by SMTP only"
        ));
    }
    let hops: Vec<&str> = next_hop
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|hop| !hop.is_empty())
        .collect();
    if hops.is_empty() {
        return TransportRoute::NextHop("mx".to_owned());
    }
    if let [only] = hops.as_slice() {
        let (host, port) = match only.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (*only, None),
        };
        if host.eq_ignore_ascii_case(domain) {
            return match port {
                None | Some("25" | "smtp") => TransportRoute::NextHop("mx".to_owned()),
                Some(port) => TransportRoute::Unsupported(format!(
                    "{only:?} asks for the MX records of {host} on port {port}; mxfleet's \
                     next_hop = \"mx\" connects to delivery.mx_port, one port for the whole \
                     fleet (default 25): set that if every MX mxfleet delivers to listens on \
                     {port}, or name the hosts as [host]:{port}"
                )),
            };
        }
    }
    if let Some(bare) = hops.iter().find(|hop| !hop.starts_with('[')) {
        return TransportRoute::Unsupported(format!(
            "{bare:?} asks for the MX records of another host; mxfleet looks up the \
             domain's own MX records (\"mx\") or takes [host]:port entries"
        ));
    }
    match NextHop::parse(&hops.join(", ")) {
        Ok(parsed) => TransportRoute::NextHop(parsed.to_string()),
        Err(why) => TransportRoute::Unsupported(why.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_keys() {
        let table = [
            ("example.org", TransportKey::Domain("example.org")),
            ("example.org.", TransportKey::Domain("example.org")),
            ("*", TransportKey::Wildcard),
            (".example.org", TransportKey::Subdomains("example.org")),
            ("alice@example.org", TransportKey::Recipient),
            ("alice@", TransportKey::Recipient),
        ];
        for (key, want) in table {
            assert_eq!(transport_key(key), want, "{key}");
        }
    }

    #[test]
    fn an_mx_lookup_on_another_port_is_reported_with_its_port() {
        let TransportRoute::Unsupported(why) =
            transport_next_hop("example.org", "smtp:example.org:2525")
        else {
            panic!("carried over");
        };
        assert!(why.contains("port 2525"), "{why}");
        assert!(why.contains("delivery.mx_port"), "{why}");
    }

    #[test]
    fn map_references() {
        let text = |source: &str| {
            Some(MapRef::Text {
                reference: String::new(),
                source: PathBuf::from(source),
            })
        };
        let table = [
            (
                "hash:/etc/postfix/relay_recipients",
                text("/etc/postfix/relay_recipients"),
            ),
            ("texthash:/etc/postfix/relay", text("/etc/postfix/relay")),
            (
                "lmdb:/etc/postfix/transport",
                text("/etc/postfix/transport"),
            ),
            ("proxy:hash:/etc/postfix/x", text("/etc/postfix/x")),
            ("example.org", None),
            ("/etc/postfix/domains", None),
        ];
        for (reference, want) in table {
            let got = parse_map_ref(reference).map(|map| match map {
                MapRef::Text { source, .. } => MapRef::Text {
                    reference: String::new(),
                    source,
                },
                other => other,
            });
            assert_eq!(got, want, "{reference}");
        }
        for unreadable in ["mysql:/etc/postfix/mysql.cf", "pcre:/etc/postfix/x.pcre"] {
            assert!(
                matches!(parse_map_ref(unreadable), Some(MapRef::Unreadable { .. })),
                "{unreadable}"
            );
        }
    }

    #[test]
    fn map_text_with_comments_and_continuations() {
        let entries = parse_map_text(
            "# relay recipients\n\
             Alice@Example.org   OK\n\
             \n\
             @example.net\tOK\n\
             bob@example.org\n  OK\n\
             \t# indented comment\n",
        );
        let got: Vec<(&str, &str, usize)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("alice@example.org", "OK", 2),
                ("@example.net", "OK", 4),
                ("bob@example.org", "OK", 5),
            ]
        );
    }

    #[test]
    fn recipients_are_grouped_by_relay_domain() {
        let relay: BTreeSet<String> = ["example.org", "example.net"].map(str::to_owned).into();
        let mut table = RecipientTable::default();
        table.add(
            &parse_map_text(
                "alice@example.org OK\nbob@example.org OK\n@example.net OK\n\
                 carol@elsewhere.test OK\npostmaster OK\n",
            ),
            "relay_recipients",
            &relay,
        );
        let org = &table.by_domain["example.org"];
        assert!(!org.catch_all);
        assert_eq!(org.local_parts.iter().collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(table.by_domain["example.net"].catch_all);
        let left_out: Vec<&str> = table.left_out.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(left_out, ["carol@elsewhere.test", "postmaster"]);
        assert!(table.left_out[0].1.contains("relay_recipients line 4"));
    }

    #[test]
    fn transport_values_as_next_hops() {
        let hop = |s: &str| TransportRoute::NextHop(s.to_owned());
        let table = [
            ("smtp:[mail.example.org]:25", hop("[mail.example.org]:25")),
            ("relay:[10.0.0.1]", hop("[10.0.0.1]:25")),
            (
                "smtp:[Mail.Example.org]:2525",
                hop("[mail.example.org]:2525"),
            ),
            (
                "smtp:[a.example.org],[b.example.org]:587",
                hop("[a.example.org]:25, [b.example.org]:587"),
            ),
            (":[mail.example.org]", hop("[mail.example.org]:25")),
            ("smtp:", hop("mx")),
            ("relay:example.org", hop("mx")),
            ("smtp:Example.org:25", hop("mx")),
            ("smtp:example.org:smtp", hop("mx")),
            ("smtp:[ipv6:2001:db8::25]:25", hop("[ipv6:2001:db8::25]:25")),
        ];
        for (value, want) in table {
            assert_eq!(transport_next_hop("example.org", value), want, "{value}");
        }
        for unsupported in [
            "lmtp:unix:private/dovecot-lmtp",
            "error:mailbox unavailable",
            "smtp:mail.example.com",
            "smtp:[bad host]",
            "smtp:example.org:2525",
            "relay:example.org:submission",
        ] {
            assert!(
                matches!(
                    transport_next_hop("example.org", unsupported),
                    TransportRoute::Unsupported(_)
                ),
                "{unsupported}"
            );
        }
    }
}
