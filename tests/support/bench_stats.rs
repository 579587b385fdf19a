//! Small measurement helpers shared by the benchmarks (`enqueue`, `spam`): CPU shares
//! from procfs, the filesystem type of a path, medians and nearest-rank percentiles.
//!
//! Layout: [`CpuSample`] (read before and after a batch) and [`CpuDelta`], [`filesystem_of`],
//! [`median`], [`percentile`].

#![allow(dead_code)] // each bench uses part of it

use std::path::Path;

/// CPU time (in USER_HZ ticks) of the whole machine and of this process, from procfs:
/// the share used by other processes shows when a run was disturbed.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    machine_busy: u64,
    machine_total: u64,
    this_process: u64,
}

impl CpuSample {
    pub fn read() -> Self {
        let machine: Vec<u64> = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let line = stat.lines().next()?.to_owned();
                Some(
                    line.split_whitespace()
                        .skip(1)
                        .filter_map(|v| v.parse().ok())
                        .collect(),
                )
            })
            .unwrap_or_default();
        // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
        let total: u64 = machine.iter().take(8).sum();
        let idle = machine.get(3).copied().unwrap_or(0) + machine.get(4).copied().unwrap_or(0);
        let this_process = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                // After the parenthesised command name; utime and stime are fields 14, 15.
                let rest = stat.rsplit_once(')')?.1.to_owned();
                Some(
                    rest.split_whitespace()
                        .skip(11)
                        .take(2)
                        .filter_map(|v| v.parse::<u64>().ok())
                        .sum(),
                )
            })
            .unwrap_or(0);
        CpuSample {
            machine_busy: total.saturating_sub(idle),
            machine_total: total,
            this_process,
        }
    }

    /// The CPU time spent since `before`.
    pub fn since(&self, before: &CpuSample) -> CpuDelta {
        let busy = self.machine_busy.saturating_sub(before.machine_busy);
        let mine = self.this_process.saturating_sub(before.this_process);
        CpuDelta {
            mine,
            others: busy.saturating_sub(mine),
            total: self.machine_total.saturating_sub(before.machine_total),
        }
    }
}

/// CPU time over one or more intervals, in ticks: this process's, everyone else's, and
/// the machine's capacity (all cores).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuDelta {
    mine: u64,
    others: u64,
    total: u64,
}

impl CpuDelta {
    pub fn add(&mut self, other: CpuDelta) {
        self.mine += other.mine;
        self.others += other.others;
        self.total += other.total;
    }

    /// CPU time of this process, in milliseconds (procfs counts in USER_HZ ticks,
    /// 100 per second on Linux).
    pub fn mine_ms(&self) -> f64 {
        self.mine as f64 * 10.0
    }

    /// (this process, everything else) as percentages of the machine's capacity.
    pub fn shares(&self) -> (f64, f64) {
        let total = self.total.max(1) as f64;
        (
            100.0 * self.mine as f64 / total,
            100.0 * self.others as f64 / total,
        )
    }
}

/// The filesystem type holding `path`, from /proc/mounts (longest mount-point prefix).
pub fn filesystem_of(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".into();
    };
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, mount, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), fstype.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, fstype)| fstype)
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile of `sorted` (ascending).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
