//! `mxfleet queue stats`: what the queue holds per recipient domain and state, the
//! totals and the oldest live message, intake and delivery rates, and the counters that
//! show duplicates caught and possible redeliveries.
//!
//! [`render`] is sans-IO: the reply in, the text out.

use mxfleet_proto::admin::v1::{QueueStats, StatsRequest};

use super::STATS;
use crate::cmd::admin::connection::Admin;
use crate::cmd::admin::error::CliError;
use crate::cmd::admin::format::{age, bytes, messages, state_name};
use crate::cmd::admin::json::StatsJson;
use crate::cmd::admin::table::{Table, key_values};
use crate::cmd::admin::{print_json, print_text};

pub async fn run(admin: &Admin, linearizable: bool, json: bool) -> Result<u8, CliError> {
    let request = admin.request(StatsRequest { linearizable });
    let stats = admin.call(STATS, admin.queue().stats(request)).await?;
    if json {
        print_json(&StatsJson::from(&stats))?;
    } else {
        print_text(&render(&stats))?;
    }
    Ok(0)
}

fn oldest(seconds: u64) -> String {
    if seconds == 0 {
        "-".to_owned()
    } else {
        age(seconds)
    }
}

pub fn render(stats: &QueueStats) -> String {
    let mut out = String::new();
    let mut table =
        Table::new(&["DOMAIN", "STATE", "MESSAGES", "SIZE", "OLDEST"]).right(&[2, 3, 4]);
    for d in &stats.domains {
        table.push(vec![
            d.domain.clone(),
            state_name(d.state).to_owned(),
            d.messages.to_string(),
            bytes(d.bytes),
            oldest(d.oldest_age_seconds),
        ]);
    }
    if !table.is_empty() {
        out.push_str(&table.render());
        out.push('\n');
    }
    out.push_str(&key_values(&[
        (
            "total",
            format!(
                "{}, {}",
                messages(stats.total_messages),
                bytes(stats.total_bytes)
            ),
        ),
        ("oldest", oldest(stats.oldest_age_seconds)),
        (
            "received",
            format!(
                "{} in the last minute, {} in the last 15 minutes",
                stats.received_last_minute, stats.received_last_15_minutes
            ),
        ),
        (
            "delivered",
            format!(
                "{} in the last minute, {} in the last 15 minutes",
                stats.delivered_last_minute, stats.delivered_last_15_minutes
            ),
        ),
        (
            "duplicates",
            format!("{} sender resubmissions caught", stats.duplicates),
        ),
        (
            "redeliveries",
            format!(
                "possible: {} after lapsed leases, {} after connections lost after the dot",
                stats.lapsed_reassignments, stats.lost_after_dot
            ),
        ),
        (
            "stale outcomes",
            format!("{} refused for a stale fencing token", stats.stale_outcomes),
        ),
    ]));
    out
}

#[cfg(test)]
mod tests {
    use mxfleet_proto::admin::v1::{DomainStats, MessageState};

    use super::*;

    #[test]
    fn stats_show_domains_totals_rates_and_redeliveries() {
        let stats = QueueStats {
            domains: vec![
                DomainStats {
                    domain: "example.org".into(),
                    state: MessageState::Deferred as i32,
                    messages: 12,
                    bytes: 48 * 1024,
                    oldest_age_seconds: 7_260,
                },
                DomainStats {
                    domain: "example.net".into(),
                    state: MessageState::Held as i32,
                    messages: 1,
                    bytes: 700,
                    oldest_age_seconds: 30,
                },
            ],
            total_messages: 13,
            total_bytes: 48 * 1024 + 700,
            oldest_age_seconds: 7_260,
            received_last_minute: 4,
            delivered_last_minute: 3,
            received_last_15_minutes: 60,
            delivered_last_15_minutes: 58,
            duplicates: 2,
            lapsed_reassignments: 1,
            lost_after_dot: 0,
            stale_outcomes: 0,
        };
        let expected = "\
DOMAIN       STATE     MESSAGES    SIZE  OLDEST
example.org  deferred        12  48 KiB   2h 1m
example.net  held             1   700 B     30s

total           13 messages, 49 KiB
oldest          2h 1m
received        4 in the last minute, 60 in the last 15 minutes
delivered       3 in the last minute, 58 in the last 15 minutes
duplicates      2 sender resubmissions caught
redeliveries    possible: 1 after lapsed leases, 0 after connections lost after the dot
stale outcomes  0 refused for a stale fencing token
";
        assert_eq!(render(&stats), expected, "\n{}", render(&stats));
    }
}
