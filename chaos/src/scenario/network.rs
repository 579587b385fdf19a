//! Network faults: a dark site, the leader's site cut off, the primary down, and a
//! flapping WAN between sites.

use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use rand::seq::IndexedRandom;

use super::Run;
use super::schedules::{leader_among, names, refs, split_by_site};
use crate::fleet::{PRIMARY, node_name};
use crate::load::Outcome;
use crate::proxy::Cut;

pub(super) async fn site_dark(run: &mut Run) -> anyhow::Result<()> {
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

pub(super) async fn leader_site_isolated(run: &mut Run) -> anyhow::Result<()> {
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

pub(super) async fn primary_outage(run: &mut Run) -> anyhow::Result<()> {
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

pub(super) async fn flapping_wan(run: &mut Run) -> anyhow::Result<()> {
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
