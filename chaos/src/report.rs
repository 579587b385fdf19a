//! The result of a chaos run: one [`Row`] per scenario, printed as an aligned table and
//! written as JSON with the same fields.

use std::time::Duration;

use serde::Serialize;

use crate::checker::Verdict;
use crate::scenario::Invariant;

/// How a scenario ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every promise held.
    Pass,
    /// A promise broke: lost, unexpected, a missed dedup, or an invariant.
    Fail,
    /// The harness could not run it (the fleet did not start, a tool failed).
    Error,
    /// Not possible on this machine (said why).
    Skipped,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub scenario: String,
    pub seed: u64,
    pub status: Status,
    /// The checker's counts, flattened into the row's JSON.
    #[serde(flatten)]
    pub verdict: Verdict,
    pub max_unavailable_ms: u64,
    pub drain_ms: u64,
    pub invariants: Vec<Invariant>,
    pub notes: Vec<String>,
    pub error: Option<String>,
    pub seconds: f64,
    pub data_dir: String,
}

impl Row {
    fn empty(scenario: &str, seed: u64, status: Status) -> Row {
        Row {
            scenario: scenario.to_string(),
            seed,
            status,
            verdict: Verdict::default(),
            max_unavailable_ms: 0,
            drain_ms: 0,
            invariants: Vec::new(),
            notes: Vec::new(),
            error: None,
            seconds: 0.0,
            data_dir: String::new(),
        }
    }

    pub fn errored(scenario: &str, seed: u64, error: String) -> Row {
        let mut row = Row::empty(scenario, seed, Status::Error);
        row.error = Some(error);
        row
    }

    pub fn skipped(scenario: &str, seed: u64, why: String) -> Row {
        let mut row = Row::empty(scenario, seed, Status::Skipped);
        row.notes.push(why);
        row
    }

    pub fn from_run(
        scenario: &str,
        seed: u64,
        verdict: &Verdict,
        invariants: Vec<Invariant>,
        notes: Vec<String>,
        max_unavailable: Duration,
        drain: Duration,
    ) -> Row {
        let holds = verdict.holds() && invariants.iter().all(|i| i.holds);
        let mut row = Row::empty(
            scenario,
            seed,
            if holds { Status::Pass } else { Status::Fail },
        );
        row.verdict = verdict.clone();
        row.max_unavailable_ms = max_unavailable.as_millis() as u64;
        row.drain_ms = drain.as_millis() as u64;
        row.invariants = invariants;
        row.notes = notes;
        row
    }

    pub fn passed(&self) -> bool {
        matches!(self.status, Status::Pass | Status::Skipped)
    }
}

/// The table: one line per scenario, then the details of anything that failed.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "seed",
        "status",
        "acked",
        "delivered",
        "lost",
        "unexpected",
        "dup(missed)",
        "dup(internal)",
        "unknown",
        "max unavail",
        "drain",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        lines.push(vec![
            row.scenario.clone(),
            row.seed.to_string(),
            format!("{:?}", row.status).to_lowercase(),
            row.verdict.acked.to_string(),
            row.verdict.delivered.to_string(),
            row.verdict.lost.len().to_string(),
            row.verdict.unexpected.len().to_string(),
            row.verdict.duplicated_resubmission_missed.to_string(),
            row.verdict.duplicated_internal.to_string(),
            format!(
                "{} ({} arrived)",
                row.verdict.unknown, row.verdict.unknown_delivered
            ),
            seconds(row.max_unavailable_ms),
            seconds(row.drain_ms),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, width))| {
                if c < 3 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for row in rows {
        let broken: Vec<&Invariant> = row.invariants.iter().filter(|i| !i.holds).collect();
        if row.passed() && broken.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{} (seed {}):\n", row.scenario, row.seed));
        if let Some(error) = &row.error {
            out.push_str(&format!("  error: {error}\n"));
        }
        if !row.verdict.lost.is_empty() {
            out.push_str(&format!("  lost: {:?}\n", row.verdict.lost));
        }
        for line in &row.verdict.unexpected {
            out.push_str(&format!("  unexpected: {line}\n"));
        }
        for invariant in broken {
            out.push_str(&format!(
                "  broken: {}: {}\n",
                invariant.name, invariant.detail
            ));
        }
        for note in &row.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        out.push_str(&format!("  data: {}\n", row.data_dir));
    }
    out
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_row_is_explained_under_the_table() {
        let mut failing = Row::empty("site-dark", 7, Status::Fail);
        failing.verdict.lost = vec![3, 9];
        failing.data_dir = "/tmp/x".into();
        let passing = Row::empty("disk-full", 7, Status::Pass);
        let text = table(&[failing, passing]);
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("scenario"), "{text}");
        assert!(
            text.contains("site-dark (seed 7):\n  lost: [3, 9]"),
            "{text}"
        );
        assert!(!text.contains("disk-full (seed"), "{text}");
        assert!(text.lines().all(|l| !l.ends_with(' ')));
    }
}
