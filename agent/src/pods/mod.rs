//! What a node does with the pods bound to it, as pure functions of the
//! observed pod and the time: [`plan`] decides the next step (confirm a
//! deletion, write a status, or wait until a time), [`status`] builds the
//! statuses the kubelet writes (Running and Ready, terminated, restarted).
//!
//! Hollow nodes run no containers; annotations on a pod say how its
//! "containers" behave (documented in docs/CONTROLLERS.md, "nodes"):
//!
//! - [`EXIT_AFTER`] `hollow.keel.dev/exit-after: <seconds>`: the containers
//!   exit that long after they started, with [`EXIT_CODE`]
//!   `hollow.keel.dev/exit-code: <n>` (default 0). Under `restartPolicy:
//!   Never` the pod ends Succeeded (0) or Failed; under `OnFailure` a
//!   non-zero exit restarts the containers (`restartCount` + 1) and a zero
//!   exit ends Succeeded; under `Always` they restart either way.
//! - [`READY_AFTER`] `hollow.keel.dev/ready-after: <seconds>`: the pod turns
//!   Ready that long after its containers started (a readiness probe that
//!   passes late), instead of at once.

pub mod plan;
pub mod status;

pub use plan::{Action, Plan, plan};

/// Seconds after start at which the containers exit.
pub const EXIT_AFTER: &str = "hollow.keel.dev/exit-after";
/// The exit code of the containers (default 0).
pub const EXIT_CODE: &str = "hollow.keel.dev/exit-code";
/// Seconds after start at which the pod becomes Ready.
pub const READY_AFTER: &str = "hollow.keel.dev/ready-after";
