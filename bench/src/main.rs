//! `keel-bench` (also reached as `keel bench`): parses the suite and its
//! options, runs it and prints its tables or one JSON document.

use anyhow::Result;
use clap::{Parser, Subcommand};
use keel_bench::{
    api, disk, failover, machine, print_tables, replay, restart, scale, store, watch,
};

#[derive(Parser)]
#[command(
    name = "keel bench",
    bin_name = "keel bench",
    version,
    about = "Benchmarks that run Keel and a baseline side by side"
)]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand)]
enum Suite {
    /// Puts, reads and a 90/10 mix against three Keel members and three etcd members.
    Store(store::StoreBenchArgs),
    /// ConfigMap create, get, list, update and delete through the REST API of three members.
    Api(api::ApiBenchArgs),
    /// Watch delivery latency with 1,000s of watchers: Keel's API and store against etcd.
    Watch(watch::WatchBenchArgs),
    /// Nodes and pods at scale: LIST latencies, memory and disk, against etcd holding the same objects.
    Scale(scale::ScaleBenchArgs),
    /// Time to the first acknowledged write after kill -9 of the leader, against etcd.
    Failover(failover::FailoverBenchArgs),
    /// Time until a restarted member with a long history serves reads, against etcd.
    Restart(restart::RestartBenchArgs),
    /// Backup, restore and archive replay (point-in-time restore) of a member, against etcd's snapshots.
    Replay(replay::ReplayBenchArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        // Logs never mix with the results (`--json` goes to stdout).
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().suite).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(suite: Suite) -> Result<()> {
    match suite {
        Suite::Store(args) => {
            let report = store::store(&args).await?;
            if args.json {
                // The store suite's JSON lists its steps as objects (`results`)
                // and the disk's ceiling beside them (`disk`).
                let doc = serde_json::json!({"suite": "store", "machine": machine(),
                    "etcd": args.etcd.transport(),
                    "disk": report.disk, "results": report.results});
                println!("{}", serde_json::to_string_pretty(&doc)?);
                Ok(())
            } else {
                let tables = [
                    disk::table(&report.disk),
                    store::table(&report.results, args.duration, &args.etcd),
                ];
                print_tables("store", &tables, false)
            }
        }
        Suite::Api(args) => print_tables("api", &api::run(&args).await?, args.json),
        Suite::Watch(args) => print_tables("watch", &watch::run(&args).await?, args.json),
        Suite::Scale(args) => print_tables("scale", &scale::run(&args).await?, args.json),
        Suite::Failover(args) => print_tables("failover", &failover::run(&args).await?, args.json),
        Suite::Restart(args) => print_tables("restart", &restart::run(&args).await?, args.json),
        Suite::Replay(args) => print_tables("replay", &replay::run(&args).await?, args.json),
    }
}
