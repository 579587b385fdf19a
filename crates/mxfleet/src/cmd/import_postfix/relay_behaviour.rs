//! Postfix behaviours around relay domains and their recipients that mxfleet does not
//! have, reported as changes rather than mapped:
//! - `recipient_delimiter`: Postfix strips the address extension (`alice+tag@` is
//!   accepted when `alice@` is listed in `relay_recipient_maps`); mxfleet has no
//!   subaddressing.
//! - `parent_domain_matches_subdomains`: with `relay_domains` in it (explicitly, or as
//!   the default the importer assumes for an old or unset `compatibility_level`),
//!   Postfix also relayed the subdomains of the relay domains; mxfleet relays only the
//!   exact domains listed.
//!
//! Layout: `Converter`'s two methods, then [`below_level`]; tests at the end.

use super::convert::Converter;
use super::main_cf::split_list;

/// The `compatibility_level` below which Postfix's `parent_domain_matches_subdomains`
/// default includes `relay_domains`: Postfix 3.6 made the default empty from
/// compatibility level 3.6 on.
const PARENT_MATCH_LEVEL: (u64, u64) = (3, 6);

impl Converter<'_> {
    /// Reports `recipient_delimiter` when it is set to something.
    pub(super) fn recipient_delimiter(&mut self) {
        const PARAMETER: &str = "recipient_delimiter";
        let Some(delimiters) = self.word(PARAMETER) else {
            return;
        };
        let example = delimiters.chars().next().unwrap_or('+');
        self.report(
            PARAMETER,
            format!(
                "{delimiters:?}: Postfix strips the address extension when it checks \
                 relay_recipient_maps (alice{example}tag@ is accepted when alice@ is listed); \
                 mxfleet has no subaddressing: it accepts only the addresses listed, so list \
                 the extended addresses too or use catch_all = true"
            ),
        );
    }

    /// Reports that Postfix may have relayed the relay domains' subdomains too.
    pub(super) fn parent_domain_matching(&mut self) {
        const PARAMETER: &str = "parent_domain_matches_subdomains";
        const REASON: &str = "Postfix may also have relayed subdomains of these domains; \
                              mxfleet relays only the exact domains listed (add a \
                              [[relay_domains]] table for each subdomain to back up)";
        if self.cf.param(PARAMETER).is_some() {
            let Some(value) = self.value(PARAMETER) else {
                return;
            };
            if split_list(&value).contains(&"relay_domains") {
                self.report(PARAMETER, format!("includes relay_domains: {REASON}"));
            }
            return;
        }
        // Read without marking it used: it stays reported as housekeeping.
        let level = match self.cf.expand("compatibility_level") {
            None => None,
            Some(Ok(expanded)) => Some(expanded.value),
            Some(Err(_)) => Some(String::new()),
        };
        let why = match level.as_deref().map(|level| (level, below_level(level))) {
            None => "not set, and neither is compatibility_level, whose default includes \
                     relay_domains"
                .to_owned(),
            Some((level, None)) => format!(
                "not set, and compatibility_level {level:?} cannot be read, so its default \
                 may include relay_domains"
            ),
            Some((level, Some(true))) => format!(
                "not set, and with compatibility_level = {level} its default includes \
                 relay_domains"
            ),
            Some((_, Some(false))) => return,
        };
        self.report(PARAMETER, format!("{why}: {REASON}"));
    }
}

/// Whether `level` (`2`, `3.6`, `3.10.1`) is below [`PARENT_MATCH_LEVEL`]; `None` when
/// it is not a level.
fn below_level(level: &str) -> Option<bool> {
    let mut parts = level.trim().split('.');
    let major = parts.next()?.parse::<u64>().ok()?;
    let minor = match parts.next() {
        Some(minor) => minor.parse::<u64>().ok()?,
        None => 0,
    };
    if let Some(patch) = parts.next() {
        patch.parse::<u64>().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor) < PARENT_MATCH_LEVEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_levels() {
        let table = [
            ("0", Some(true)),
            ("1", Some(true)),
            ("2", Some(true)),
            ("2.9", Some(true)),
            ("3", Some(true)),
            ("3.0", Some(true)),
            ("3.5", Some(true)),
            ("3.6", Some(false)),
            ("3.10.1", Some(false)),
            (" 3.6 ", Some(false)),
            ("", None),
            ("3.x", None),
            ("3.6.1.1", None),
            ("é", None),
        ];
        for (level, want) in table {
            assert_eq!(below_level(level), want, "{level:?}");
        }
    }
}
