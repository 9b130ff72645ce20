//! What every controller is handed when the manager starts it: the API
//! client, the shared metrics, an event recorder in the controller's name
//! and the manager's identity. Controllers are started through
//! [`crate::manager`]'s table and run until their future is dropped
//! (leadership lost).

use std::sync::Arc;

use kube::Client;

use crate::events::Recorder;
use crate::metrics::Metrics;

/// One controller's handles. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    /// Events reported as this controller (`source.component`).
    pub recorder: Recorder,
    /// The controller's name in metrics, events and logs.
    pub name: &'static str,
    /// The manager's lease identity (`reportingInstance` of events).
    pub identity: String,
    /// How long Events live ([`crate::eventttl`]; `--event-ttl`).
    pub event_ttl: std::time::Duration,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        name: &'static str,
        identity: String,
    ) -> Context {
        Context {
            recorder: Recorder::new(client.clone(), name, identity.clone()),
            client,
            metrics,
            name,
            identity,
            event_ttl: crate::eventttl::DEFAULT_TTL,
        }
    }
}
