//! How the admin commands write values for people: sizes (`12 KiB`), ages (`3h 5m`),
//! times (UTC RFC 3339), message states (`in-flight`), and text from the server made safe
//! for a terminal.
//!
//! Pure functions of their inputs: the current time is passed in (`now_ms`), never read
//! here, so the tables and the tests agree on every age.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mxfleet_proto::admin::v1::MessageState;

/// Milliseconds since the Unix epoch, as the admin API counts time.
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `512 B`, `1.5 KiB`, `12 KiB`, `3.2 MiB`: one decimal below ten units, none above.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A span in its two largest units: `45s`, `5m 3s`, `1h 5m`, `2d 3h`.
pub fn age(seconds: u64) -> String {
    const STEPS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    if seconds == 0 {
        return "0s".to_owned();
    }
    let mut parts = Vec::with_capacity(2);
    let mut rest = seconds;
    for (size, suffix) in STEPS {
        if rest >= size {
            parts.push(format!("{}{suffix}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            // The second unit is the next one down, even when it is zero: `1h` not `1h 5s`.
            break;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

/// Milliseconds as a short span: `120ms` below a second, else [`age`].
pub fn millis_span(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        age(ms / 1000)
    }
}

/// A Unix-milliseconds time as UTC RFC 3339 to the second; `-` for 0 (unset).
pub fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A Unix-milliseconds time as UTC RFC 3339 to the millisecond; `-` for 0 (unset).
pub fn time_millis(ms: u64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// How far `at_ms` is from `now_ms`: `3m ago`, `in 5m`, `now`; `-` for 0 (unset).
pub fn relative(at_ms: u64, now_ms: u64) -> String {
    if at_ms == 0 {
        return "-".to_owned();
    }
    if at_ms + 1000 <= now_ms {
        format!("{} ago", age((now_ms - at_ms) / 1000))
    } else if at_ms >= now_ms + 1000 {
        format!("in {}", age((at_ms - now_ms) / 1000))
    } else {
        "now".to_owned()
    }
}

/// The word the CLI uses for a message state (also in `--json` and `--state`).
pub fn state_name(state: i32) -> &'static str {
    match MessageState::try_from(state) {
        Ok(MessageState::Queued) => "queued",
        Ok(MessageState::Deferred) => "deferred",
        Ok(MessageState::Held) => "held",
        Ok(MessageState::InFlight) => "in-flight",
        Ok(MessageState::Delivered) => "delivered",
        Ok(MessageState::Bounced) => "bounced",
        Ok(MessageState::Deleted) => "deleted",
        Ok(MessageState::Unspecified) | Err(_) => "unknown",
    }
}

/// When the next attempt is due, for the states that wait for one (queued, deferred);
/// `-` for the others, whose stored time no longer means anything.
pub fn next_attempt(state: i32, at_ms: u64, now_ms: u64) -> String {
    match MessageState::try_from(state) {
        Ok(MessageState::Queued | MessageState::Deferred) => relative(at_ms, now_ms),
        _ => "-".to_owned(),
    }
}

/// An envelope sender for display: the null sender is `<>`.
pub fn sender(address: &str) -> String {
    if address.is_empty() {
        "<>".to_owned()
    } else {
        terminal_safe(address)
    }
}

/// `1 message`, `3 messages`.
pub fn messages(n: u64) -> String {
    if n == 1 {
        "1 message".to_owned()
    } else {
        format!("{n} messages")
    }
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// Text from the server (addresses, SMTP replies, headers) with control characters
/// escaped, so a hostile sender cannot move the cursor or recolour an operator's terminal.
pub fn terminal_safe(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `text` cut to at most `max` characters, with `…` marking a cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units_with_one_decimal_below_ten() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 * 1024 + 100), "12 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn ages_keep_the_two_largest_units() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(45), "45s");
        assert_eq!(age(303), "5m 3s");
        assert_eq!(age(3600), "1h");
        assert_eq!(age(3605), "1h");
        assert_eq!(age(3900), "1h 5m");
        assert_eq!(age(2 * 86_400 + 3 * 3600 + 59), "2d 3h");
        assert_eq!(millis_span(120), "120ms");
        assert_eq!(millis_span(4_200), "4s");
    }

    #[test]
    fn times_are_utc_rfc3339_and_zero_is_unset() {
        assert_eq!(time(0), "-");
        assert_eq!(time(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(time_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        let now = 1_700_000_000_000;
        assert_eq!(relative(now - 180_000, now), "3m ago");
        assert_eq!(relative(now + 300_000, now), "in 5m");
        assert_eq!(relative(now + 10, now), "now");
        assert_eq!(relative(0, now), "-");
        let deferred = MessageState::Deferred as i32;
        assert_eq!(next_attempt(deferred, now + 300_000, now), "in 5m");
        assert_eq!(
            next_attempt(MessageState::Delivered as i32, now - 1000, now),
            "-"
        );
    }

    #[test]
    fn states_have_the_words_the_state_flag_takes() {
        assert_eq!(state_name(MessageState::InFlight as i32), "in-flight");
        assert_eq!(state_name(MessageState::Deferred as i32), "deferred");
        assert_eq!(state_name(42), "unknown");
    }

    #[test]
    fn control_characters_from_the_network_are_escaped() {
        assert_eq!(terminal_safe("a@example.org"), "a@example.org");
        assert_eq!(terminal_safe("evil\u{1b}[2J\r\n"), "evil\\u{1b}[2J\\r\\n");
        assert_eq!(sender(""), "<>");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
