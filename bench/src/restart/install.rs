//! `keel bench restart --install-snapshot` (Keel only): the memory a Raft
//! snapshot costs. The leader's resident memory is sampled while it takes
//! snapshots during the load (its peak against its memory once the load is
//! done), and then a follower's disk is "replaced": it is removed from the
//! cluster, started on an empty data directory with `--join` and added
//! again, so it catches up by installing the leader's snapshot. Its peak
//! while installing is set against a follower that holds the same state.
//! Issue 10's goal: both stay within 256 MiB of the steady memory.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::member as pb;
use serde_json::json;

use crate::cluster::KeelCluster;
use crate::{Sampler, Table, disk_bytes, num, proc_usage, ready};

const MIB: f64 = (1 << 20) as f64;
const LEADER: &str = "keel-leader";
const JOINING: &str = "keel-joining";

/// The size of member `i`'s snapshot file, `None` if it has none.
fn snapshot_mib(c: &KeelCluster, i: usize) -> Option<f64> {
    let dir = c.members[i].dir.join(keel_store::data_dir::SNAPSHOTS_DIR);
    let mib = disk_bytes(&dir) as f64 / MIB;
    (mib > 0.0).then_some(mib)
}

/// What the leader's memory did during the load.
pub(super) struct Building {
    peak_mib: f64,
    after_mib: f64,
    snapshot_mib: f64,
}

/// Start sampling the leader (member `leader`) alone, before the load.
pub(super) fn track_leader(c: &KeelCluster, sampler: &Sampler, leader: usize) {
    sampler.track(LEADER, c.pid(leader).into_iter().collect());
}

/// The leader's memory once the load is done, and the snapshot it left.
pub(super) fn building(c: &KeelCluster, sampler: &Sampler, leader: usize) -> Result<Building> {
    let pid = c.pid(leader).context("the leader is not running")?;
    let snapshot_mib = snapshot_mib(c, leader).context(
        "the leader took no snapshot during the load: pass \
         --keel-args=--snapshot-every=N with N below the load's Raft entries",
    )?;
    Ok(Building {
        peak_mib: sampler.usage(LEADER).peak_rss_mib,
        after_mib: proc_usage(pid).0 as f64 / MIB,
        snapshot_mib,
    })
}

/// Replace a follower's data directory and measure it catching up.
pub(super) async fn measure(
    c: &mut KeelCluster,
    sampler: &Sampler,
    built: &Building,
    p: impl Fn(&str),
) -> Result<Table> {
    let mut table = Table::new(
        "memory while a Raft snapshot is built (during the load) and installed (by a follower whose data directory was replaced)",
        &[
            "member",
            "peak RSS MiB",
            "steady RSS MiB",
            "growth MiB",
            "snapshot MiB",
            "catch-up s",
        ],
    );
    table.push(vec![
        json!("leader, building"),
        num(built.peak_mib),
        num(built.after_mib),
        num(built.peak_mib - built.after_mib),
        num(built.snapshot_mib),
        json!("-"),
    ]);
    let leader = c.leader().await.context("no leader")?;
    let (wiped, other) = ((leader + 1) % 3, (leader + 2) % 3);
    let steady = proc_usage(c.pid(other).context("a follower is not running")?).0 as f64 / MIB;
    let mut admin = c.admin(leader).await?;
    let id = c.members[wiped].id;
    p(&format!(
        "keel: remove member {id}, empty its data directory, start it with --join and add it again"
    ));
    admin
        .remove_member(pb::RemoveMemberRequest { id })
        .await
        .context("removing the member")?;
    c.spawn_wiped(wiped)?;
    sampler.track(JOINING, c.pid(wiped).into_iter().collect());
    sampler.reset();
    let began = Instant::now();
    admin
        .add_member(pb::AddMemberRequest {
            id,
            addr: c.members[wiped].peer.clone(),
        })
        .await
        .context("adding the member again")?;
    let target = admin
        .status(pb::StatusRequest {})
        .await?
        .into_inner()
        .applied_index;
    let caught_up = c.admin(wiped).await?;
    ready(
        "the re-added member to apply the leader's index",
        Duration::from_secs(600),
        || {
            let mut a = caught_up.clone();
            async move {
                let s = a.status(pb::StatusRequest {}).await?.into_inner();
                if s.applied_index >= target {
                    Ok(())
                } else {
                    bail!("applied {} of {target}", s.applied_index)
                }
            }
        },
    )
    .await?;
    let took = began.elapsed();
    let installed = snapshot_mib(c, wiped)
        .context("the re-added member caught up without installing a snapshot")?;
    let peak = sampler.usage(JOINING).peak_rss_mib;
    p(&format!(
        "keel: member {id} installed a {installed:.0} MiB snapshot and caught up in {:.1} s; peak RSS {peak:.0} MiB (a steady follower: {steady:.0} MiB)",
        took.as_secs_f64()
    ));
    table.push(vec![
        json!("follower, installing"),
        num(peak),
        num(steady),
        num(peak - steady),
        num(installed),
        num(took.as_secs_f64()),
    ]);
    Ok(table)
}
