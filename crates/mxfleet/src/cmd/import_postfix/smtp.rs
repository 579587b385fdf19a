//! `[smtp]` from Postfix's smtpd parameters: the listener (`inet_interfaces`), the
//! banner name (`myhostname`), limits and timeouts, and the STARTTLS certificate
//! (`smtpd_tls_chain_files`, or `smtpd_tls_cert_file` and `smtpd_tls_key_file`).
//!
//! Postfix offers one certificate chain per key algorithm (RSA and ECDSA side by side);
//! mxfleet serves one certificate per name (SNI picks it), so only the first chain is
//! carried, for `myhostname`.
//!
//! Layout: `Converter::smtp`, its certificate helpers, then [`listen_address`].

use super::convert::Converter;
use super::document::{Entry, Table, Value};
use super::main_cf::split_list;

/// Postfix's `message_size_limit` when `main.cf` does not set it.
const POSTFIX_MESSAGE_SIZE_LIMIT: u64 = 10_240_000;

impl Converter<'_> {
    pub(super) fn smtp(&mut self, myhostname: Option<&str>) -> Table {
        let mut table = Table::new("smtp");
        table.comments.push(
            "Inbound SMTP, where the relay domains' MX records point. The port is master.cf's \
             \"smtp inet\" service, not read here: 25 unless listen says otherwise."
                .to_owned(),
        );
        if let Some(interfaces) = self.word("inet_interfaces") {
            match listen_address(&interfaces) {
                Ok(Some(listen)) => table.push(
                    Entry::from_param("listen", Value::Str(listen), "inet_interfaces")
                        .comment(format!("Postfix: inet_interfaces = {interfaces}")),
                ),
                Ok(None) => {}
                Err(why) => self.report("inet_interfaces", why),
            }
        }
        if let Some(name) = myhostname {
            table.push(
                Entry::from_param("hostname", Value::Str(name.to_owned()), "myhostname")
                    .comment("Banner and EHLO name (Postfix: myhostname)."),
            );
        }
        match self.count("message_size_limit") {
            Some(0) => self.report(
                "message_size_limit",
                "0 (no limit) has no mxfleet equivalent: the limit is 1KB to 2GB; the default \
                 64MB applies",
            ),
            Some(bytes) => table.push(
                Entry::from_param(
                    "message_size_limit",
                    Value::Str(format!("{bytes}B")),
                    "message_size_limit",
                )
                .comment("Announced as SIZE; the same limit as queue.max_message_size.")
                .comment(format!("Postfix: message_size_limit = {bytes} (bytes)")),
            ),
            // A backup MX must not accept what the primary refuses: Postfix's default,
            // not mxfleet's larger one.
            None if self.cf.param("message_size_limit").is_none() => table.push(
                Entry::new(
                    "message_size_limit",
                    Value::Str(format!("{POSTFIX_MESSAGE_SIZE_LIMIT}B")),
                )
                .comment("Announced as SIZE; the same limit as queue.max_message_size.")
                .comment(format!(
                    "Postfix default (main.cf does not set message_size_limit): \
                     {POSTFIX_MESSAGE_SIZE_LIMIT} bytes, so that this MX accepts no more than \
                     a Postfix primary does. mxfleet's own default is 64MB."
                )),
            ),
            None => {}
        }
        table
            .entries
            .extend(self.count_entry("recipient_limit", "smtpd_recipient_limit"));
        if let Some(entry) = self.time_entry("timeout", "smtpd_timeout", 's') {
            table.push(entry.comment(
                "Per command; each read of message data has its own data_timeout (180s).",
            ));
        }
        table
            .entries
            .extend(self.count_entry("hard_error_limit", "smtpd_hard_error_limit"));
        if let Some(entry) = self.count_entry("max_connections", "default_process_limit") {
            table.push(entry.comment(
                "Concurrent SMTP sessions of this node (Postfix's process limit; master.cf \
                 may set smtpd's own, not read here).",
            ));
        }
        match self.count("smtpd_client_connection_count_limit") {
            Some(0) => self.report(
                "smtpd_client_connection_count_limit",
                "0 (no limit) has no mxfleet equivalent; the default 50 applies",
            ),
            Some(limit) => table.push(
                Entry::from_param(
                    "client_connection_count_limit",
                    Value::Int(limit),
                    "smtpd_client_connection_count_limit",
                )
                .comment("Postfix: smtpd_client_connection_count_limit"),
            ),
            None => {}
        }
        table.entries.extend(self.tls_certificates(myhostname));
        table
    }

    /// `smtpd_tls_chain_files`, or `smtpd_tls_cert_file` and `smtpd_tls_key_file`, as
    /// one `tls_certificates` entry for `myhostname`.
    fn tls_certificates(&mut self, myhostname: Option<&str>) -> Option<Entry> {
        let level = self.word("smtpd_tls_security_level");
        let use_tls = self.word("smtpd_use_tls");
        let chain = self.word("smtpd_tls_chain_files");
        let cert_file = self.word("smtpd_tls_cert_file");
        let key_file = self.word("smtpd_tls_key_file");
        let (parameter, cert, key) = match (chain, cert_file) {
            (Some(chain), cert_file) => {
                if cert_file.is_some() {
                    self.report(
                        "smtpd_tls_cert_file",
                        "Postfix uses smtpd_tls_chain_files when both are set; so does the import",
                    );
                }
                let (cert, key) = self.chain_files(&chain)?;
                ("smtpd_tls_chain_files", cert, key)
            }
            (None, Some(cert)) => {
                // Postfix's default key file is the certificate file (both in one PEM).
                let key = key_file.unwrap_or_else(|| cert.clone());
                ("smtpd_tls_cert_file", cert, key)
            }
            (None, None) => return None,
        };
        let mut comment = "STARTTLS, offered because a certificate is listed; the mxfleet user \
                           must be able to read both files."
            .to_owned();
        match level.as_deref() {
            Some("none") => {
                self.report(
                    "smtpd_tls_security_level",
                    "none: Postfix did not offer STARTTLS; mxfleet offers it whenever \
                     smtp.tls_certificates is set, so the certificate is not carried over",
                );
                return None;
            }
            Some("encrypt") => self.report(
                "smtpd_tls_security_level",
                "encrypt: mxfleet never requires STARTTLS from clients (RFC 3207: a public \
                 MX must not); it offers STARTTLS",
            ),
            Some("may") => {}
            Some(other) => self.report(
                "smtpd_tls_security_level",
                format!("{other:?} is not a level smtpd knows; mxfleet offers STARTTLS"),
            ),
            None if use_tls.as_deref() == Some("yes") => {}
            None => {
                comment.push_str(
                    " (Postfix did not offer STARTTLS: smtpd_tls_security_level was not set.)",
                );
            }
        }
        let Some(name) = myhostname else {
            self.report(
                parameter,
                "mxfleet serves a certificate for the names listed with it, and main.cf sets \
                 no myhostname to list; add smtp.tls_certificates with its names",
            );
            return None;
        };
        let certificate = vec![
            ("cert", Value::Str(cert)),
            ("key", Value::Str(key)),
            ("names", Value::StrList(vec![name.to_owned()])),
        ];
        Some(
            Entry::from_param(
                "tls_certificates",
                Value::Inline(vec![certificate]),
                parameter,
            )
            .comment(comment)
            .comment("Add other names (SNI) the certificate is for to names."),
        )
    }

    /// The first key and certificate of `smtpd_tls_chain_files`: a combined PEM file,
    /// or a key file followed by its certificate chain.
    fn chain_files(&mut self, chain: &str) -> Option<(String, String)> {
        let files = split_list(chain);
        let looks_like_key = |path: &str| {
            let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
            name.ends_with(".key") || name.contains("privkey") || name.contains("key.pem")
        };
        let (cert, key, used) = match files.as_slice() {
            [key, cert, ..] if looks_like_key(key) && !looks_like_key(cert) => {
                ((*cert).to_owned(), (*key).to_owned(), 2)
            }
            [combined, ..] => ((*combined).to_owned(), (*combined).to_owned(), 1),
            [] => return None,
        };
        if files.len() > used {
            self.report(
                "smtpd_tls_chain_files",
                format!(
                    "only the first key and certificate ({}) are carried over: mxfleet serves \
                     one certificate per name, so the other algorithms' chains ({}) are left out",
                    files[..used].join(", "),
                    files[used..].join(", ")
                ),
            );
        }
        Some((cert, key))
    }
}

/// `inet_interfaces` as `smtp.listen`: `None` for `all` (the default, every address).
fn listen_address(interfaces: &str) -> Result<Option<String>, String> {
    match split_list(interfaces).as_slice() {
        ["all"] => Ok(None),
        ["loopback-only"] | ["localhost"] => Ok(Some("127.0.0.1:25".to_owned())),
        [one] => match one.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => Ok(Some(format!("{ip}:25"))),
            Ok(std::net::IpAddr::V6(ip)) => Ok(Some(format!("[{ip}]:25"))),
            Err(_) => Err(format!(
                "{one:?} is not an IP address; smtp.listen binds one IP:port"
            )),
        },
        _ => Err(format!(
            "{interfaces:?}: mxfleet binds one address (smtp.listen); choose one, or \
             0.0.0.0:25 (the default) for all"
        )),
    }
}
