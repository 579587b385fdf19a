//! Disk faults: a full disk on one node, and a corrupted body and Raft log segment on
//! one follower.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};

use super::schedules::wait_admin;
use super::{Run, node_log};
use crate::fleet::{Fleet, node_name};
use crate::load::Outcome;

/// The node whose disk fills up: drawn from the seed, so `--seed` reproduces it.
pub(super) fn disk_full_victim(dir: &Path) -> u64 {
    // The seed is the directory's suffix (`disk-full-<seed>`).
    let seed: u64 = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    1 + seed % 5
}

pub(super) async fn disk_full(run: &mut Run) -> anyhow::Result<()> {
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
    // A node whose Raft stopped on a failed write keeps answering 4xx until its disk
    // takes writes again, then exits 1; its supervisor starts it again, as systemd's
    // Restart=on-failure does.
    if node_log(&run.fleet, victim).contains(" raft_failed ") {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !run.fleet.process_down(victim) {
            if std::time::Instant::now() > until {
                bail!("node {victim}'s Raft failed, and it did not exit once its disk had room");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        run.note(format!(
            "node {victim}'s Raft stopped on the full disk; it exited once the disk had room, and was restarted"
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

pub(super) async fn corrupt_minority(run: &mut Run) -> anyhow::Result<()> {
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
    // A body some queued message still needs, and the victim holds: any blob would
    // not do, since an orphan (a body whose message never got its 250) or a finished
    // message's body is never read again, so its damage could never be detected.
    let digest = queued_body_held_by(&run.fleet, leader, victim, &mut run.rng).await?;
    run.fleet.kill(victim).await?;
    let data = run.fleet.spec(victim).data_dir.clone();
    let blob = data.join("bodies").join("blobs").join(&digest);
    flip_byte(&blob, &mut run.rng)?;
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

/// The body digest of a queued message (asked of `via`) that `holder` has stored.
async fn queued_body_held_by(
    fleet: &Fleet,
    via: u64,
    holder: u64,
    rng: &mut impl Rng,
) -> anyhow::Result<String> {
    let list = fleet
        .admin(via, &["queue", "list", "--limit", "500"])
        .await?;
    let mut ids: Vec<String> = list["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|message| message["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.shuffle(rng);
    for queue_id in &ids {
        let shown = fleet.admin(via, &["queue", "show", queue_id]).await?;
        let held = shown["body_holders"]
            .as_array()
            .is_some_and(|holders| holders.iter().any(|h| h.as_u64() == Some(holder)));
        if let (true, Some(digest)) = (held, shown["body_digest"].as_str()) {
            return Ok(digest.to_owned());
        }
    }
    bail!("no queued message whose body node {holder} holds")
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
