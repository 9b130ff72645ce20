//! The subcommands of the `keel` binary, one file each, and what they share.

pub mod api_client;
pub mod archive;
pub mod bench;
pub mod certs;
pub mod config;
pub mod controllers;
pub mod history;
pub mod hollow;
pub mod kv;
pub mod member;
pub mod progress;
pub mod replay;
pub mod restore;
pub mod secrets;
pub mod server;
pub mod snapshot;
pub mod up;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
