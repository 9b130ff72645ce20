//! `keel bench …`: runs the `keel-bench` binary that is built beside `keel`
//! (its own crate, so `keel` does not link the etcd client the baseline needs).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use anyhow::{Context, Result, bail};

/// Replace this process with `keel-bench <args>`; returns only on failure.
pub fn run(args: Vec<OsString>) -> Result<()> {
    let me = std::env::current_exe().context("finding the keel executable")?;
    let bench = me.with_file_name("keel-bench");
    if !bench.exists() {
        bail!(
            "keel bench runs keel-bench, which is not built: {} is missing \
             (build it beside keel: cargo build --workspace, or cargo build -p keel-bench; \
             add --release for numbers worth reading)",
            bench.display()
        );
    }
    let err = std::process::Command::new(&bench).args(args).exec();
    Err(err).with_context(|| format!("running {}", bench.display()))
}
