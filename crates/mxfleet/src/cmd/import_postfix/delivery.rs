//! `[delivery]` from Postfix's queue and SMTP client parameters: `relayhost`, backoff
//! and queue times, DSN settings, client timeouts, the concurrency limit and outbound
//! TLS.
//!
//! Where `main.cf` leaves a parameter to Postfix's default and mxfleet's default
//! differs in a way the operator should know, the entry is written with a comment
//! (`delay_warning_time`, `maximal_queue_lifetime`).
//!
//! Layout: `Converter::delivery`, then the client timeout names.

use super::convert::Converter;
use super::document::{Entry, NotCarried, Table, Value};
use super::main_cf::split_list;

impl Converter<'_> {
    pub(super) fn delivery(&mut self, without_next_hop: &[String]) -> Table {
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
            None if self.cf.param("maximal_queue_lifetime").is_none() => {
                table.push(
                    Entry::new("maximal_queue_lifetime", Value::Str("28d".to_owned())).comment(
                        "mxfleet's default, kept on purpose: main.cf does not set \
                         maximal_queue_lifetime, so Postfix bounced mail after its default \
                         5d; a backup MX holds mail for 28d while a primary is down.",
                    ),
                );
                self.report(
                    "maximal_queue_lifetime",
                    "not set, so Postfix bounced undeliverable mail after its default 5d; \
                     mxfleet deliberately keeps mail 28d (its default, written out) while a \
                     primary is down: set a shorter maximal_queue_lifetime to bounce sooner",
                );
            }
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

/// The `'static` key for a `[delivery]` parameter of the same name.
fn name_key(name: &str) -> &'static str {
    const SAME_NAME: [&str; 3] = [
        "minimal_backoff_time",
        "maximal_backoff_time",
        "queue_run_delay",
    ];
    SAME_NAME
        .into_iter()
        .chain(SMTP_CLIENT_TIMEOUTS)
        .find(|known| *known == name)
        .unwrap_or("unknown")
}
