//! The endpoints controller (not written yet: it waits, doing nothing).

use crate::Error;
use crate::context::Context;

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "endpoints";

/// Run until the future is dropped (leadership lost).
pub async fn run(_ctx: Context) -> Result<(), Error> {
    std::future::pending().await
}
