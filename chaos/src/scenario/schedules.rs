//! The eight fault schedules, and the checks each adds after its run.
//!
//! Each `play_*` runs while the load generator sends mail, draws every choice (which
//! site, which node, when) from the run's seeded RNG, and leaves healing to the
//! runner unless the schedule itself is about coming back (a dark site restarts, the
//! primary returns). Times scale with [`Scale`](super::Scale): `fault` is how long a
//! fault is held, `load` how long the whole schedule lasts.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;
use rand::seq::IndexedRandom;

use super::{Invariant, Run, Scenario, node_log};
use crate::checker::Delivery;
use crate::fleet::{Fleet, FleetOptions, PRIMARY, node_name};
use crate::load::{History, Outcome};
use crate::proxy::Cut;

/// Scenario-specific timers, before the fleet starts.
pub(super) fn adjust(scenario: Scenario, options: &mut FleetOptions) {
    match scenario {
        // A slow destination rate makes the pacing visible and the drain long enough
        // to pause an owner in the middle of it.
        Scenario::PrimaryOutage => options.destination_rate = 40,
        Scenario::OwnerPaused => options.destination_rate = 15,
        _ => {}
    }
}

/// The node whose disk fills up: drawn from the seed, so `--seed` reproduces it.
fn disk_full_victim(dir: &Path) -> u64 {
    // The seed is the directory's suffix (`disk-full-<seed>`).
    let seed: u64 = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    1 + seed % 5
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
    let victim = disk_full_victim(dir);
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
        Scenario::SiteDark => site_dark(run).await,
        Scenario::LeaderSiteIsolated => leader_site_isolated(run).await,
        Scenario::PrimaryOutage => primary_outage(run).await,
        Scenario::FlappingWan => flapping_wan(run).await,
        Scenario::OwnerPaused => owner_paused(run).await,
        Scenario::RollingRestart => rolling_restart(run).await,
        Scenario::DiskFull => disk_full(run).await,
        Scenario::CorruptMinority => corrupt_minority(run).await,
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

fn names(ids: &[u64]) -> Vec<String> {
    ids.iter().map(|id| node_name(*id)).collect()
}

fn refs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// Nodes of `site` and every other node.
fn split_by_site(run: &Run, site: &str) -> (Vec<u64>, Vec<u64>) {
    run.fleet
        .ids()
        .into_iter()
        .partition(|id| run.fleet.spec(*id).site == site)
}

async fn site_dark(run: &mut Run) -> anyhow::Result<()> {
    run.hold(run.scale.load / 4).await;
    let two_node_sites: Vec<String> = run
        .fleet
        .options
        .sites
        .iter()
        .filter(|(_, ids)| ids.len() == 2)
        .map(|(site, _)| site.clone())
        .collect();
    let site = two_node_sites
        .choose(&mut run.rng)
        .context("no 2-node site")?
        .clone();
    let (dark, rest) = split_by_site(run, &site);
    let window = run.fault_begins(&format!("{site} dark"), &rest);
    let mut others = names(&rest);
    others.push(PRIMARY.to_string());
    run.fleet
        .network
        .partition(&refs(&names(&dark)), &refs(&others), Cut::Blackhole);
    for id in &dark {
        run.fleet.kill(*id).await?;
    }
    run.note(format!("{site} (nodes {dark:?}) killed and blackholed"));
    run.hold(run.scale.fault).await;
    run.fleet.network.heal();
    for id in &dark {
        run.fleet.start_node(*id)?;
    }
    for id in &dark {
        run.fleet.wait_ready(*id, Duration::from_secs(60)).await?;
    }
    run.fault_ends(window);
    run.hold(run.scale.load / 4).await;
    Ok(())
}

async fn leader_site_isolated(run: &mut Run) -> anyhow::Result<()> {
    run.hold(run.scale.load / 4).await;
    let leader = run.fleet.wait_for_leader(Duration::from_secs(10)).await?;
    let site = run.fleet.spec(leader).site.clone();
    let (isolated, rest) = split_by_site(run, &site);
    let cut = *[Cut::Blackhole, Cut::Drop, Cut::Refuse]
        .choose(&mut run.rng)
        .unwrap_or(&Cut::Blackhole);
    let window = run.fault_begins(&format!("leader site {site} isolated"), &rest);
    let start = run.now_ms();
    run.fleet
        .network
        .partition(&refs(&names(&isolated)), &refs(&names(&rest)), cut);
    run.note(format!(
        "leader {leader}'s site {site} (nodes {isolated:?}) cut off from the rest with {cut:?}"
    ));
    run.hold(run.scale.fault).await;
    // The majority elected someone else while the site was cut off.
    let new_leader = leader_among(&run.fleet, &rest).await;
    run.check(
        "the majority elected a new leader",
        new_leader.is_some_and(|l| !isolated.contains(&l)),
        format!("leader seen by the majority: {new_leader:?}"),
    );
    let end = run.now_ms();
    run.fleet.network.heal();
    run.fault_ends(window);
    // A minority node must not acknowledge anything it could not commit: after the
    // write timeout has passed, every session it started while cut off got no 250.
    let grace = run.fleet.options.write_timeout.as_millis() as u64;
    let history = run.load.snapshot();
    let isolated_names = names(&isolated);
    let minority_acks = history
        .attempts
        .iter()
        .filter(|a| {
            isolated_names.contains(&a.node)
                && a.outcome == Outcome::Ok
                && a.started_ms > start + grace
                && a.ended_ms < end
        })
        .count();
    run.check(
        "the cut-off site acknowledged nothing",
        minority_acks == 0,
        format!("{minority_acks} acks from {isolated_names:?} while cut off"),
    );
    run.hold(run.scale.load / 4).await;
    Ok(())
}

/// The leader as one of `ids` sees it.
async fn leader_among(fleet: &Fleet, ids: &[u64]) -> Option<u64> {
    for id in ids {
        if let Ok(status) = fleet.admin(*id, &["cluster", "status"]).await
            && let Some(leader) = status["leader"].as_u64()
        {
            return Some(leader);
        }
    }
    None
}

async fn primary_outage(run: &mut Run) -> anyhow::Result<()> {
    run.hold(run.scale.load / 6).await;
    run.fleet.primary.stop().await;
    let all = run.fleet.ids();
    let window = run.fault_begins("primary down", &all);
    run.note(format!("primary down for {:?}", run.scale.outage));
    run.hold(run.scale.outage).await;
    let backlog = run.fleet.queue_depth().await.unwrap_or(0);
    run.note(format!(
        "backlog when the primary returned: {backlog} messages"
    ));
    run.fleet.primary.start().await;
    run.drain_from_ms = Some(run.now_ms());
    run.fault_ends(window);
    Ok(())
}

async fn flapping_wan(run: &mut Run) -> anyhow::Result<()> {
    let sites: Vec<(String, Vec<u64>)> = run.fleet.options.sites.clone();
    let degrade = |run: &Run| {
        for (i, (_, a)) in sites.iter().enumerate() {
            for (_, b) in &sites[i + 1..] {
                run.fleet.network.degrade(
                    &refs(&names(a)),
                    &refs(&names(b)),
                    Duration::from_millis(15),
                    Duration::from_millis(25),
                    None,
                );
            }
        }
    };
    degrade(run);
    let until = run.now_ms() + run.scale.load.as_millis() as u64 * 3 / 4;
    let mut changes = 0;
    while run.now_ms() < until {
        let pause = Duration::from_millis(run.rng.random_range(1000..2500));
        run.hold(pause).await;
        match run.rng.random_range(0..3) {
            0 => {
                // A short cut between two sites, both ways.
                let pair: Vec<&(String, Vec<u64>)> =
                    sites.choose_multiple(&mut run.rng, 2).collect();
                let (a, b) = (names(&pair[0].1), names(&pair[1].1));
                run.fleet
                    .network
                    .partition(&refs(&a), &refs(&b), Cut::Blackhole);
                let cut_for = Duration::from_millis(run.rng.random_range(300..1500));
                run.hold(cut_for).await;
                run.fleet.network.heal();
                degrade(run);
            }
            1 => {
                let ids = run.fleet.ids();
                let a = *ids.choose(&mut run.rng).unwrap_or(&1);
                let b = *ids.choose(&mut run.rng).unwrap_or(&2);
                if a != b {
                    run.fleet.network.reset(&node_name(a), &node_name(b));
                }
            }
            _ => {
                // A forced leader change.
                if let Some(leader) = run.fleet.leader().await {
                    let others: Vec<u64> = run
                        .fleet
                        .ids()
                        .into_iter()
                        .filter(|id| *id != leader)
                        .collect();
                    let to = *others.choose(&mut run.rng).unwrap_or(&leader);
                    let moved = run
                        .fleet
                        .admin(leader, &["cluster", "transfer-leader", &to.to_string()])
                        .await;
                    if moved.is_ok() {
                        changes += 1;
                    }
                }
            }
        }
    }
    run.note(format!("{changes} forced leader changes"));
    run.fleet.network.heal();
    Ok(())
}

async fn owner_paused(run: &mut Run) -> anyhow::Result<()> {
    // A backlog first, so that a drain is under way when the owner freezes.
    run.fleet.primary.stop().await;
    run.hold(run.scale.load / 3).await;
    run.fleet.primary.start().await;
    run.drain_from_ms = Some(run.now_ms());
    let owner = find_owner(&run.fleet, Duration::from_secs(20)).await?;
    run.fleet.pause(owner)?;
    let paused_at = run.now_ms();
    let frozen_for = run.fleet.options.lease * 2;
    run.note(format!(
        "owner {owner} SIGSTOPped at {paused_at} ms for {frozen_for:?}"
    ));
    run.hold(frozen_for).await;
    run.fleet.resume(owner)?;
    let resumed_at = run.now_ms();
    run.note(format!("owner {owner} resumed at {resumed_at} ms"));
    std::fs::write(
        run.fleet.dir.join("paused-owner"),
        format!("{owner} {paused_at} {resumed_at}"),
    )?;
    run.hold(run.scale.load / 3).await;
    Ok(())
}

/// A node that holds a lease on an in-flight message.
async fn find_owner(fleet: &Fleet, deadline: Duration) -> anyhow::Result<u64> {
    let until = std::time::Instant::now() + deadline;
    while std::time::Instant::now() < until {
        for id in fleet.running() {
            let Ok(list) = fleet
                .admin(
                    id,
                    &["queue", "list", "--state", "in-flight", "--limit", "5"],
                )
                .await
            else {
                continue;
            };
            for message in list["messages"].as_array().into_iter().flatten() {
                let Some(queue_id) = message["id"].as_str() else {
                    continue;
                };
                if let Ok(shown) = fleet.admin(id, &["queue", "show", queue_id]).await
                    && let Some(owner) = shown["lease"]["owner"].as_u64()
                {
                    return Ok(owner);
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("no in-flight delivery seen within {deadline:?}")
}

/// How long a SIGTERM may take: the daemon gives SMTP sessions, deliveries and Raft
/// 30 s each to finish.
const STOP_DEADLINE: Duration = Duration::from_secs(100);

async fn rolling_restart(run: &mut Run) -> anyhow::Result<()> {
    for id in run.fleet.ids() {
        run.fleet
            .terminate(id, STOP_DEADLINE)
            .await
            .with_context(|| format!("stopping node {id}"))?;
        run.fleet.start_node(id)?;
        run.fleet.wait_ready(id, Duration::from_secs(60)).await?;
        run.note(format!("node {id} restarted"));
        run.hold(run.scale.fault / 4).await;
    }
    // A membership change under load: a new node joins site-c, is promoted, and the
    // first node leaves for good.
    let leader = run.fleet.wait_for_leader(Duration::from_secs(10)).await?;
    let new_id = run.fleet.ids().into_iter().max().unwrap_or(5) + 1;
    run.fleet.add_node(new_id, "site-c", leader).await?;
    wait_admin(
        &run.fleet,
        leader,
        &["cluster", "promote", &new_id.to_string()],
    )
    .await?;
    // As an operator would: drain the node first (no new mail, its waiting work goes
    // back to the leader), then remove it.
    let old = 1;
    wait_admin(&run.fleet, new_id, &["cluster", "drain", &old.to_string()]).await?;
    run.hold(run.fleet.options.lease).await;
    let leader = run.fleet.wait_for_leader(Duration::from_secs(10)).await?;
    let via = if leader == old { new_id } else { leader };
    wait_admin(&run.fleet, via, &["cluster", "remove", &old.to_string()]).await?;
    run.fleet.retire(old);
    let targets = run
        .targets()
        .into_iter()
        .filter(|t| t.node != node_name(old))
        .collect();
    run.load.set_targets(targets);
    run.hold(Duration::from_secs(2)).await;
    run.fleet.terminate(old, STOP_DEADLINE).await?;
    run.note(format!(
        "node {new_id} added and promoted; node {old} removed and stopped"
    ));
    run.hold(run.scale.fault).await;
    Ok(())
}

/// Retries an admin call for a few seconds (a leader change may be under way).
async fn wait_admin(fleet: &Fleet, via: u64, args: &[&str]) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match fleet.admin(via, args).await {
            Ok(_) => return Ok(()),
            Err(error) if std::time::Instant::now() > until => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

async fn disk_full(run: &mut Run) -> anyhow::Result<()> {
    let victim = disk_full_victim(&run.fleet.dir);
    let data = run.fleet.spec(victim).data_dir.clone();
    run.hold(run.scale.load / 5).await;
    let filler = data.join("filler");
    let written = fill_disk(&filler)?;
    let rest: Vec<u64> = run
        .fleet
        .ids()
        .into_iter()
        .filter(|id| *id != victim)
        .collect();
    let window = run.fault_begins(&format!("node {victim} disk full"), &rest);
    let full_from = run.now_ms();
    run.note(format!(
        "node {victim}'s disk filled ({written} bytes of filler)"
    ));
    run.hold(run.scale.fault).await;
    let full_until = run.now_ms();
    std::fs::remove_file(&filler)?;
    run.note(format!("node {victim}'s disk has room again"));
    // A node whose Raft stopped on a failed write exits 1; its supervisor starts it
    // again, as systemd's Restart=on-failure does.
    if run.fleet.process_down(victim) {
        run.note(format!(
            "node {victim} had exited (Raft stopped on the full disk); restarted"
        ));
        run.fleet.start_node(victim)?;
        run.fleet
            .wait_ready(victim, Duration::from_secs(60))
            .await?;
    }
    run.fault_ends(window);
    let caught_up = caught_up(&run.fleet, victim, Duration::from_secs(30)).await;
    run.check(
        "the full node is back in service",
        caught_up.is_ok(),
        caught_up.unwrap_or_else(|e| format!("{e:#}")),
    );
    // While full, the victim refused with 4xx (or failed the session), never 250-then-lost;
    // the checker catches loss, this records what senders were told.
    let history = run.load.snapshot();
    let victim_name = node_name(victim);
    let replies: Vec<&str> = history
        .attempts
        .iter()
        .filter(|a| a.node == victim_name && a.started_ms >= full_from && a.ended_ms <= full_until)
        .filter(|a| a.outcome != Outcome::Ok)
        .map(|a| a.reply.as_str())
        .collect();
    let storage_replies = replies
        .iter()
        .filter(|r| r.starts_with("452") || r.starts_with("451"))
        .count();
    run.note(format!(
        "node {victim} while full: {} refusals, {storage_replies} of them 452/451",
        replies.len()
    ));
    run.check(
        "the full node answered 452 or 451",
        storage_replies > 0,
        format!("{storage_replies} of {} refusals", replies.len()),
    );
    run.hold(run.scale.load / 5).await;
    Ok(())
}

/// Waits until node `id` has applied what the leader had committed when asked.
async fn caught_up(fleet: &Fleet, id: u64, deadline: Duration) -> anyhow::Result<String> {
    let leader = fleet.wait_for_leader(deadline).await?;
    let committed = fleet
        .admin(leader, &["cluster", "status", "--linearizable"])
        .await?["committed_index"]
        .as_u64()
        .context("the leader reports no commit index")?;
    let until = std::time::Instant::now() + deadline;
    loop {
        let applied = fleet
            .admin(id, &["cluster", "status"])
            .await
            .ok()
            .and_then(|s| s["applied_index"].as_u64());
        if applied.is_some_and(|a| a >= committed) {
            return Ok(format!(
                "node {id} applied {applied:?} ≥ the leader's commit {committed}"
            ));
        }
        if std::time::Instant::now() > until {
            bail!("node {id} applied {applied:?} < {committed} after {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill_disk(path: &Path) -> anyhow::Result<u64> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(_) => break,
        }
    }
    let _ = file.sync_all();
    Ok(written)
}

async fn corrupt_minority(run: &mut Run) -> anyhow::Result<()> {
    // A queue to deliver later: the primary is down while mail arrives.
    run.fleet.primary.stop().await;
    run.hold(run.scale.load / 3).await;
    let leader = run.fleet.wait_for_leader(Duration::from_secs(10)).await?;
    let candidates: Vec<u64> = run
        .fleet
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let victim = *candidates.choose(&mut run.rng).context("no follower")?;
    run.fleet.kill(victim).await?;
    let data = run.fleet.spec(victim).data_dir.clone();
    let blob = corrupt_one_file(&data.join("bodies").join("blobs"), &mut run.rng, |_| true)?;
    let segment = corrupt_log_segment(&data, &mut run.rng)?;
    run.note(format!(
        "node {victim} killed; flipped a byte in {} and in {}",
        blob.display(),
        segment.display()
    ));
    std::fs::write(
        run.fleet.dir.join("corrupted"),
        format!("{victim}\n{}\n{}\n", blob.display(), segment.display()),
    )?;
    run.fleet.start_node(victim)?;
    run.fleet
        .wait_ready(victim, Duration::from_secs(60))
        .await?;
    // Only the victim delivers: every other node is drained, so the corrupt body is
    // read by the one node that has it damaged.
    for id in run.fleet.ids().into_iter().filter(|id| *id != victim) {
        wait_admin(&run.fleet, victim, &["cluster", "drain", &id.to_string()]).await?;
    }
    run.fleet.primary.start().await;
    run.drain_from_ms = Some(run.now_ms());
    let until = std::time::Instant::now() + run.scale.drain_deadline / 2;
    while run.fleet.queue_depth().await != Some(0) && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for id in run.fleet.ids().into_iter().filter(|id| *id != victim) {
        wait_admin(
            &run.fleet,
            victim,
            &["cluster", "drain", &id.to_string(), "--undo"],
        )
        .await?;
    }
    Ok(())
}

/// Flips one byte in the middle of a random file under `dir` that `accept` allows.
fn corrupt_one_file(
    dir: &Path,
    rng: &mut impl Rng,
    accept: impl Fn(&Path) -> bool,
) -> anyhow::Result<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && accept(p))
        .collect();
    files.sort();
    let file = files
        .choose(rng)
        .with_context(|| format!("no file to corrupt in {}", dir.display()))?
        .clone();
    flip_byte(&file, rng)?;
    Ok(file)
}

fn flip_byte(file: &Path, rng: &mut impl Rng) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(file)?;
    if bytes.is_empty() {
        bail!("{} is empty", file.display());
    }
    // Away from both ends: a damaged header or a torn tail are other cases.
    let low = bytes.len() / 4;
    let high = (bytes.len() * 3 / 4).max(low + 1);
    let at = rng.random_range(low..high);
    bytes[at] ^= 0x5a;
    std::fs::write(file, bytes)?;
    Ok(())
}

/// Flips a byte in the largest Raft log chunk of a node's data directory.
fn corrupt_log_segment(data: &Path, rng: &mut impl Rng) -> anyhow::Result<std::path::PathBuf> {
    let mut chunks = Vec::new();
    collect_files(data, &mut chunks);
    let chunk = chunks
        .into_iter()
        .filter(|(path, _)| {
            let text = path.to_string_lossy();
            (text.contains("raft-log") || text.contains("/log/")) && !text.contains("quarantine")
        })
        .max_by_key(|(_, size)| *size)
        .map(|(path, _)| path)
        .with_context(|| format!("no Raft log chunk under {}", data.display()))?;
    flip_byte(&chunk, rng)?;
    Ok(chunk)
}

fn collect_files(dir: &Path, out: &mut Vec<(std::path::PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if let Ok(meta) = entry.metadata() {
            out.push((path, meta.len()));
        }
    }
}

/// Checks a scenario adds once the run has drained.
pub(super) fn after(
    scenario: Scenario,
    fleet: &Fleet,
    _history: &History,
    deliveries: &[Delivery],
    drain_from_ms: u64,
) -> Vec<Invariant> {
    match scenario {
        Scenario::PrimaryOutage => vec![paced(fleet, deliveries, drain_from_ms)],
        Scenario::OwnerPaused => vec![no_stale_delivery(fleet, deliveries)],
        Scenario::CorruptMinority => corruption_detected(fleet),
        _ => Vec::new(),
    }
}

/// The drain kept to the fleet-wide token bucket of the destination rate: in any
/// window of W seconds at most `rate × W` deliveries plus the bucket's one-second
/// burst (10% slack for timestamps taken at the sink, not at the leader).
fn paced(fleet: &Fleet, deliveries: &[Delivery], drain_from_ms: u64) -> Invariant {
    let mut times: Vec<u64> = deliveries
        .iter()
        .map(|d| d.at_ms)
        .filter(|at| *at >= drain_from_ms)
        .collect();
    times.sort_unstable();
    let rate = f64::from(fleet.options.destination_rate);
    let mut worst = String::new();
    let mut holds = true;
    for window_s in [1u64, 2, 5] {
        let peak = peak_in_window(&times, window_s * 1000);
        let limit = (rate * (window_s as f64 + 1.0) * 1.1).ceil() as usize + 2;
        if peak > limit {
            holds = false;
        }
        worst.push_str(&format!("{peak} in {window_s}s (limit {limit}); "));
    }
    Invariant {
        name: "the drain is paced".into(),
        holds,
        detail: format!(
            "{worst}destination rate {rate}/s, {} delivered after the primary returned",
            times.len()
        ),
    }
}

/// The most deliveries in any window of `window_ms` (times sorted).
fn peak_in_window(times: &[u64], window_ms: u64) -> usize {
    let mut peak = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    peak
}

/// The frozen owner delivered nothing after it resumed that another node had
/// delivered in the meantime: its lease had lapsed, so it must have given up.
fn no_stale_delivery(fleet: &Fleet, deliveries: &[Delivery]) -> Invariant {
    let name = "no stale delivery by the resumed owner".to_string();
    let Ok(text) = std::fs::read_to_string(fleet.dir.join("paused-owner")) else {
        return Invariant {
            name,
            holds: false,
            detail: "the owner was never paused".into(),
        };
    };
    let parts: Vec<u64> = text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let [owner, _paused, resumed] = parts[..] else {
        return Invariant {
            name,
            holds: false,
            detail: format!("unreadable pause record: {text}"),
        };
    };
    let owner_name = node_name(owner);
    let stale: Vec<u64> = deliveries
        .iter()
        .filter(|d| d.from_node.as_deref() == Some(owner_name.as_str()) && d.at_ms >= resumed)
        .filter_map(|d| {
            let id = d.chaos_id?;
            deliveries
                .iter()
                .any(|other| {
                    other.chaos_id == Some(id)
                        && other.at_ms < d.at_ms
                        && other.from_node != d.from_node
                })
                .then_some(id)
        })
        .collect();
    Invariant {
        name,
        holds: stale.is_empty(),
        detail: format!(
            "node {owner}: {} deliveries after resuming, {} of them already delivered by another node {stale:?}",
            deliveries
                .iter()
                .filter(
                    |d| d.from_node.as_deref() == Some(owner_name.as_str()) && d.at_ms >= resumed
                )
                .count(),
            stale.len()
        ),
    }
}

/// The victim's log shows both kinds of damage found.
fn corruption_detected(fleet: &Fleet) -> Vec<Invariant> {
    let Ok(record) = std::fs::read_to_string(fleet.dir.join("corrupted")) else {
        return vec![Invariant {
            name: "corruption injected".into(),
            holds: false,
            detail: "the schedule stopped before corrupting anything".into(),
        }];
    };
    let victim: u64 = record
        .lines()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let log = node_log(fleet, victim);
    vec![
        Invariant {
            name: "the corrupt body was detected".into(),
            holds: log.contains("body_corrupt"),
            detail: format!(
                "node {victim}: body_corrupt logged: {}",
                log.contains("body_corrupt")
            ),
        },
        Invariant {
            name: "the corrupt log segment was detected".into(),
            holds: log.contains("raft_log_corrupt"),
            detail: format!(
                "node {victim}: raft_log_corrupt logged: {}",
                log.contains("raft_log_corrupt")
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_counts_deliveries_inside_any_window_of_that_length() {
        let times = [0, 100, 900, 1000, 1100, 5000];
        assert_eq!(peak_in_window(&times, 1000), 3, "0..999 or 100..1099");
        assert_eq!(peak_in_window(&times, 2000), 5);
        assert_eq!(peak_in_window(&[], 1000), 0);
    }

    #[test]
    fn the_disk_full_victim_follows_the_seed_in_the_run_directory() {
        assert_eq!(disk_full_victim(Path::new("/x/disk-full-0")), 1);
        assert_eq!(disk_full_victim(Path::new("/x/disk-full-9")), 5);
        assert_eq!(disk_full_victim(Path::new("/x/disk-full-10")), 1);
    }
}
