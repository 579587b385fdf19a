//! The nine fault schedules: the runner's entry points (`adjust`, `prepare`, `play`)
//! and the helpers the schedules share.
//!
//! Each schedule runs while the load generator sends mail, draws every choice (which
//! site, which node, when) from the run's seeded RNG, and leaves healing to the
//! runner unless the schedule itself is about coming back (a dark site restarts, the
//! primary returns). Times scale with [`Scale`](super::Scale): `fault` is how long a
//! fault is held, `load` how long the whole schedule lasts. The schedules live by the
//! kind of fault: [`network`](super::network), [`process`](super::process) and
//! [`disk`](super::disk); the checks they add after the drain in
//! [`checks`](super::checks).

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use super::{Run, Scenario, disk, network, process};
use crate::fleet::{Fleet, FleetOptions, node_name};

/// Scenario-specific timers, before the fleet starts.
pub(super) fn adjust(scenario: Scenario, options: &mut FleetOptions) {
    match scenario {
        // A slow destination rate makes the pacing visible and the drain long enough
        // to pause an owner in the middle of it.
        Scenario::PrimaryOutage => options.destination_rate = 40,
        Scenario::OwnerPaused => options.destination_rate = 15,
        // The wording: "all 3 nodes of a test cluster". One node per site.
        Scenario::RollingRestart3 => options.sites = FleetOptions::three_sites().sites,
        _ => {}
    }
}

/// Work before the fleet starts: the disk-full scenario mounts a small tmpfs as its
/// victim's data directory. Returns a reason to skip when that is impossible here.
pub(super) fn prepare(
    scenario: Scenario,
    dir: &Path,
    _options: &FleetOptions,
    cleanup: &mut Vec<Box<dyn FnOnce() + Send>>,
) -> anyhow::Result<Option<String>> {
    if scenario != Scenario::DiskFull {
        return Ok(None);
    }
    let victim = disk::disk_full_victim(dir);
    let mount_point = dir.join(node_name(victim));
    std::fs::create_dir_all(&mount_point)?;
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
        .arg(&mount_point)
        .status();
    match status {
        Ok(status) if status.success() => {
            let point = mount_point.clone();
            cleanup.push(Box::new(move || {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&point)
                    .status();
            }));
            Ok(None)
        }
        Ok(status) => Ok(Some(format!(
            "mount -t tmpfs failed ({status}); the disk-full scenario needs root (or CAP_SYS_ADMIN) for a small tmpfs"
        ))),
        Err(error) => Ok(Some(format!("cannot run mount: {error}"))),
    }
}

pub(super) async fn play(scenario: Scenario, run: &mut Run) -> anyhow::Result<()> {
    wait_for_first_acks(run).await?;
    match scenario {
        Scenario::SiteDark => network::site_dark(run).await,
        Scenario::LeaderSiteIsolated => network::leader_site_isolated(run).await,
        Scenario::PrimaryOutage => network::primary_outage(run).await,
        Scenario::FlappingWan => network::flapping_wan(run).await,
        Scenario::OwnerPaused => process::owner_paused(run).await,
        Scenario::RollingRestart => process::rolling_restart(run).await,
        Scenario::RollingRestart3 => process::rolling_restart_three(run).await,
        Scenario::DiskFull => disk::disk_full(run).await,
        Scenario::CorruptMinority => disk::corrupt_minority(run).await,
    }
}

/// The load is flowing before any fault: a fleet that cannot take mail at all would
/// make every later figure meaningless.
async fn wait_for_first_acks(run: &Run) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while run.load.acked() < 5 {
        if std::time::Instant::now() > until {
            bail!("the fleet acknowledged fewer than 5 messages in 30 s before any fault");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

pub(super) fn names(ids: &[u64]) -> Vec<String> {
    ids.iter().map(|id| node_name(*id)).collect()
}

pub(super) fn refs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// Nodes of `site` and every other node.
pub(super) fn split_by_site(run: &Run, site: &str) -> (Vec<u64>, Vec<u64>) {
    run.fleet
        .ids()
        .into_iter()
        .partition(|id| run.fleet.spec(*id).site == site)
}

/// Retries an admin call for a few seconds (a leader change may be under way).
pub(super) async fn wait_admin(fleet: &Fleet, via: u64, args: &[&str]) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match fleet.admin(via, args).await {
            Ok(_) => return Ok(()),
            Err(error) if std::time::Instant::now() > until => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// The leader as one of `ids` sees it.
pub(super) async fn leader_among(fleet: &Fleet, ids: &[u64]) -> Option<u64> {
    for id in ids {
        if let Ok(status) = fleet.admin(*id, &["cluster", "status"]).await
            && let Some(leader) = status["leader"].as_u64()
        {
            return Some(leader);
        }
    }
    None
}
