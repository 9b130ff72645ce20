//! `keel bench restart`: how long a member with a long history takes to
//! serve reads again after `kill -9`. Each system (three Keel members, three
//! etcd members) is loaded with the same objects and the same number of
//! events (creates, then updates), keeping every event (Keel with
//! `--retain-events`, etcd without compaction). Then one follower is killed
//! and restarted, and the time from its start to its first linearizable
//! read is measured; then all three are killed and restarted together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::member as pb;
use serde_json::json;

use super::cluster::{EtcdCluster, KeelCluster};
use super::{Sampler, Table, disk_bytes, drive, num, progress};

mod install;

/// Options of `keel bench restart`.
#[derive(clap::Args, Clone, Debug)]
pub struct RestartBenchArgs {
    /// Distinct keys (objects).
    #[arg(long, default_value_t = 20_000)]
    pub objects: usize,
    /// Events in total: one create per object, the rest updates.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// Concurrent clients while loading.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    #[command(flatten)]
    pub etcd: super::cluster::EtcdArgs,
    /// Extra options for the Keel members, e.g. `--keel-args=--snapshot-every=100000`.
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    pub keel_args: Vec<String>,
    /// Keel only: also measure the memory of Raft snapshots, built by the
    /// leader during the load and installed by a follower whose data
    /// directory is replaced after it (see [`install`]). Needs a snapshot
    /// during the load, e.g. `--keel-args=--snapshot-every=20000`.
    #[arg(long)]
    pub install_snapshot: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

enum Sys {
    Keel(KeelCluster),
    Etcd(EtcdCluster),
}

impl Sys {
    fn pids(&self) -> Vec<u32> {
        match self {
            Sys::Keel(c) => c.pids(),
            Sys::Etcd(c) => c.pids(),
        }
    }
    fn kill(&mut self, i: usize) {
        match self {
            Sys::Keel(c) => c.kill(i),
            Sys::Etcd(c) => c.kill(i),
        }
    }
    fn spawn(&mut self, i: usize) -> Result<()> {
        match self {
            Sys::Keel(c) => c.spawn(i),
            Sys::Etcd(c) => c.spawn(i),
        }
    }
    async fn leader(&self) -> Option<usize> {
        match self {
            Sys::Keel(c) => c.leader().await,
            Sys::Etcd(c) => c.leader().await,
        }
    }
    fn dir(&self, i: usize) -> std::path::PathBuf {
        match self {
            Sys::Keel(c) => c.members[i].dir.clone(),
            Sys::Etcd(c) => c.members[i].dir.clone(),
        }
    }
    /// Poll member `i` with a linearizable read of `key` until it answers.
    async fn first_read(&self, i: usize, key: &str) -> Result<Duration> {
        let began = Instant::now();
        let deadline = began + Duration::from_secs(600);
        loop {
            let ok = match self {
                Sys::Keel(c) => {
                    async {
                        let ch = c
                            .endpoint(i)?
                            .connect_timeout(Duration::from_millis(200))
                            .timeout(Duration::from_secs(2))
                            .connect()
                            .await?;
                        let r = pb::kv_client::KvClient::new(ch)
                            .range(pb::RangeRequest {
                                prefix: key.to_string(),
                                ..Default::default()
                            })
                            .await?;
                        anyhow::Ok(!r.into_inner().kvs.is_empty())
                    }
                    .await
                }
                Sys::Etcd(c) => {
                    let ep = c.endpoint(i);
                    async {
                        let opts = c
                            .options()
                            .with_connect_timeout(Duration::from_millis(200))
                            .with_timeout(Duration::from_secs(2));
                        let mut cl = etcd_client::Client::connect([ep], Some(opts)).await?;
                        anyhow::Ok(!cl.get(key, None).await?.kvs().is_empty())
                    }
                    .await
                }
            };
            if matches!(ok, Ok(true)) {
                return Ok(began.elapsed());
            }
            if Instant::now() > deadline {
                bail!("member {} did not serve a read within 10 minutes", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Write `objects` creates and `events - objects` updates through member 0.
async fn load(sys: &Sys, args: &RestartBenchArgs) -> Result<Duration> {
    let began = Instant::now();
    let objects = args.objects.max(1);
    let total = args.events.max(objects);
    let value = vec![b'v'; args.value_size];
    let keel = match sys {
        Sys::Keel(c) => {
            let mut v = Vec::new();
            for i in 0..3 {
                v.push(c.kv(i).await?);
            }
            Some(Arc::new(v))
        }
        Sys::Etcd(_) => None,
    };
    let etcd = match sys {
        Sys::Etcd(c) => Some(c.connect(&c.endpoints()).await?),
        Sys::Keel(_) => None,
    };
    // Creates first, then updates, each phase split over the clients.
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    for (from, to, create) in [(0, objects, true), (objects, total, false)] {
        let per = (to - from).div_ceil(args.clients);
        let (keel, etcd, value) = (keel.clone(), etcd.clone(), value.clone());
        let first = first_error.clone();
        let (_, errors, _) = drive(args.clients, Duration::from_secs(24 * 3600), move |c, i| {
            let (keel, mut etcd, value) = (keel.clone(), etcd.clone(), value.clone());
            let first = first.clone();
            let res = async move {
                let n = from + c * per + i as usize;
                if i as usize >= per || n >= to {
                    return Ok(false);
                }
                let key = format!("/bench/restart/{:08}", n % objects);
                if let Some(k) = keel {
                    let kind = if create {
                        pb::operation::Kind::Create
                    } else {
                        pb::operation::Kind::Update
                    };
                    k[c % 3]
                        .clone()
                        .txn(pb::TxnRequest {
                            ops: vec![pb::Operation {
                                kind: kind as i32,
                                key,
                                value,
                                ..Default::default()
                            }],
                        })
                        .await?;
                } else if let Some(e) = etcd.as_mut() {
                    e.put(key, value, None).await?;
                }
                Ok(true)
            };
            async move {
                let r = res.await;
                if let Err(e) = &r {
                    first
                        .lock()
                        .unwrap()
                        .get_or_insert_with(|| format!("{e:#}"));
                }
                r
            }
        })
        .await;
        if errors > 0 {
            bail!(
                "{errors} writes failed while loading; the first: {}",
                first_error.lock().unwrap().clone().unwrap_or_default()
            );
        }
    }
    Ok(began.elapsed())
}

pub async fn run(args: &RestartBenchArgs) -> Result<Vec<Table>> {
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    let p = |m: &str| progress("restart", m);
    let sampler = Sampler::new();
    let mut table = Table::new(
        &format!(
            "time from start to the first linearizable read, {} objects and {} events of {} B",
            args.objects, args.events, args.value_size
        ),
        &[
            "system",
            "restart",
            "serves reads after ms",
            "load s",
            "disk MiB/member",
            "peak RSS MiB",
        ],
    );
    let mut tables = Vec::new();
    for system in ["keel", "etcd"] {
        let root = dir.path().join(system);
        std::fs::create_dir_all(&root)?;
        p(&format!(
            "starting a three-member {system} cluster under {}",
            root.display()
        ));
        let retain = args.events.max(args.objects).to_string();
        let mut sys = if system == "keel" {
            let mut extra = vec!["--retain-events", retain.as_str()];
            extra.extend(args.keel_args.iter().map(String::as_str));
            let c = KeelCluster::launch(&root, 3, &extra).await?;
            Sys::Keel(c)
        } else {
            let c = EtcdCluster::launch(&root, 3, &args.etcd).await?;
            Sys::Etcd(c)
        };
        sampler.reset();
        sampler.track(system, sys.pids());
        let snapshots = match &sys {
            Sys::Keel(c) if args.install_snapshot => {
                let leader = c.leader().await.context("no leader")?;
                install::track_leader(c, &sampler, leader);
                Some(leader)
            }
            _ => None,
        };
        p(&format!(
            "{system}: writing {} objects and {} events",
            args.objects, args.events
        ));
        let loaded = load(&sys, args).await?;
        p(&format!(
            "{system}: loaded in {:.1} s",
            loaded.as_secs_f64()
        ));
        let built = match (&sys, snapshots) {
            (Sys::Keel(c), Some(leader)) => Some(install::building(c, &sampler, leader)?),
            _ => None,
        };
        let key = "/bench/restart/00000000";
        let leader = sys.leader().await.context("no leader")?;
        let follower = (leader + 1) % 3;
        let disk = disk_bytes(&sys.dir(follower)) as f64 / (1 << 20) as f64;
        p(&format!(
            "{system}: kill -9 member {} (a follower) and start it again",
            follower + 1
        ));
        sys.kill(follower);
        sys.spawn(follower)?;
        sampler.track(system, sys.pids());
        let one = sys.first_read(follower, key).await?;
        p(&format!(
            "{system}: member {} serves reads after {:.0} ms",
            follower + 1,
            one.as_secs_f64() * 1000.0
        ));
        let rss = sampler.usage(system).peak_rss_mib;
        table.push(vec![
            json!(system),
            json!("one follower"),
            num(one.as_secs_f64() * 1000.0),
            num(loaded.as_secs_f64()),
            num(disk),
            num(rss),
        ]);
        p(&format!(
            "{system}: kill -9 every member and start them again"
        ));
        for i in 0..3 {
            sys.kill(i);
        }
        for i in 0..3 {
            sys.spawn(i)?;
        }
        sampler.track(system, sys.pids());
        let all = sys.first_read(0, key).await?;
        p(&format!(
            "{system}: the restarted cluster serves reads after {:.0} ms",
            all.as_secs_f64() * 1000.0
        ));
        table.push(vec![
            json!(system),
            json!("whole cluster"),
            num(all.as_secs_f64() * 1000.0),
            num(loaded.as_secs_f64()),
            num(disk),
            num(sampler.usage(system).peak_rss_mib),
        ]);
        if let (Sys::Keel(c), Some(built)) = (&mut sys, &built) {
            tables.push(install::measure(c, &sampler, built, p).await?);
        }
        drop(sys);
    }
    tables.insert(0, table);
    Ok(tables)
}
