//! The `[[relay_domains]]` tables: `relay_domains` for the names,
//! `relay_recipient_maps` for whom each accepts, `transport_maps` and
//! `smtp_fallback_relay` for where its mail goes.
//!
//! Recipients, as Postfix decides them:
//! - `relay_recipient_maps` not set: every address of a relay domain is accepted, so
//!   each domain gets `catch_all = true`.
//! - An `@domain` entry: `catch_all = true`.
//! - `user@domain` entries: `recipients = [...]`, or a `recipient_file` written to
//!   `--recipients-dir`.
//! - A domain no entry names: Postfix refuses all its mail, so it is left out (and
//!   reported), unless some map could not be read, in which case its recipients are
//!   unknown: it gets `catch_all = true` with a `TODO`, and the report says so.
//!
//! A domain also in `mydestination` (as expanded, or Postfix's default) is local to
//! Postfix, not relayed: it is left out and reported (`relay_domains = $mydestination,
//! ...` is common).
//!
//! Routes, from `transport_maps`: a relay domain's own entry, else the `*` entry (the
//! default route), else the domain's MX records. Subdomain (`.example.org`) and
//! per-recipient (`user@example.org`) keys are reported, as is an MX lookup on a port
//! other than 25 (mxfleet has one `delivery.mx_port` for the fleet).
//!
//! Layout: [`RelayTables`], then `Converter`'s methods, one per parameter.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use mxfleet_delivery::route::NextHop;

use super::convert::{Converter, FileText};
use super::document::{Entry, NotCarried, Table, Value};
use super::main_cf::split_list;
use super::maps::{
    MapEntry, MapRef, RecipientTable, TransportKey, TransportRoute, parse_map_ref, parse_map_text,
    transport_key, transport_next_hop,
};

/// At most this many left-out map entries are listed one by one.
const LISTED_LEFT_OUT: usize = 20;

/// The relay domain tables, and the domains that kept the default route because
/// `transport_maps` does not name them (Postfix would have used `relayhost`).
pub(super) struct RelayTables {
    pub(super) tables: Vec<Table>,
    pub(super) without_next_hop: Vec<String>,
}

/// The entries of the text sources behind one map parameter.
struct MapSources {
    /// `(origin, entries)` for every source that could be read.
    read: Vec<(String, Vec<MapEntry>)>,
    /// Some source could not be read (or is not a text table).
    incomplete: bool,
}

impl Converter<'_> {
    pub(super) fn relay_domain_tables(&mut self) -> RelayTables {
        let domains = self.relay_domain_names();
        self.recipient_delimiter();
        if !domains.is_empty() {
            self.parent_domain_matching();
        }
        let recipients = self.recipients(&domains);
        let routes = self.transport_routes(&domains);
        let fallback = self.fallback_relay();
        let mut tables = Vec::new();
        let mut without_next_hop = Vec::new();
        for domain in &domains {
            let Some((recipient_entry, comment)) = self.recipient_entry(domain, &recipients) else {
                continue;
            };
            let mut table = Table::array_element("relay_domains", "relay_domains");
            table.push(
                Entry::from_param("domain", Value::Str(domain.clone()), "relay_domains")
                    .essential(),
            );
            table.push(recipient_entry.comment(comment));
            match routes.get(domain) {
                Some(next_hop) => table.push(
                    Entry::from_param("next_hop", Value::Str(next_hop.clone()), "transport_maps")
                        .comment("Postfix: transport_maps"),
                ),
                None => without_next_hop.push(domain.clone()),
            }
            let next_hop = routes.get(domain).map_or("mx", String::as_str);
            if let Some(fallback) = &fallback
                && fallback != next_hop
            {
                table.push(
                    Entry::from_param(
                        "fallback_relay",
                        Value::Str(fallback.clone()),
                        "smtp_fallback_relay",
                    )
                    .comment("Postfix: smtp_fallback_relay"),
                );
            }
            tables.push(table);
        }
        if let Some(first) = tables.first_mut() {
            first.comments.extend(
                [
                    "The domains this fleet is a backup MX for (Postfix: relay_domains), whom",
                    "each accepts (relay_recipient_maps) and where its mail goes",
                    "(transport_maps; without next_hop, the domain's MX records).",
                ]
                .map(str::to_owned),
            );
        }
        RelayTables {
            tables,
            without_next_hop,
        }
    }

    /// The names `relay_domains` lists, directly or through files and tables.
    fn relay_domain_names(&mut self) -> Vec<String> {
        const PARAMETER: &str = "relay_domains";
        let Some(value) = self.value(PARAMETER) else {
            if self.cf.param(PARAMETER).is_some() {
                // Set, but its expansion failed: already reported.
                return Vec::new();
            }
            self.not_carried.push(NotCarried::new(
                PARAMETER,
                "not set in main.cf, so no [[relay_domains]] was written: the node refuses \
                 every recipient. Postfix relays for no domain by default with \
                 compatibility_level 2 or later; before that the default was $mydestination, \
                 whose domains Postfix delivers locally rather than relaying",
            ));
            return Vec::new();
        };
        let mut names: Vec<String> = Vec::new();
        for item in split_list(&value) {
            let listed: Vec<String> = if item.starts_with('/') {
                match self.files.get(std::path::Path::new(item)) {
                    Some(FileText::Text(text)) => text
                        .lines()
                        .filter(|line| !line.trim_start().starts_with('#'))
                        .flat_map(split_list)
                        .map(str::to_owned)
                        .collect(),
                    other => {
                        self.not_carried.push(unreadable(PARAMETER, item, other));
                        continue;
                    }
                }
            } else if let Some(map) = parse_map_ref(item) {
                let sources = self.read_map(PARAMETER, &[map], None);
                sources
                    .read
                    .into_iter()
                    .flat_map(|(_, entries)| entries)
                    .map(|entry| entry.key)
                    .collect()
            } else {
                vec![item.to_owned()]
            };
            for name in listed {
                let name = name.to_lowercase().trim_end_matches('.').to_owned();
                if name.starts_with('.') || name.starts_with('!') || name.contains('*') {
                    self.not_carried.push(NotCarried::new(
                        PARAMETER,
                        format!(
                            "{name:?}: mxfleet lists each domain by name, with no subdomain \
                             patterns or exclusions; add a [[relay_domains]] table for each \
                             subdomain"
                        ),
                    ));
                } else if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        // Postfix decides mydestination first: a domain in both is local, not relayed.
        let local = self.mydestination_domains();
        let (local_listed, names): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|name| local.contains(name));
        if !local_listed.is_empty() {
            self.not_carried.push(NotCarried::new(
                PARAMETER,
                format!(
                    "{} also in mydestination, so Postfix delivered their mail locally \
                     instead of relaying it; left out (mxfleet delivers nothing locally: add \
                     a [[relay_domains]] table if this fleet should be their backup MX)",
                    local_listed.join(", ")
                ),
            ));
        }
        names
    }

    /// The domain names of `mydestination` as Postfix expands it (its default
    /// `$myhostname, localhost.$mydomain, localhost` when `main.cf` does not set it).
    /// Not marked used: `mydestination` is still reported as local delivery.
    fn mydestination_domains(&self) -> BTreeSet<String> {
        const DEFAULT: &str = "$myhostname, localhost.$mydomain, localhost";
        let expanded = match self.cf.expand("mydestination") {
            Some(expanded) => expanded,
            None => self.cf.expand_text(DEFAULT).or_else(|_| {
                // Without myhostname or mydomain only localhost is known.
                self.cf.expand_text("localhost")
            }),
        };
        let Ok(expanded) = expanded else {
            return BTreeSet::new();
        };
        split_list(&expanded.value)
            .into_iter()
            .filter(|item| !item.starts_with('/') && parse_map_ref(item).is_none())
            .map(|item| item.to_lowercase().trim_end_matches('.').to_owned())
            .collect()
    }

    /// The text sources behind `maps` (or `replacement`, the file given on the command
    /// line in their place).
    fn read_map(
        &mut self,
        parameter: &str,
        maps: &[MapRef],
        replacement: Option<&std::path::Path>,
    ) -> MapSources {
        let mut sources = MapSources {
            read: Vec::new(),
            incomplete: false,
        };
        let paths: Vec<(std::path::PathBuf, String)> = match replacement {
            Some(path) => vec![(path.to_path_buf(), path.display().to_string())],
            None => maps
                .iter()
                .filter_map(|map| match map {
                    MapRef::Text { reference, source } => Some((source.clone(), reference.clone())),
                    MapRef::Unreadable { reference, kind } => {
                        sources.incomplete = true;
                        self.not_carried.push(NotCarried::new(
                            parameter,
                            format!(
                                "{reference}: a {kind} table has no text source to read; \
                                 export its entries to a file and pass it on the command line"
                            ),
                        ));
                        None
                    }
                })
                .collect(),
        };
        for (path, reference) in paths {
            match self.files.get(&path) {
                Some(FileText::Text(text)) => sources
                    .read
                    .push((path.display().to_string(), parse_map_text(text))),
                other => {
                    sources.incomplete = true;
                    let item = if reference == path.display().to_string() {
                        reference
                    } else {
                        format!("{reference} (source {})", path.display())
                    };
                    self.not_carried.push(unreadable(parameter, &item, other));
                }
            }
        }
        sources
    }

    /// The map references of `parameter`; `None` when it is not set or empty.
    fn map_refs(&mut self, parameter: &str) -> Option<Vec<MapRef>> {
        let value = self.value(parameter)?;
        let mut maps = Vec::new();
        for item in split_list(&value) {
            match parse_map_ref(item) {
                Some(map) => maps.push(map),
                None => self.not_carried.push(NotCarried::new(
                    parameter,
                    format!("{item:?} is not a type:table reference"),
                )),
            }
        }
        (!maps.is_empty()).then_some(maps)
    }

    /// `relay_recipient_maps` by domain; `None` when it is not set (accept everyone).
    fn recipients(&mut self, domains: &[String]) -> Option<(RecipientTable, bool)> {
        const PARAMETER: &str = "relay_recipient_maps";
        let maps = self.map_refs(PARAMETER)?;
        let replacement = self.options.relay_recipients.clone();
        let sources = self.read_map(PARAMETER, &maps, replacement.as_deref());
        let relay: BTreeSet<String> = domains.iter().cloned().collect();
        let mut table = RecipientTable::default();
        for (origin, entries) in &sources.read {
            table.add(entries, origin, &relay);
        }
        let left_out = std::mem::take(&mut table.left_out);
        self.report_left_out(PARAMETER, left_out);
        Some((table, sources.incomplete))
    }

    /// One domain's recipient key and its comment; `None` when Postfix accepts nobody.
    fn recipient_entry(
        &mut self,
        domain: &str,
        recipients: &Option<(RecipientTable, bool)>,
    ) -> Option<(Entry, String)> {
        const PARAMETER: &str = "relay_recipient_maps";
        let catch_all = |comment: &str| {
            Some((
                Entry::from_param("catch_all", Value::Bool(true), PARAMETER),
                comment.to_owned(),
            ))
        };
        let Some((table, incomplete)) = recipients else {
            return catch_all(
                "relay_recipient_maps is not set, so Postfix accepted every address here. \
                 A list (recipients or recipient_file) avoids backscatter.",
            );
        };
        match table.by_domain.get(domain) {
            Some(found) if found.catch_all => {
                catch_all("Postfix: an @domain entry in relay_recipient_maps.")
            }
            Some(found) => {
                let count = found.local_parts.len();
                let (entry, where_) = match &self.options.recipients_dir {
                    Some(dir) => {
                        let path = dir.join(domain);
                        let mut text = format!(
                            "# Recipients of {domain}, imported from relay_recipient_maps \
                             by mxfleet import-postfix.\n"
                        );
                        for local in &found.local_parts {
                            let _ = writeln!(text, "{local}@{domain}");
                        }
                        self.recipient_files.push((path.clone(), text));
                        (
                            Entry::from_param(
                                "recipient_file",
                                Value::Str(path.display().to_string()),
                                PARAMETER,
                            ),
                            "written to that file".to_owned(),
                        )
                    }
                    None => (
                        Entry::from_param(
                            "recipients",
                            Value::StrList(found.local_parts.iter().cloned().collect()),
                            PARAMETER,
                        ),
                        "local parts".to_owned(),
                    ),
                };
                Some((
                    entry,
                    format!("{count} addresses from relay_recipient_maps, {where_}."),
                ))
            }
            None if *incomplete => {
                self.not_carried.push(NotCarried::new(
                    PARAMETER,
                    format!(
                        "the recipients of {domain} are unknown (a map could not be read), \
                         so it accepts every address (catch_all = true) until you list them"
                    ),
                ));
                catch_all("TODO: recipients unknown (relay_recipient_maps could not be read).")
            }
            None => {
                self.not_carried.push(NotCarried::new(
                    PARAMETER,
                    format!(
                        "no entry for {domain}, so Postfix refused all its mail; left out \
                         (add it with recipients, recipient_file or catch_all = true)"
                    ),
                ));
                None
            }
        }
    }

    /// `transport_maps` entries of relay domains, as `next_hop` values. A `*` entry
    /// (Postfix's route for every destination without an entry of its own) becomes the
    /// `next_hop` of the relay domains without one.
    fn transport_routes(&mut self, domains: &[String]) -> BTreeMap<String, String> {
        const PARAMETER: &str = "transport_maps";
        let mut routes = BTreeMap::new();
        let replacement = self.options.transport.clone();
        let maps = match (self.map_refs(PARAMETER), &replacement) {
            (Some(maps), _) => maps,
            (None, Some(_)) => Vec::new(),
            (None, None) => return routes,
        };
        let sources = self.read_map(PARAMETER, &maps, replacement.as_deref());
        let mut left_out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut wildcard: Option<(String, String)> = None;
        for (origin, entries) in sources.read {
            for entry in entries {
                let where_ = format!("{origin} line {}", entry.line);
                // Postfix takes the first match; later entries for a key are ignored.
                if !seen.insert(entry.key.clone()) {
                    continue;
                }
                let domain = match transport_key(&entry.key) {
                    TransportKey::Domain(domain) if domains.iter().any(|d| d == domain) => {
                        domain.to_owned()
                    }
                    TransportKey::Domain(_) => {
                        left_out.push((
                            entry.key.clone(),
                            format!(
                                "{where_}: not a relay domain; mxfleet routes other \
                                 destinations by their MX records or delivery.relayhost"
                            ),
                        ));
                        continue;
                    }
                    TransportKey::Wildcard => {
                        wildcard = Some((entry.value.clone(), where_));
                        continue;
                    }
                    TransportKey::Subdomains(_) => {
                        left_out.push((
                            format!("{} {}", entry.key, entry.value),
                            format!(
                                "{where_}: subdomain patterns are not carried over; mxfleet \
                                 relays and routes each relay domain by its exact name"
                            ),
                        ));
                        continue;
                    }
                    TransportKey::Recipient => {
                        left_out.push((
                            format!("{} {}", entry.key, entry.value),
                            format!(
                                "{where_}: per-recipient routes are not supported; mxfleet \
                                 routes whole relay domains (next_hop)"
                            ),
                        ));
                        continue;
                    }
                };
                match transport_next_hop(&domain, &entry.value) {
                    TransportRoute::NextHop(next_hop) => {
                        routes.insert(domain, next_hop);
                    }
                    TransportRoute::Unsupported(why) => left_out.push((
                        format!("{} {}", entry.key, entry.value),
                        format!("{where_}: {why}; the domain's MX records are used"),
                    )),
                }
            }
        }
        if let Some((value, where_)) = wildcard {
            self.wildcard_routes(domains, &seen, &value, &where_, &mut routes, &mut left_out);
        }
        self.report_left_out(PARAMETER, left_out);
        routes
    }

    /// The `*` entry `value` as the route of every relay domain without an entry.
    fn wildcard_routes(
        &mut self,
        domains: &[String],
        seen: &BTreeSet<String>,
        value: &str,
        where_: &str,
        routes: &mut BTreeMap<String, String>,
        left_out: &mut Vec<(String, String)>,
    ) {
        let mut covered = Vec::new();
        for domain in domains.iter().filter(|domain| !seen.contains(*domain)) {
            match transport_next_hop(domain, value) {
                TransportRoute::NextHop(next_hop) => {
                    routes.insert(domain.clone(), next_hop);
                    covered.push(domain.as_str());
                }
                TransportRoute::Unsupported(why) => left_out.push((
                    format!("* {value}"),
                    format!("{where_}: for {domain}, {why}; the domain's MX records are used"),
                )),
            }
        }
        let relay = if covered.is_empty() {
            "no relay domain uses it".to_owned()
        } else {
            format!(
                "it is the next_hop of {} (no entry of their own)",
                covered.join(", ")
            )
        };
        self.not_carried.push(NotCarried::new(
            "transport_maps",
            format!(
                "* {value}: {where_}: Postfix's route for every destination without an \
                 entry; in mxfleet {relay}, and other destinations (DSNs) go by \
                 delivery.relayhost or their MX records"
            ),
        ));
    }

    /// `smtp_fallback_relay` as a `fallback_relay` value.
    fn fallback_relay(&mut self) -> Option<String> {
        const PARAMETER: &str = "smtp_fallback_relay";
        let value = self.value(PARAMETER)?;
        let hops = split_list(&value);
        if hops.is_empty() {
            return None;
        }
        if let Some(bare) = hops.iter().find(|hop| !hop.starts_with('[')) {
            self.report(
                PARAMETER,
                format!(
                    "{bare:?} asks for the MX records of a relay host; mxfleet takes \
                     [host]:port entries only"
                ),
            );
            return None;
        }
        match NextHop::parse(&hops.join(", ")) {
            Ok(next_hop) => Some(next_hop.to_string()),
            Err(why) => {
                self.report(PARAMETER, why.to_string());
                None
            }
        }
    }

    fn report_left_out(&mut self, parameter: &str, left_out: Vec<(String, String)>) {
        let total = left_out.len();
        for (entry, why) in left_out.into_iter().take(LISTED_LEFT_OUT) {
            self.not_carried
                .push(NotCarried::new(parameter, format!("{entry}: {why}")));
        }
        if total > LISTED_LEFT_OUT {
            self.not_carried.push(NotCarried::new(
                parameter,
                format!(
                    "{} more entries left out, for the same reasons",
                    total - LISTED_LEFT_OUT
                ),
            ));
        }
    }
}

fn unreadable(parameter: &str, item: &str, found: Option<&FileText>) -> NotCarried {
    let why = match found {
        Some(FileText::Unreadable(why)) => why.as_str(),
        _ => "not read",
    };
    let hint = match parameter {
        "relay_recipient_maps" => "pass its text source as the second argument",
        "transport_maps" => "pass its text source with --transport FILE",
        _ => "run the import where the file is",
    };
    NotCarried::new(parameter, format!("{item}: cannot read it ({why}); {hint}"))
}
