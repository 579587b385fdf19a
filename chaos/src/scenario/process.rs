//! Process faults: the delivery owner frozen past its lease, a rolling restart with a
//! membership change, and a rolling restart of a 3-node fleet that waits for each node
//! to catch up (what a rolling upgrade does, with the same binary).

use std::time::Duration;

use anyhow::{Context, bail};

use super::Run;
use super::schedules::wait_admin;
use crate::fleet::{Fleet, node_name};

pub(super) async fn owner_paused(run: &mut Run) -> anyhow::Result<()> {
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

pub(super) async fn rolling_restart(run: &mut Run) -> anyhow::Result<()> {
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

/// The file where `rolling_restart_three` records, per node, when it was ready and
/// caught up again: `<id> <stop started ms> <caught up ms>` per line.
pub(super) const RESTARTS_FILE: &str = "restarts";

/// How long a restarted node may take to start and to catch up with the leader.
const REJOIN_DEADLINE: Duration = Duration::from_secs(60);

pub(super) async fn rolling_restart_three(run: &mut Run) -> anyhow::Result<()> {
    // Down for longer than any election timeout, as while a package is swapped: when
    // the stopped node leads, the others must elect a leader and go on taking mail.
    let down = run.fleet.options.election_timeout * 3;
    let mut record = String::new();
    run.hold(run.scale.fault / 4).await;
    for id in run.fleet.ids() {
        let others: Vec<u64> = run.fleet.ids().into_iter().filter(|o| *o != id).collect();
        let window = run.fault_begins(&format!("restart of node {id}"), &others);
        let stop_at = run.now_ms();
        run.fleet
            .terminate(id, STOP_DEADLINE)
            .await
            .with_context(|| format!("stopping node {id}"))?;
        let stopped_at = run.now_ms();
        run.hold(down).await;
        let leader_while_down = run.fleet.leader().await;
        run.fleet.start_node(id)?;
        run.fleet.wait_ready(id, REJOIN_DEADLINE).await?;
        let ready_at = run.now_ms();
        let (applied, target) = wait_caught_up(&run.fleet, id, REJOIN_DEADLINE).await?;
        let caught_up_at = run.now_ms();
        let leader_after = run.fleet.leader().await;
        run.fault_ends(window);
        record.push_str(&format!("{id} {stop_at} {caught_up_at}\n"));
        run.note(format!(
            "node {id}: SIGTERM at {stop_at} ms, stopped in {} ms, down {} ms, ready after \
             {} ms, caught up after {} ms more (applied {applied} >= leader's commit \
             {target}); leader {leader_while_down:?} while it was down, {leader_after:?} after",
            stopped_at - stop_at,
            down.as_millis(),
            ready_at - stopped_at,
            caught_up_at - ready_at,
        ));
        // Load on the whole fleet before the next node goes.
        run.hold(run.scale.fault / 2).await;
    }
    std::fs::write(run.fleet.dir.join(RESTARTS_FILE), record)?;
    run.hold(run.scale.fault / 2).await;
    Ok(())
}

/// Waits until node `id` names a leader and has applied everything the leader had
/// committed when the wait began (the load keeps adding more, so "equal" would chase a
/// moving target). Returns the node's applied index and that commit index.
async fn wait_caught_up(fleet: &Fleet, id: u64, deadline: Duration) -> anyhow::Result<(u64, u64)> {
    let until = std::time::Instant::now() + deadline;
    let mut target = None;
    let mut last = String::from("no answer yet");
    while std::time::Instant::now() < until {
        if target.is_none()
            && let Some(leader) = fleet.leader().await
            && let Ok(status) = fleet.admin(leader, &["cluster", "status"]).await
            && status["answered_by"].as_u64() == Some(leader)
        {
            target = status["committed_index"].as_u64();
        }
        if let Some(target) = target {
            match fleet.admin(id, &["cluster", "status"]).await {
                Ok(status) => {
                    let applied = status["applied_index"].as_u64().unwrap_or(0);
                    if status["leader"].as_u64().is_some() && applied >= target {
                        return Ok((applied, target));
                    }
                    last = format!("applied {applied} of {target}, leader {}", status["leader"]);
                }
                Err(error) => last = format!("{error:#}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("node {id} did not catch up within {deadline:?}: {last}")
}
