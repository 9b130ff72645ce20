//! The `keel` binary: parses the command line and hands each subcommand to
//! its file under `cli/` (`server`, `up`, `member`, `kv`, `snapshot`, `restore`, `replay`, `archive`, `history`, `certs`, `secrets`, `bench`, `controllers`, `hollow-nodes`).

mod cli;

use std::ffi::OsString;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

/// Every `keel` process allocates through mimalloc: under the controllers'
/// and the API's many short-lived JSON values glibc's malloc and free were
/// about a third of a member's CPU, and its per-thread arenas held freed
/// memory (docs/BENCHMARKS.md, issue 14).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit`: its place in `mi_option_e`
/// (mimalloc.h, the same in v2 and v3), which the bindings do not name.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Pages freed in arenas committed up front (mimalloc's default on Linux)
/// stay in the resident set, as measured: a member at rest held about
/// 35 MiB more, and three members under the store suite's load about
/// 100 MiB more, at the same throughput (docs/BENCHMARKS.md, issue 10). The option is read when an arena is
/// reserved, and the first one is reserved by the first allocation, before
/// `main`; so it is set by a constructor the loader runs before any Rust
/// code allocates (what the `ctor` crate does, in four lines).
extern "C" fn commit_arenas_on_demand() {
    // SAFETY: `mi_option_set` only stores the value of a known option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ARENAS_ON_DEMAND: extern "C" fn() = commit_arenas_on_demand;

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "Keel: a Kubernetes-compatible control plane on a replicated event log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a store member. With no flags: a single-member cluster under ./keel-data.
    Server(Box<cli::config::ServerArgs>),
    /// Read and write keys through any member (the store's client API).
    Kv {
        #[command(flatten)]
        peer: cli::member::PeerClient,
        #[command(subcommand)]
        action: cli::kv::KvAction,
    },
    /// Start a local cluster of N members as separate processes on loopback
    /// ports counted from --base-port (data under <data-dir>/m1..mN, one
    /// shared CA) and write <data-dir>/kubeconfig with a context per member
    /// (keel-m1..keel-mN). Ctrl-C stops them all.
    Up(cli::up::UpArgs),
    /// Benchmarks that run Keel and a baseline side by side: runs the
    /// `keel-bench` binary built beside `keel` (`keel bench --help`).
    #[command(disable_help_flag = true)]
    Bench {
        /// The suite and its options, passed to keel-bench unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<OsString>,
    },
    /// Administer the cluster through any member.
    Member {
        #[command(flatten)]
        peer: cli::member::PeerClient,
        #[command(subcommand)]
        action: cli::member::MemberAction,
    },
    /// Backups of a running cluster at one revision: `save FILE`, `status
    /// FILE` (docs/DR.md).
    Snapshot {
        #[command(subcommand)]
        action: cli::snapshot::SnapshotAction,
    },
    /// Build a new member's data directory from a backup (`keel snapshot
    /// save`): a new cluster whose revisions continue above the backup's.
    Restore(cli::restore::RestoreArgs),
    /// The state of a data directory at a past revision (through its events
    /// and an event archive), offline, as a Kubernetes List in YAML or JSON.
    Replay(cli::replay::ReplayArgs),
    /// Every change of one object the cluster still knows (event archive
    /// and retained events): revision, time, operation, user and a diff.
    History(cli::history::HistoryArgs),
    /// What an event archive (--archive-dir) holds: `status DIR`, and `log
    /// DIR --prefix KEY` for the archived changes of keys.
    Archive {
        #[command(subcommand)]
        action: cli::archive::ArchiveAction,
    },
    /// Issue member, node and user certificates (and kubeconfigs) from the
    /// cluster CA.
    Certs(cli::certs::CertsArgs),
    /// Secrets encrypted at rest: `keel secrets rotate` re-encrypts every
    /// Secret under the current first key (docs/SECURITY.md).
    Secrets {
        #[command(subcommand)]
        action: cli::secrets::SecretsAction,
    },
    /// Run the controller manager (garbage collector, namespace controller)
    /// alone, against any Kubernetes API, leader-elected through a Lease.
    Controllers(cli::controllers::ControllersArgs),
    /// Simulated nodes (like Kubemark's hollow nodes): register N Nodes,
    /// renew their Leases, post their status and mark the pods bound to
    /// them Running and Ready, against any Kubernetes API.
    HollowNodes(cli::hollow::HollowArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A gRPC status carries the member's own words; show just those.
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("error: {} ({:?})", s.message(), s.code()),
                None => eprintln!("error: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        // Logs never mix with what commands print (`keel bench --json`, `keel kv`).
        .with_writer(std::io::stderr)
        .init();
    use clap::FromArgMatches;
    let matches = Cli::command().get_matches();
    match Cli::from_arg_matches(&matches)?.command {
        Command::Server(_) => {
            // The config file layers under the flags given, which only the
            // matches know.
            let sub = matches
                .subcommand_matches("server")
                .expect("the server subcommand was parsed");
            cli::server::run(cli::config::ServerArgs::resolve(sub)?).await
        }
        Command::Member { peer, action } => cli::member::run(peer, action).await,
        Command::Kv { peer, action } => cli::kv::run(peer, action).await,
        Command::Snapshot { action } => cli::snapshot::run(action).await,
        Command::Restore(args) => cli::restore::run(args),
        Command::Replay(args) => cli::replay::run(args).await,
        Command::Archive { action } => cli::archive::run(action),
        Command::History(args) => cli::history::run(args).await,
        Command::Certs(args) => cli::certs::run(args),
        Command::Up(args) => cli::up::run(args).await,
        Command::Secrets { action } => cli::secrets::run(action).await,
        Command::Bench { args } => cli::bench::run(args),
        Command::Controllers(args) => cli::controllers::run(args).await,
        Command::HollowNodes(args) => cli::hollow::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constructor ran before the first arena was reserved: without it
    /// mimalloc reads 2 (commit up front on Linux).
    #[test]
    fn arenas_commit_on_demand() {
        // SAFETY: reads an option's value.
        let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT) };
        assert_eq!(value, 0);
    }
}
