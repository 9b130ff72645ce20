//! `keel restore`: a new member's data directory from a backup file
//! (`keel snapshot save`), for a new cluster of one member or of several
//! (run once per member, with the same `--members` and bump, each into its
//! own directory). See docs/DR.md.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use anyhow::{Context, Result};
use keel_store::backup::{self, Replay, ReplayTo, RestorePlan};

use super::progress::{Progress, Unit};

/// Kubernetes' own advice for etcd restores (`--bump-revision 1000000000`):
/// far more writes than a cluster makes between its last backup and its loss.
pub const DEFAULT_BUMP: u64 = 1_000_000_000;

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup file.
    pub file: PathBuf,
    /// The new member's data directory: absent or empty.
    #[arg(long, default_value = "./keel-data")]
    pub data_dir: PathBuf,
    /// The new cluster's members, `id=host:port,...` (their peer addresses).
    /// Without it, a one-member cluster of --id at --peer-addr.
    #[arg(long)]
    pub members: Option<String>,
    /// The member id of a one-member cluster.
    #[arg(long, default_value_t = 1)]
    pub id: u64,
    /// The peer address of a one-member cluster.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub peer_addr: String,
    /// How far the new cluster's revisions (resourceVersions) jump above the
    /// backup's: more than the old cluster can have written after the
    /// backup, so no resourceVersion is ever handed out twice.
    #[arg(long, default_value_t = DEFAULT_BUMP)]
    pub bump_revision: u64,
    /// Mixed into the new cluster's id: the id is derived from the backup,
    /// the restore point, --bump-revision, the members and this token, so
    /// that every member restored with the same plan gets the same id and
    /// old members are refused. Give two restores of the same backup to the
    /// same point different tokens to keep their members apart.
    #[arg(long, default_value = keel_store::member::DEFAULT_CLUSTER_TOKEN)]
    pub cluster_token: String,
    /// The old cluster's encryption configuration (its
    /// `<data-dir>/pki/encryption-config.yaml`), copied into the new data
    /// directory: without it the restored cluster cannot read the Secrets
    /// it stored encrypted, since a new cluster derives a new key.
    #[arg(long)]
    pub encryption_config: Option<PathBuf>,
    /// An event archive (a member's --archive-dir) to replay onto the
    /// backup: point-in-time recovery, with --to-revision or --to-time.
    #[arg(long, requires = "to")]
    pub archive: Option<PathBuf>,
    /// Restore the state at exactly this revision (resourceVersion).
    #[arg(long, group = "to", requires = "archive")]
    pub to_revision: Option<u64>,
    /// Restore the state as of this time (RFC 3339, e.g.
    /// 2026-12-01T20:15:00Z): every archived change made at or before it,
    /// none after.
    #[arg(long, group = "to", requires = "archive")]
    pub to_time: Option<String>,
}

fn replay(args: &RestoreArgs) -> Result<Option<Replay>> {
    let Some(archive) = &args.archive else {
        return Ok(None);
    };
    let to = match (args.to_revision, &args.to_time) {
        (Some(r), _) => ReplayTo::Revision(r),
        (None, Some(t)) => {
            let at = chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("--to-time {t:?} is not an RFC 3339 time"))?;
            ReplayTo::Time(
                u64::try_from(at.timestamp_millis()).context("--to-time is before 1970")?,
            )
        }
        (None, None) => anyhow::bail!("--archive needs --to-revision or --to-time"),
    };
    Ok(Some(Replay {
        archive: archive.clone(),
        to,
    }))
}

pub fn run(args: RestoreArgs) -> Result<()> {
    let members = match &args.members {
        Some(list) => super::server::parse_members(list)?,
        None => [(args.id, args.peer_addr.clone())].into(),
    };
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let input =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let plan = RestorePlan {
        data_dir: args.data_dir.clone(),
        members: members.clone(),
        bump: args.bump_revision,
        cluster_token: args.cluster_token.clone(),
        replay: replay(&args)?,
    };
    // The backup does not say how many objects it holds before its trailer:
    // count the objects, and let the file's size stand for the total.
    let mut progress = Progress::new("restoring", Unit::Objects, None);
    let restored = backup::restore(BufReader::new(input), &plan, &mut |n| progress.update(n))
        .with_context(|| {
            format!(
                "restoring {} ({size} bytes) into {}",
                args.file.display(),
                args.data_dir.display()
            )
        })?;
    progress.finish(restored.objects);
    let secrets = restored
        .by_prefix
        .get("/registry/core/secrets")
        .copied()
        .unwrap_or(0);
    match &args.encryption_config {
        Some(config) => {
            let text =
                std::fs::read(config).with_context(|| format!("reading {}", config.display()))?;
            let to = keel_apiserver::encryption::default::path(&args.data_dir);
            std::fs::create_dir_all(to.parent().expect("pki/ has a parent"))?;
            keel_apiserver::pki::write_private(&to, &text)
                .with_context(|| format!("writing {}", to.display()))?;
            println!("encryption configuration copied to {}", to.display());
        }
        None if secrets > 0 => eprintln!(
            "warning: the backup holds {secrets} Secrets; unless the new cluster is started \
             with the old cluster's encryption configuration (--encryption-config here, or \
             keel server --encryption-provider-config), those stored encrypted cannot be read"
        ),
        None => {}
    }
    if plan.replay.is_some() {
        println!(
            "replayed {} archived events onto the backup of revision {}",
            restored.replayed, restored.header.revision
        );
    }
    println!(
        "restored {} objects of revision {} into {}; the new cluster continues at revision {} \
         (everything before it is compacted)",
        restored.objects,
        restored.state_revision,
        args.data_dir.display(),
        restored.revision
    );
    let ids: Vec<String> = members
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    println!("members: {}", ids.join(","));
    println!(
        "cluster id: {} (a new cluster: members of the old one are refused)",
        restored.cluster_id
    );
    if members.len() == 1 {
        let (id, addr) = members.iter().next().expect("one member");
        println!(
            "start it with: keel server --id {id} --peer-addr {addr} --data-dir {}",
            args.data_dir.display()
        );
    } else {
        println!(
            "start each member with: keel server --id <ID> --peer-addr <its address> \
             --data-dir <its restored directory> --ca-dir <a CA directory shared by all>"
        );
    }
    Ok(())
}
