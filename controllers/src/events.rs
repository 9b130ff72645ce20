//! Kubernetes Events (`v1`) that controllers report about the objects they
//! act on, as `kubectl describe` and `kubectl get events` show them: an
//! event in the object's namespace (`default` for a cluster-scoped one)
//! naming the object, a reason and a message.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::Error;

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Involved {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

impl Involved {
    /// The object `obj` (a typed k8s-openapi object).
    pub fn of<K: kube::Resource<DynamicType = ()>>(obj: &K) -> Involved {
        let meta = obj.meta();
        Involved {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }
}

/// Posts events as one component (`source.component`, `reportingComponent`).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    instance: String,
}

impl Recorder {
    pub fn new(client: Client, component: &'static str, instance: String) -> Recorder {
        Recorder {
            client,
            component,
            instance,
        }
    }

    /// Report a `Warning` event with `reason` and `message` about `object`.
    pub async fn warning(
        &self,
        object: &Involved,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        self.report(object, "Warning", reason, message).await
    }

    /// Report a `Normal` event with `reason` and `message` about `object`.
    pub async fn normal(
        &self,
        object: &Involved,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        self.report(object, "Normal", reason, message).await
    }

    /// Report an event and only log when it cannot be written: an event is
    /// never worth failing a reconcile for.
    pub async fn publish(&self, object: &Involved, type_: &str, reason: &str, message: &str) {
        if let Err(e) = self.report(object, type_, reason, message).await {
            tracing::debug!(component = self.component, reason, error = %e, "event not recorded");
        }
    }

    async fn report(
        &self,
        object: &Involved,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        let ns = object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let now = Timestamp::now();
        let ev = Event {
            metadata: ObjectMeta {
                // Unique per report, as client-go's recorder names them.
                name: Some(format!("{}.{:x}", object.name, now.as_nanosecond())),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(object.api_version.clone()),
                kind: Some(object.kind.clone()),
                name: Some(object.name.clone()),
                namespace: object.namespace.clone(),
                uid: Some(object.uid.clone()),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(type_.to_string()),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: None,
            }),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &ev)
            .await?;
        Ok(())
    }
}
