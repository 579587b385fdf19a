//! Field-level checks shared by the stage-2 sections: units, counts, labels, files,
//! source addresses and networks.
//!
//! Each function checks one value, reports what is wrong under the key it is given, and
//! returns `None` in that case, so callers can keep checking the other fields.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use mxfleet_core::NodeId;
use mxfleet_smtp::policy::IpNetwork;

use super::FileChecks;
use super::error::ErrorReport;
use super::raw::{DurationText, SizeText};

/// Bounds of a message size limit, inclusive: 1KB and 2GB (decimal units).
const MIN_MESSAGE_SIZE: u64 = 1000;
pub(super) const MAX_MESSAGE_SIZE: u64 = 2 * 1000 * 1000 * 1000;

/// A file the node reads at startup (a TLS certificate or key, a recipient list), which
/// must exist and be readable when `checks` allows looking.
pub(super) fn existing_file(
    report: &mut ErrorReport,
    key: &str,
    path: &Path,
    checks: FileChecks,
) -> Option<PathBuf> {
    if path.as_os_str().is_empty() {
        report.push(key, "must not be empty");
        return None;
    }
    if checks == FileChecks::Filesystem
        && let Err(why) = readable_file(path)
    {
        report.push(key, format!("{}: {why}", path.display()));
        return None;
    }
    Some(path.to_path_buf())
}

fn readable_file(path: &Path) -> Result<(), String> {
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".to_owned(),
        _ => format!("cannot access: {e}"),
    })?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("cannot open for reading: {e}"))
}

/// A duration setting, remembering whether the operator wrote it, so that a rule broken
/// by a default says so.
pub(super) struct DurationSetting {
    pub(super) value: Duration,
    is_default: bool,
}

impl DurationSetting {
    pub(super) fn describe(&self) -> String {
        let shown = humantime::format_duration(self.value);
        if self.is_default {
            format!("{shown} (the default)")
        } else {
            shown.to_string()
        }
    }
}

/// Parses a human duration (`"250ms"`, `"7d"`), which must be greater than zero.
pub(super) fn duration(
    report: &mut ErrorReport,
    key: &str,
    text: Option<DurationText>,
    default: Duration,
) -> Option<DurationSetting> {
    let Some(DurationText(text)) = text else {
        return Some(DurationSetting {
            value: default,
            is_default: true,
        });
    };
    match parse_duration(report, key, &text)? {
        value if value.is_zero() => {
            report.push(key, format!("must be greater than 0, got {text:?}"));
            None
        }
        value => Some(DurationSetting {
            value,
            is_default: false,
        }),
    }
}

/// A human duration where zero is meaningful, usually "off" (`spam.hygiene.greet_wait`).
pub(super) fn duration_or_zero(
    report: &mut ErrorReport,
    key: &str,
    text: Option<DurationText>,
    default: Duration,
) -> Option<Duration> {
    match text {
        Some(DurationText(text)) => parse_duration(report, key, &text),
        None => Some(default),
    }
}

fn parse_duration(report: &mut ErrorReport, key: &str, text: &str) -> Option<Duration> {
    humantime::parse_duration(text)
        .map_err(|why| {
            report.push(
                key,
                format!(r#"{text:?} is not a duration ({why}); write e.g. "250ms", "5s" or "7d""#),
            );
        })
        .ok()
}

/// Reports `key` unless `value >= factor × base`.
pub(super) fn at_least_multiple(
    report: &mut ErrorReport,
    (key, value): (&str, &DurationSetting),
    factor: u32,
    (base_name, base): (&str, &DurationSetting),
    reason: &str,
) {
    let minimum = base.value.saturating_mul(factor);
    if value.value < minimum {
        report.push(
            key,
            format!(
                "must be at least {factor} × {base_name} = {} ({reason}), got {}; \
                 raise it, or lower {base_name}, now {}",
                humantime::format_duration(minimum),
                value.describe(),
                base.describe(),
            ),
        );
    }
}

/// CIDR networks (`"192.0.2.0/24"`, `"2001:db8::/32"`, or a bare address), each
/// reported at `key[index]`; `None` if any is wrong.
pub(super) fn networks(
    report: &mut ErrorReport,
    key: &str,
    raw: Vec<String>,
) -> Option<Vec<IpNetwork>> {
    let mut networks = Vec::with_capacity(raw.len());
    for (index, text) in raw.iter().enumerate() {
        match text.parse() {
            Ok(network) => networks.push(network),
            Err(problem) => report.push(
                format!("{key}[{index}]"),
                format!("{problem}; write a network such as \"192.0.2.0/24\""),
            ),
        }
    }
    (networks.len() == raw.len()).then_some(networks)
}

/// A size setting as written: not written (a default applies), valid, or wrong (and
/// already reported). Two keys may hold the same limit, so whether the setting was
/// written matters after parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WrittenSize {
    Absent,
    Bytes(u64),
    Invalid,
}

/// Parses `"64MB"` (decimal) or `"64MiB"` (binary) into bytes, within the allowed bounds.
pub(super) fn message_size(
    report: &mut ErrorReport,
    key: &str,
    text: Option<SizeText>,
) -> WrittenSize {
    let Some(SizeText(text)) = text else {
        return WrittenSize::Absent;
    };
    let Some(bytes) = parse_size(report, key, &text) else {
        return WrittenSize::Invalid;
    };
    if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&bytes) {
        report.push(
            key,
            format!(
                "must be between 1KB ({MIN_MESSAGE_SIZE} bytes) and 2GB ({MAX_MESSAGE_SIZE} \
                 bytes), got {text:?} = {bytes} bytes"
            ),
        );
        return WrittenSize::Invalid;
    }
    WrittenSize::Bytes(bytes)
}

/// A size other than the message size limit, e.g. `delivery.bounce_size_limit`:
/// `default` when not written, otherwise at most `max` bytes (zero is allowed).
pub(super) fn size(
    report: &mut ErrorReport,
    key: &str,
    text: Option<SizeText>,
    default: u64,
    max: u64,
) -> Option<u64> {
    let Some(SizeText(text)) = text else {
        return Some(default);
    };
    let bytes = parse_size(report, key, &text)?;
    if bytes > max {
        report.push(
            key,
            format!("must be at most {max} bytes, got {text:?} = {bytes} bytes"),
        );
        return None;
    }
    Some(bytes)
}

fn parse_size(report: &mut ErrorReport, key: &str, text: &str) -> Option<u64> {
    match text.trim().parse::<ByteSize>() {
        Ok(size) => Some(size.as_u64()),
        Err(why) => {
            report.push(
                key,
                format!(r#"{text:?} is not a size ({why}); write e.g. "64MB" or "64MiB""#),
            );
            None
        }
    }
}

/// A count such as a connection or recipient limit: `default` when not written,
/// otherwise at least `min` and, if there is one, at most `max`.
pub(super) fn count<T>(
    report: &mut ErrorReport,
    key: &str,
    value: Option<T>,
    default: T,
    (min, max): (T, Option<T>),
) -> Option<T>
where
    T: Copy + PartialOrd + std::fmt::Display,
{
    let Some(value) = value else {
        return Some(default);
    };
    let problem = match max {
        Some(max) if value < min || value > max => format!("must be from {min} to {max}"),
        None if value < min => format!("must be at least {min}"),
        _ => return Some(value),
    };
    report.push(key, format!("{problem}, got {value}"));
    None
}

pub(super) fn required<T>(
    report: &mut ErrorReport,
    key: &str,
    value: Option<T>,
    hint: &str,
) -> Option<T> {
    if value.is_none() {
        report.push(key, format!("is required: {hint}"));
    }
    value
}

pub(super) fn non_zero_id(report: &mut ErrorReport, key: &str, id: NodeId) -> Option<NodeId> {
    if id == 0 {
        report.push(key, "must not be 0: node ids start at 1");
        return None;
    }
    Some(id)
}

/// A datacenter label: `[a-z0-9-_.]+`.
pub(super) fn site_label(report: &mut ErrorReport, key: &str, site: String) -> Option<String> {
    if site.is_empty() {
        report.push(
            key,
            r#"must not be empty: a datacenter label such as "fra1""#,
        );
        return None;
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b);
    if !site.bytes().all(allowed) {
        report.push(
            key,
            format!(r#"{site:?} may only contain a-z, 0-9, '-', '_' and '.', e.g. "fra1""#),
        );
        return None;
    }
    Some(site)
}

pub(super) fn node_name(report: &mut ErrorReport, name: String) -> Option<String> {
    if name.is_empty() {
        report.push(
            "node.name",
            "must not be empty; remove the key to default to the machine hostname",
        );
        return None;
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        report.push(
            "node.name",
            format!("{name:?} must not contain spaces or control characters"),
        );
        return None;
    }
    Some(name)
}

pub(super) fn default_node_name(id: NodeId, checks: FileChecks) -> String {
    let hostname = match checks {
        FileChecks::Filesystem => machine_hostname(),
        FileChecks::Skip => None,
    };
    hostname.unwrap_or_else(|| format!("mxfleet-node-{id}"))
}

/// The kernel's hostname on Linux, else `/etc/hostname`; `None` if neither is readable.
fn machine_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
        .find(|name| !name.is_empty() && !name.chars().any(char::is_whitespace))
}

pub(super) fn data_dir(
    report: &mut ErrorReport,
    dir: PathBuf,
    checks: FileChecks,
) -> Option<PathBuf> {
    if dir.as_os_str().is_empty() {
        report.push("node.data_dir", "must not be empty");
        return None;
    }
    // A missing directory is fine: it is created on first start.
    if checks == FileChecks::Filesystem
        && let Ok(metadata) = std::fs::metadata(&dir)
        && !metadata.is_dir()
    {
        report.push(
            "node.data_dir",
            format!("{} exists but is not a directory", dir.display()),
        );
        return None;
    }
    Some(dir)
}

/// A source address for outgoing connections (`delivery.smtp_bind_address`,
/// `peer.bind_address`): one IP address, no port. An absent key is `Some(None)`: the
/// kernel chooses, by the route to each destination.
pub(super) fn bind_address(
    report: &mut ErrorReport,
    key: &str,
    text: Option<String>,
) -> Option<Option<IpAddr>> {
    let Some(text) = text else {
        return Some(None);
    };
    match text.parse::<IpAddr>() {
        Ok(address) => Some(Some(address)),
        Err(_) => {
            report.push(
                key,
                format!(
                    r#"{text:?} is not an IP address to connect from, e.g. "192.0.2.25" or "2001:db8::25" (no port)"#
                ),
            );
            None
        }
    }
}
