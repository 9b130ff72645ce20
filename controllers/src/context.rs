//! What every controller is handed when the manager starts it: the API
//! client, the shared metrics, an event recorder in the controller's name
//! and the manager's identity. Controllers are started through
//! [`crate::manager`]'s table and run until their future is dropped
//! (leadership lost).

use std::sync::Arc;
use std::time::Duration;

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
    /// Options of individual controllers (the manager's command line).
    pub settings: Settings,
}

/// Options of individual controllers, as kube-controller-manager's flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// nodelifecycle: how long a node may post no heartbeat (Lease or
    /// status) before it is marked Unknown (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// eventttl: how long Events live (`--event-ttl`).
    pub event_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            node_monitor_grace_period: Duration::from_secs(40),
            event_ttl: crate::eventttl::DEFAULT_TTL,
        }
    }
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
            settings: Settings::default(),
        }
    }
}
