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
//! the relay domains in [`super::domains`]); the cluster tables and the header.

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

    fn delivery(&mut self, without_next_hop: &[String]) -> Table {
        let mut table = Table::new("delivery");
        table.comments.push(
            "Outbound delivery to the primaries, and DSNs to senders. Keep this section the \
             same on every node, except smtp_helo_name and smtp_bind_address."
                .to_owned(),
        );
        if let Some(helo) = self.word("smtp_helo_name") {
            table.push(
                Entry::from_param("smtp_helo_name", Value::Str(helo), "smtp_helo_name")
                    .comment("Postfix: smtp_helo_name"),
            );
        }
        if let Some(address) = self.word("smtp_bind_address") {
            table.push(
                Entry::from_param(
                    "smtp_bind_address",
                    Value::Str(address),
                    "smtp_bind_address",
                )
                .comment("Postfix: smtp_bind_address"),
            );
        }
        if let Some(relayhost) = self.word("relayhost") {
            let hops = split_list(&relayhost);
            if hops.iter().all(|hop| hop.starts_with('[')) {
                let mut entry =
                    Entry::from_param("relayhost", Value::Str(hops.join(", ")), "relayhost")
                        .comment(
                            "DSNs and other mail for destinations that are not relay domains \
                             (Postfix: relayhost).",
                        );
                if !without_next_hop.is_empty() {
                    entry = entry.comment(
                        "Postfix also sent the relay domains without a transport_maps entry \
                         here; mxfleet sends them to their next_hop (default: MX lookup).",
                    );
                    self.not_carried.push(NotCarried::new(
                        "relayhost",
                        format!(
                            "Postfix sent {} (no transport_maps entry) to relayhost; mxfleet \
                             uses relayhost only for destinations that are not relay domains, \
                             so they get next_hop = \"mx\" (write next_hop = \"{}\" to keep \
                             Postfix's route)",
                            without_next_hop.join(", "),
                            hops.join(", ")
                        ),
                    ));
                }
                table.push(entry);
            } else {
                self.report(
                    "relayhost",
                    format!(
                        "{relayhost:?} asks for the MX records of a relay host; mxfleet takes \
                         [host]:port (no MX lookup) only"
                    ),
                );
            }
        }
        for name in [
            "minimal_backoff_time",
            "maximal_backoff_time",
            "queue_run_delay",
        ] {
            table
                .entries
                .extend(self.time_entry(name_key(name), name, 's'));
        }
        match self.time("maximal_queue_lifetime", 'd') {
            Some(time) if time.amount == 0 => self.report(
                "maximal_queue_lifetime",
                "0 (bounce after the first failure) has no mxfleet equivalent; the default \
                 28d applies",
            ),
            Some(time) => table.push(
                Entry::from_param(
                    "maximal_queue_lifetime",
                    Value::Str(time.to_string()),
                    "maximal_queue_lifetime",
                )
                .comment(format!(
                    "Postfix: maximal_queue_lifetime = {} (a bare number is days)",
                    self.raw("maximal_queue_lifetime")
                )),
            ),
            None => {}
        }
        match self.time("delay_warning_time", 'h') {
            Some(time) => table.push(
                Entry::from_param(
                    "delay_warning_time",
                    Value::Str(if time.amount == 0 {
                        "0".to_owned()
                    } else {
                        time.to_string()
                    }),
                    "delay_warning_time",
                )
                .comment(format!(
                    "Postfix: delay_warning_time = {}",
                    self.raw("delay_warning_time")
                )),
            ),
            None if self.cf.param("delay_warning_time").is_none() => table.push(
                Entry::new("delay_warning_time", Value::Str("0".to_owned())).comment(
                    "Postfix's default (main.cf does not set delay_warning_time): no delay \
                     warnings. mxfleet's own default is 4h.",
                ),
            ),
            None => {}
        }
        if self.word("bounce_queue_lifetime").is_some() {
            self.report(
                "bounce_queue_lifetime",
                "no separate lifetime: a DSN goes to the sender's domain, so [delivery] \
                 maximal_queue_lifetime applies",
            );
        }
        if let Some(bytes) = self.count("bounce_size_limit") {
            table.push(
                Entry::from_param(
                    "bounce_size_limit",
                    Value::Str(format!("{bytes}B")),
                    "bounce_size_limit",
                )
                .comment("Postfix: bounce_size_limit (bytes)"),
            );
        }
        for name in SMTP_CLIENT_TIMEOUTS {
            table
                .entries
                .extend(self.time_entry(name_key(name), name, 's'));
        }
        if let Some(entry) = self.count_entry(
            "default_destination_concurrency_limit",
            "default_destination_concurrency_limit",
        ) {
            table.push(
                entry.comment("Fleet-wide in mxfleet (all nodes together), per node in Postfix."),
            );
        }
        if let Some(level) = self.word("smtp_tls_security_level") {
            if ["none", "may", "encrypt", "verify", "secure"].contains(&level.as_str()) {
                table.push(
                    Entry::from_param(
                        "smtp_tls_security_level",
                        Value::Str(level),
                        "smtp_tls_security_level",
                    )
                    .comment("Postfix: smtp_tls_security_level"),
                );
            } else {
                self.report(
                    "smtp_tls_security_level",
                    format!(
                        "{level:?} is not implemented by mxfleet (none, may, encrypt, verify, \
                         secure); the default \"may\" applies"
                    ),
                );
            }
        }
        if let Some(ca) = self.word("smtp_tls_CAfile") {
            table.push(
                Entry::from_param("smtp_tls_CAfile", Value::Str(ca), "smtp_tls_CAfile")
                    .comment("Read at startup: the mxfleet user must be able to read it."),
            );
        }
        table
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

/// The `smtp_*_timeout` parameters mxfleet takes under the same names.
const SMTP_CLIENT_TIMEOUTS: [&str; 7] = [
    "smtp_connect_timeout",
    "smtp_helo_timeout",
    "smtp_mail_timeout",
    "smtp_rcpt_timeout",
    "smtp_data_init_timeout",
    "smtp_data_xfer_timeout",
    "smtp_data_done_timeout",
];

/// The restriction lists whose restrictions may become spam checks.
const RESTRICTION_LISTS: [&str; 6] = [
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_data_restrictions",
];

/// The `'static` key for a `[delivery]` parameter of the same name.
fn name_key(name: &str) -> &'static str {
    const SAME_NAME: [&str; 10] = [
        "minimal_backoff_time",
        "maximal_backoff_time",
        "queue_run_delay",
        "smtp_connect_timeout",
        "smtp_helo_timeout",
        "smtp_mail_timeout",
        "smtp_rcpt_timeout",
        "smtp_data_init_timeout",
        "smtp_data_xfer_timeout",
        "smtp_data_done_timeout",
    ];
    SAME_NAME
        .into_iter()
        .find(|known| *known == name)
        .unwrap_or("unknown")
}

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
