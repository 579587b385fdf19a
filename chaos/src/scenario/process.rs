//! Process faults: the delivery owner frozen past its lease, and a rolling restart
//! with a membership change.

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
