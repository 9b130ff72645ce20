//! `keel bench replay`: how fast a lost cluster comes back, Keel against
//! etcd in the same run. A one-member Keel (archiving to its own archive
//! directory) and a one-member etcd get the same objects; each is backed up
//! (`keel snapshot save`; etcd's Maintenance snapshot stream) and the backup
//! restored into a new data directory (`keel restore`; `etcdutl snapshot
//! restore`, or etcd 3.4's `etcdctl snapshot restore` where no `etcdutl` is
//! installed), each step timed. Then Keel takes more updates, waits until
//! its archive covers them, and the archive is read back in this process
//! ([`keel_store::archive::read_range`]) and replayed onto the backup by a
//! point-in-time restore (`keel restore --archive --to-revision`), both
//! reported in events per second against the goal of
//! [`GOAL_EVENTS_PER_SEC`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::member as pb;
use serde_json::{Value, json};

use super::cluster::{EtcdCluster, KeelCluster, keel_exe};
use super::{Table, disk_bytes, num, progress};

/// Events per second an archive must replay at.
pub const GOAL_EVENTS_PER_SEC: f64 = 200_000.0;

/// How far `keel restore` moves the restored cluster's revisions up.
const BUMP: &str = "1000";

/// Options of `keel bench replay`.
#[derive(clap::Args, Clone, Debug)]
pub struct ReplayBenchArgs {
    /// Objects (distinct keys) in the backup, written to both systems.
    #[arg(long, default_value_t = 150_000)]
    pub objects: usize,
    /// Updates written to Keel after the backup, replayed from its archive.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 4096)]
    pub value_bytes: usize,
    /// Concurrent clients while loading.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    #[command(flatten)]
    pub etcd: super::cluster::EtcdArgs,
    /// etcd's offline restore tool (`etcdutl`). Without it, `etcdutl` on
    /// PATH, else etcd 3.4's `etcdctl snapshot restore` on PATH; when
    /// neither is installed etcd's restore is reported as not measured.
    #[arg(long)]
    pub etcdutl: Option<PathBuf>,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn p(msg: &str) {
    progress("replay", msg);
}

/// Seconds as a number, rounded.
fn secs(d: Duration) -> Value {
    num(d.as_secs_f64())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The value of write `n`: its number, then filler (compressible, as in
/// the other suites), `bytes` long.
fn value(n: usize, bytes: usize) -> Vec<u8> {
    let mut v = vec![b'v'; bytes];
    let tag = format!("{n:012}:");
    let len = tag.len().min(bytes);
    v[..len].copy_from_slice(&tag.as_bytes()[..len]);
    v
}

fn key(n: usize) -> String {
    format!("/bench/replay/{n:08}")
}

/// Run `write(n)` for every `n` in `0..total` on `clients` concurrent
/// tasks; the first failure stops them all and is returned.
async fn fan_out<F, Fut>(total: usize, clients: usize, write: F) -> Result<Duration>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let began = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (write, next) = (write.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                write(n).await.with_context(|| format!("write {n}"))?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(began.elapsed())
}

/// Write `total` transactions of one operation each through Keel's Kv
/// service: creates of keys `0..total`, or updates of key `n % objects`.
/// Returns the time taken and the highest revision acknowledged.
async fn keel_writes(
    kv: &pb::kv_client::KvClient<tonic::transport::Channel>,
    args: &ReplayBenchArgs,
    total: usize,
    create: bool,
) -> Result<(Duration, u64)> {
    let last = Arc::new(AtomicU64::new(0));
    let (kv, last2, objects, bytes) = (
        kv.clone(),
        last.clone(),
        args.objects.max(1),
        args.value_bytes,
    );
    let took = fan_out(total, args.clients, move |n| {
        let (mut kv, last) = (kv.clone(), last2.clone());
        async move {
            let kind = if create {
                pb::operation::Kind::Create
            } else {
                pb::operation::Kind::Update
            };
            let reply = kv
                .txn(pb::TxnRequest {
                    ops: vec![pb::Operation {
                        kind: kind as i32,
                        key: key(n % objects),
                        value: value(n, bytes),
                        ..Default::default()
                    }],
                })
                .await?
                .into_inner();
            last.fetch_max(reply.revision, Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    Ok((took, last.load(Ordering::Relaxed)))
}

/// Run `program args`, timed; its stdout, or an error with its stderr.
async fn timed(
    program: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> Result<(Duration, String)> {
    let began = Instant::now();
    let out = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", program.display()))?;
    let took = began.elapsed();
    let shown = || {
        format!(
            "{} {}",
            program.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            shown(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// `program` as given (a path) or found on PATH.
fn on_path(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// etcd's offline restore: the program, the arguments before the file, a
/// description for the table.
fn etcd_restore_tool(args: &ReplayBenchArgs) -> Option<(PathBuf, Vec<&'static str>, &'static str)> {
    let named = args
        .etcdutl
        .clone()
        .unwrap_or_else(|| PathBuf::from("etcdutl"));
    if let Some(exe) = on_path(&named) {
        return Some((exe, vec!["snapshot", "restore"], "etcdutl snapshot restore"));
    }
    if args.etcdutl.is_none()
        && let Some(exe) = on_path(Path::new("etcdctl"))
    {
        // etcd 3.4 has no etcdutl: its etcdctl restores offline (3.5 moved
        // the same code to etcdutl).
        return Some((
            exe,
            vec!["snapshot", "restore"],
            "etcdctl snapshot restore (no etcdutl)",
        ));
    }
    None
}

/// "1.23 0.98 0.70": the 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn goal(events_per_sec: f64) -> Value {
    json!(if events_per_sec >= GOAL_EVENTS_PER_SEC {
        "met"
    } else {
        "missed"
    })
}

/// What the Keel half measured.
struct KeelReport {
    load: Duration,
    save: Duration,
    backup_bytes: u64,
    backup_objects: u64,
    restore: Duration,
    updates: Duration,
    archived_after: Duration,
    read_events: u64,
    read_bytes: u64,
    read: Duration,
    archive_bytes: u64,
    segments: usize,
    replayed: u64,
    pitr: Duration,
}

async fn keel(root: &Path, args: &ReplayBenchArgs) -> Result<KeelReport> {
    let exe = keel_exe()?;
    let archive = root.join("archive");
    p(&format!(
        "starting a one-member Keel under {} (archive {})",
        root.display(),
        archive.display()
    ));
    let archive_arg = archive.display().to_string();
    let cluster = KeelCluster::launch(
        &root.join("member"),
        1,
        &[
            "--controllers=false",
            "--archive-dir",
            &archive_arg,
            "--archive-max-delay-s",
            "1",
        ],
    )
    .await?;
    let member = &cluster.members[0];
    let kv = cluster.kv(0).await?;
    p(&format!(
        "keel: writing {} objects of {} B",
        args.objects, args.value_bytes
    ));
    let (load, backup_revision) = keel_writes(&kv, args, args.objects, true).await?;
    p(&format!(
        "keel: loaded in {:.1} s (revision {backup_revision})",
        load.as_secs_f64()
    ));

    let backup = root.join("keel.backup");
    let (save, out) = timed(
        &exe,
        &[
            "snapshot".as_ref(),
            "save".as_ref(),
            backup.as_os_str(),
            "--addr".as_ref(),
            member.peer.as_ref(),
            "--data-dir".as_ref(),
            member.dir.as_os_str(),
        ],
        &[],
    )
    .await?;
    let backup_bytes = std::fs::metadata(&backup)?.len();
    // "saved FILE: revision R, N objects, B bytes, crc32 C": the loaded
    // objects and those the API server wrote at start (namespaces, ...).
    let backup_objects = out
        .split(", ")
        .find_map(|part| part.strip_suffix(" objects"))
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("keel snapshot save did not say what it saved:\n{out}"))?;
    p(&format!(
        "keel: {} in {:.2} s",
        out.trim(),
        save.as_secs_f64()
    ));
    let (restore, _) = timed(
        &exe,
        &[
            "restore".as_ref(),
            backup.as_os_str(),
            "--data-dir".as_ref(),
            root.join("restored").as_os_str(),
            "--bump-revision".as_ref(),
            BUMP.as_ref(),
        ],
        &[],
    )
    .await?;
    p(&format!(
        "keel: restored {backup_objects} objects in {:.2} s",
        restore.as_secs_f64()
    ));
    std::fs::remove_dir_all(root.join("restored"))?;

    p(&format!("keel: writing {} updates", args.events));
    let (updates, last) = keel_writes(&kv, args, args.events, false).await?;
    let last = last.max(backup_revision);
    p(&format!(
        "keel: updated in {:.1} s (revision {last}); waiting for the archive to cover it",
        updates.as_secs_f64()
    ));
    let waiting = Instant::now();
    let deadline = waiting + Duration::from_secs(600);
    let (from, segments) = loop {
        let entries = keel_store::archive::open(&archive)?;
        if let Some((from, to)) = keel_store::archive::span(&entries)
            && to >= last
        {
            let segments = entries
                .iter()
                .filter(|e| matches!(e, keel_store::archive::Entry::Segment(_)))
                .count();
            break (from, segments);
        }
        if Instant::now() > deadline {
            bail!(
                "the archive at {} does not reach revision {last} after 10 minutes (it covers {:?})",
                archive.display(),
                keel_store::archive::span(&entries)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let archived_after = waiting.elapsed();
    // The member is done: nothing else uses the two cores while the archive
    // is read. Its segments are synced files, so kill -9 loses none.
    drop(kv);
    drop(cluster);
    let archive_bytes = disk_bytes(&archive);

    p(&format!(
        "keel: reading revisions {} to {last} from the archive ({segments} segments, {:.1} MiB)",
        from + 1,
        mib(archive_bytes)
    ));
    let dir = archive.clone();
    let (read_events, read_bytes, read) = tokio::task::spawn_blocking(move || {
        let (mut events, mut bytes) = (0u64, 0u64);
        let began = Instant::now();
        keel_store::archive::read_range(&dir, from, last, |ev| {
            events += 1;
            bytes += (ev.key.len()
                + ev.value.as_ref().map_or(0, |v| v.key.len() + v.value.len())
                + ev.prev.as_ref().map_or(0, |v| v.key.len() + v.value.len()))
                as u64;
            Ok(())
        })?;
        anyhow::Ok((events, bytes, began.elapsed()))
    })
    .await??;
    p(&format!(
        "keel: read {read_events} archived events in {:.2} s",
        read.as_secs_f64()
    ));

    let to = last.to_string();
    let (pitr, out) = timed(
        &exe,
        &[
            "restore".as_ref(),
            backup.as_os_str(),
            "--archive".as_ref(),
            archive.as_os_str(),
            "--to-revision".as_ref(),
            to.as_ref(),
            "--data-dir".as_ref(),
            root.join("pitr").as_os_str(),
            "--bump-revision".as_ref(),
            BUMP.as_ref(),
        ],
        &[],
    )
    .await?;
    // "replayed N archived events onto the backup of revision R"
    let replayed = out
        .lines()
        .find_map(|l| l.strip_prefix("replayed "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("keel restore --archive did not say what it replayed:\n{out}"))?;
    p(&format!(
        "keel: point-in-time restore to revision {last} replayed {replayed} events in {:.2} s",
        pitr.as_secs_f64()
    ));
    std::fs::remove_dir_all(root.join("pitr"))?;
    Ok(KeelReport {
        load,
        save,
        backup_bytes,
        backup_objects,
        restore,
        updates,
        archived_after,
        read_events,
        read_bytes,
        read,
        archive_bytes,
        segments,
        replayed,
        pitr,
    })
}

/// What the etcd half measured; the restore is `None` without a tool.
struct EtcdReport {
    load: Duration,
    save: Duration,
    backup_bytes: u64,
    restore: Option<(Duration, &'static str)>,
}

async fn etcd(root: &Path, args: &ReplayBenchArgs) -> Result<EtcdReport> {
    p(&format!(
        "starting a one-member etcd under {}",
        root.display()
    ));
    let cluster = EtcdCluster::launch(&root.join("member"), 1, &args.etcd).await?;
    let client = cluster.connect(&cluster.endpoints()).await?;
    p(&format!(
        "etcd: writing {} objects of {} B",
        args.objects, args.value_bytes
    ));
    let bytes = args.value_bytes;
    let c = client.clone();
    let load = fan_out(args.objects, args.clients, move |n| {
        let mut c = c.clone();
        async move {
            c.put(key(n), value(n, bytes), None).await?;
            Ok(())
        }
    })
    .await?;
    p(&format!("etcd: loaded in {:.1} s", load.as_secs_f64()));

    // etcd's backup: the Maintenance snapshot stream into a file, synced.
    let backup = root.join("etcd.snapshot");
    let began = Instant::now();
    let mut c = client.clone();
    let mut stream = c.snapshot().await.context("etcd snapshot")?;
    let file = std::fs::File::create(&backup)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &file);
    while let Some(piece) = stream.message().await.context("etcd snapshot stream")? {
        std::io::Write::write_all(&mut out, piece.blob())?;
    }
    std::io::Write::flush(&mut out)?;
    drop(out);
    file.sync_all()?;
    let save = began.elapsed();
    let backup_bytes = std::fs::metadata(&backup)?.len();
    p(&format!(
        "etcd: saved a snapshot of {:.1} MiB in {:.2} s",
        mib(backup_bytes),
        save.as_secs_f64()
    ));
    drop(client);
    drop(cluster);

    let restore = match etcd_restore_tool(args) {
        Some((exe, pre, what)) => {
            let data = root.join("restored");
            let mut argv: Vec<&std::ffi::OsStr> = pre.iter().map(|a| a.as_ref()).collect();
            argv.extend([backup.as_os_str(), "--data-dir".as_ref(), data.as_os_str()]);
            let (took, _) = timed(&exe, &argv, &[("ETCDCTL_API", "3")]).await?;
            p(&format!("etcd: {what} in {:.2} s", took.as_secs_f64()));
            std::fs::remove_dir_all(&data)?;
            Some((took, what))
        }
        None => {
            p("etcd: no etcdutl (nor etcdctl) on PATH: its restore is not measured");
            None
        }
    };
    Ok(EtcdReport {
        load,
        save,
        backup_bytes,
        restore,
    })
}

pub async fn run(args: &ReplayBenchArgs) -> Result<Vec<Table>> {
    if args.objects == 0 {
        bail!("--objects must be positive");
    }
    let load_before = load_average();
    let began = Instant::now();
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    let k = keel(&dir.path().join("keel"), args).await?;
    let e = etcd(&dir.path().join("etcd"), args).await?;

    let mut restore = Table::new(
        &format!(
            "backup and restore of {} objects of {} B, one member",
            args.objects, args.value_bytes
        ),
        &[
            "system",
            "load s",
            "backup s",
            "objects in backup",
            "backup MiB",
            "restore s",
            "restored objects/s",
            "restore by",
        ],
    );
    restore.push(vec![
        json!("keel"),
        secs(k.load),
        secs(k.save),
        json!(k.backup_objects),
        num(mib(k.backup_bytes)),
        secs(k.restore),
        num(k.backup_objects as f64 / k.restore.as_secs_f64()),
        json!(format!("keel restore --bump-revision {BUMP}")),
    ]);
    let (etcd_restore, etcd_rate, etcd_tool) = match e.restore {
        Some((took, what)) => (
            secs(took),
            num(args.objects as f64 / took.as_secs_f64()),
            json!(what),
        ),
        None => (json!("not measured (no etcdutl)"), Value::Null, json!("-")),
    };
    restore.push(vec![
        json!("etcd"),
        secs(e.load),
        secs(e.save),
        json!(args.objects),
        num(mib(e.backup_bytes)),
        etcd_restore,
        etcd_rate,
        etcd_tool,
    ]);

    let mut replay = Table::new(
        &format!(
            "archive replay (Keel): {} updates after the backup, goal {GOAL_EVENTS_PER_SEC:.0} events/s",
            args.events
        ),
        &["step", "events", "s", "events/s", "MiB/s", "goal"],
    );
    let read_rate = k.read_events as f64 / k.read.as_secs_f64();
    replay.push(vec![
        json!("read_range in-process, every archived event"),
        json!(k.read_events),
        secs(k.read),
        num(read_rate),
        num(mib(k.read_bytes) / k.read.as_secs_f64()),
        goal(read_rate),
    ]);
    let pitr_rate = k.replayed as f64 / k.pitr.as_secs_f64();
    replay.push(vec![
        json!("keel restore --archive --to-revision (backup + replay)"),
        json!(k.replayed),
        secs(k.pitr),
        num(pitr_rate),
        Value::Null,
        goal(pitr_rate),
    ]);

    let mut run = Table::new(
        "the archive and the run",
        &[
            "updates s",
            "archived after s",
            "segments",
            "archive MiB",
            "cores",
            "load avg at start",
            "load avg at end",
            "run s",
        ],
    );
    run.push(vec![
        secs(k.updates),
        secs(k.archived_after),
        json!(k.segments),
        num(mib(k.archive_bytes)),
        json!(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        ),
        json!(load_before),
        json!(load_average()),
        secs(began.elapsed()),
    ]);
    Ok(vec![restore, replay, run])
}
