//! The conversion itself: a parsed `main.cf` and the map sources it names in, a
//! commented node config and the list of what was not carried over out. Nothing here
//! touches the filesystem: [`files_to_read`] says which files the CLI should read, and
//! [`import`] takes their contents.
//!
//! Each Postfix parameter is read through [`Converter::value`], which expands it and
//! marks it (and every parameter it refers to) as used; whatever `main.cf` sets and is
//! never used ends in the not-carried list with a reason from [`super::leftovers`].
//!
//! The cluster settings Postfix has no word for (node id, site, peer port, initial
//! members, data directory) get the values of a one-node fleet that bootstraps itself,
//! each marked `TODO` for the operator.
//!
//! Layout: [`FileText`], [`ImportOptions`], [`Imported`], [`files_to_read`], [`import`];
//! [`Converter`] with one method per output section (`[smtp]` is in [`super::smtp`],
//! `[delivery]` in [`super::delivery`], the relay domains in [`super::domains`]); the
//! cluster tables and the header.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use mxfleet_node::config::ConfigErrors;

use super::document::{Document, Entry, NotCarried, Table, Value};
use super::main_cf::{ExpandError, MainCf, PostfixTime, parse_count, parse_time, split_list};
use super::maps::{MapRef, parse_map_ref};
use super::restrictions::SpamImport;

/// A file the CLI was asked to read, as it found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileText {
    Text(String),
    /// Missing or unreadable; the reason.
    Unreadable(String),
}

/// The files read for the conversion, by path.
pub type Files = BTreeMap<PathBuf, FileText>;

/// What the operator chose on the command line.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The text source of `relay_recipient_maps`, in place of the files its maps name.
    pub relay_recipients: Option<PathBuf>,
    /// The text source of `transport_maps`, in place of the files its maps name.
    pub transport: Option<PathBuf>,
    /// Write each relay domain's recipients to `<dir>/<domain>` and name that file in
    /// the config (`recipient_file`), instead of listing them inline.
    pub recipients_dir: Option<PathBuf>,
}

/// The result: the config text, what was left out, and the recipient files to write.
#[derive(Debug, Clone)]
pub struct Imported {
    pub toml: String,
    pub not_carried: Vec<NotCarried>,
    pub recipient_files: Vec<(PathBuf, String)>,
}

/// The map parameters whose text sources are read.
pub(super) const MAP_PARAMETERS: [&str; 3] =
    ["relay_domains", "relay_recipient_maps", "transport_maps"];

/// Every file the conversion would like to read: the map sources `main.cf` names and
/// the files given on the command line.
pub fn files_to_read(cf: &MainCf, options: &ImportOptions) -> Vec<PathBuf> {
    let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
    for parameter in MAP_PARAMETERS {
        let Some(Ok(expanded)) = cf.expand(parameter) else {
            continue;
        };
        for item in split_list(&expanded.value) {
            match parse_map_ref(item) {
                Some(MapRef::Text { source, .. }) => {
                    paths.insert(source);
                }
                // relay_domains may name a plain file of domain names.
                None if item.starts_with('/') => {
                    paths.insert(PathBuf::from(item));
                }
                _ => {}
            }
        }
    }
    paths.extend(options.relay_recipients.iter().cloned());
    paths.extend(options.transport.iter().cloned());
    paths.into_iter().collect()
}

/// Converts `cf`; the loader's errors only if the result cannot be made valid, which
/// is a bug in the importer.
pub fn import(
    cf: &MainCf,
    files: &Files,
    options: &ImportOptions,
) -> Result<Imported, ConfigErrors> {
    let mut converter = Converter {
        cf,
        files,
        options,
        used: BTreeSet::new(),
        not_carried: Vec::new(),
        recipient_files: Vec::new(),
    };
    for problem in &cf.problems {
        converter.not_carried.push(NotCarried::new(
            format!("main.cf line {}", problem.line),
            format!("{:?} is not a `name = value` setting", problem.text),
        ));
    }
    let mut document = Document::default();
    let myhostname = converter.value("myhostname");
    document
        .tables
        .extend(cluster_tables(myhostname.as_deref()));
    document.tables.push(converter.smtp(myhostname.as_deref()));
    let relay = converter.relay_domain_tables();
    document
        .tables
        .push(converter.delivery(&relay.without_next_hop));
    document.tables.extend(converter.spam());
    document.tables.extend(relay.tables);
    converter.leftovers();

    let mut not_carried = converter.not_carried;
    let (_, toml) = document.clone().into_valid_toml(&mut not_carried)?;
    let mut header = header_comments(&not_carried);
    header.push(String::new());
    let with_header = Document {
        header,
        tables: Vec::new(),
    }
    .render();
    Ok(Imported {
        toml: format!("{with_header}{toml}"),
        not_carried,
        recipient_files: converter.recipient_files,
    })
}

/// Reads `main.cf` parameters, remembering which were used.
pub(super) struct Converter<'a> {
    pub(super) cf: &'a MainCf,
    pub(super) files: &'a Files,
    pub(super) options: &'a ImportOptions,
    pub(super) used: BTreeSet<String>,
    pub(super) not_carried: Vec<NotCarried>,
    pub(super) recipient_files: Vec<(PathBuf, String)>,
}

impl Converter<'_> {
    /// The expanded value of `name`, if set; an expansion problem is reported.
    pub(super) fn value(&mut self, name: &str) -> Option<String> {
        let expanded = self.cf.expand(name)?;
        self.used.insert(name.to_owned());
        match expanded {
            Ok(expanded) => {
                self.used.extend(expanded.refs);
                Some(expanded.value)
            }
            Err(why) => {
                if let ExpandError::Unset { name: unset } = &why {
                    self.used.insert(unset.clone());
                }
                self.not_carried
                    .push(NotCarried::new(name, why.to_string()));
                None
            }
        }
    }

    /// A non-empty value.
    pub(super) fn word(&mut self, name: &str) -> Option<String> {
        self.value(name).filter(|value| !value.trim().is_empty())
    }

    pub(super) fn time(&mut self, name: &str, default_unit: char) -> Option<PostfixTime> {
        let text = self.word(name)?;
        parse_time(&text, default_unit)
            .map_err(|why| self.not_carried.push(NotCarried::new(name, why)))
            .ok()
    }

    pub(super) fn count(&mut self, name: &str) -> Option<u64> {
        let text = self.word(name)?;
        parse_count(&text)
            .map_err(|why| self.not_carried.push(NotCarried::new(name, why)))
            .ok()
    }

    pub(super) fn report(&mut self, name: &str, reason: impl Into<String>) {
        self.used.insert(name.to_owned());
        self.not_carried.push(NotCarried::new(name, reason));
    }

    /// A time parameter as a duration entry, with Postfix's value in the comment.
    pub(super) fn time_entry(
        &mut self,
        key: &'static str,
        name: &str,
        default_unit: char,
    ) -> Option<Entry> {
        let time = self.time(name, default_unit)?;
        Some(
            Entry::from_param(key, Value::Str(time.to_string()), name)
                .comment(format!("Postfix: {name} = {}", self.raw(name))),
        )
    }

    pub(super) fn count_entry(&mut self, key: &'static str, name: &str) -> Option<Entry> {
        let count = self.count(name)?;
        Some(Entry::from_param(key, Value::Int(count), name).comment(format!("Postfix: {name}")))
    }

    pub(super) fn raw(&self, name: &str) -> String {
        self.cf
            .param(name)
            .map(|param| param.value.clone())
            .unwrap_or_default()
    }

    fn spam(&mut self) -> Vec<Table> {
        let mut spam = SpamImport::default();
        for parameter in RESTRICTION_LISTS {
            if let Some(value) = self.word(parameter) {
                spam.add_restrictions(parameter, &value, &mut self.not_carried);
            }
        }
        if let Some(sites) = self.word("postscreen_dnsbl_sites") {
            let threshold = self.count("postscreen_dnsbl_threshold");
            let action = self.word("postscreen_dnsbl_action");
            spam.add_postscreen(&sites, threshold, action.as_deref(), &mut self.not_carried);
        }
        let names = spam.check_names();
        if names.is_empty() {
            return Vec::new();
        }
        let mut table = Table::new("spam");
        table.comments.push(
            "Spam checks, applied at RCPT TO by every relay domain (README \"Spam defence\"); \
             keep this section the same on every node."
                .to_owned(),
        );
        let from: BTreeSet<&str> = spam.checks.iter().map(|(_, from)| from.as_str()).collect();
        let mut entry = Entry::from_param(
            "default_checks",
            Value::StrList(names.clone()),
            &from.into_iter().collect::<Vec<_>>().join(", "),
        )
        .comment(format!(
            "From {}.",
            spam.checks
                .iter()
                .map(|(check, from)| format!("{check} ({from})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if names.iter().any(|name| name == "greylisting") {
            entry = entry.comment(
                "greylisting replaces postgrey, with postgrey's default delay (5m); see \
                 [spam.greylisting] in deploy/examples/node1.toml for its settings.",
            );
        }
        table.push(entry);
        let mut tables = vec![table];
        let (sites, threshold) = spam.dnsbl_sites_and_threshold();
        if !sites.is_empty() || !spam.rhsbl_sender_sites.is_empty() {
            let mut dnsbl = Table::new("spam.dnsbl");
            if !sites.is_empty() {
                dnsbl.push(
                    Entry::from_param("sites", Value::StrList(sites), "reject_rbl_client").comment(
                        "zone[=filter][*weight]; a reject_rbl_client site weighs the whole \
                             threshold, so that it refuses on its own as in Postfix.",
                    ),
                );
                let (source, comment) = match spam.threshold {
                    Some(_) => (
                        "postscreen_dnsbl_threshold",
                        "Postfix: postscreen_dnsbl_threshold",
                    ),
                    None => (
                        "reject_rbl_client",
                        "A client is refused once its listed sites weigh this much.",
                    ),
                };
                dnsbl.push(
                    Entry::from_param("threshold", Value::Int(threshold), source).comment(comment),
                );
            }
            if !spam.rhsbl_sender_sites.is_empty() {
                dnsbl.push(
                    Entry::from_param(
                        "rhsbl_sender_sites",
                        Value::StrList(spam.rhsbl_sender_sites.clone()),
                        "reject_rhsbl_sender",
                    )
                    .comment("Postfix: reject_rhsbl_sender"),
                );
            }
            tables.push(dnsbl);
        }
        tables
    }

    /// Reports every parameter `main.cf` sets that nothing used.
    fn leftovers(&mut self) {
        for name in self.cf.names() {
            if !self.used.contains(name) {
                self.not_carried
                    .push(NotCarried::new(name, super::leftovers::reason(name)));
            }
        }
    }
}

/// The restriction lists whose restrictions may become spam checks.
const RESTRICTION_LISTS: [&str; 6] = [
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_data_restrictions",
];

/// `[node]`, `[peer]` and `[cluster]` for a single node that bootstraps itself.
fn cluster_tables(myhostname: Option<&str>) -> Vec<Table> {
    let mut node = Table::new("node");
    node.comments.extend(
        [
            "TODO: Postfix has no word for the fleet: these make a one-node fleet that",
            "bootstraps itself. For a real fleet give every node its own id and site and",
            "list all of them in cluster.initial_members (see deploy/examples/node1.toml).",
        ]
        .map(str::to_owned),
    );
    node.push(
        Entry::new("id", Value::Int(1))
            .comment("TODO: this node's Raft id, unique in the fleet, never reused."),
    );
    if let Some(name) = myhostname {
        node.push(
            Entry::from_param("name", Value::Str(name.to_owned()), "myhostname")
                .comment("Shown in logs and `mxfleet cluster status`."),
        );
    }
    node.push(
        Entry::new("site", Value::Str("site1".to_owned()))
            .comment("TODO: the datacenter label, e.g. \"fra1\"."),
    );
    node.push(
        Entry::new("data_dir", Value::Str("/var/lib/mxfleet".to_owned()))
            .comment("Raft log, snapshots and message bodies; on a disk that honours fsync."),
    );

    let mut peer = Table::new("peer");
    peer.push(
        Entry::new("listen", Value::Str("127.0.0.1:7401".to_owned())).comment(
            "TODO: the port between fleet members; bind an address the other nodes reach.",
        ),
    );
    peer.push(Entry::new("plaintext", Value::Bool(true)).comment(
        "TODO: replace with tls_cert, tls_key and tls_ca (mutual TLS) before adding a second \
         node; plaintext is only safe on loopback.",
    ));

    let mut cluster = Table::new("cluster");
    let member = vec![
        ("id", Value::Int(1)),
        ("addr", Value::Str("127.0.0.1:7401".to_owned())),
        ("site", Value::Str("site1".to_owned())),
    ];
    cluster.push(
        Entry::new("initial_members", Value::Inline(vec![member])).comment(
            "TODO: every bootstrap voter, identical on every node; read only on first start.",
        ),
    );
    vec![node, peer, cluster]
}

fn header_comments(not_carried: &[NotCarried]) -> Vec<String> {
    let mut header: Vec<String> = [
        "mxfleet node config, imported from Postfix by `mxfleet import-postfix`.",
        "Check it on the host that will run it with `mxfleet config check FILE`, which also",
        "checks that the TLS and recipient files it names exist and are readable.",
        "Lines marked TODO need your values.",
        "",
    ]
    .map(str::to_owned)
    .into();
    if not_carried.is_empty() {
        header.push("Everything in main.cf was carried over.".to_owned());
    } else {
        header.push(format!("Not carried over ({}):", not_carried.len()));
        for item in not_carried {
            header.push(format!("  {}: {}", item.parameter, item.reason));
        }
    }
    header
}
