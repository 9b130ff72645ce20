//! The Job's pod writes: pods made from the template (owner reference,
//! tracking finalizer, completion index for Indexed Jobs) in slow-start
//! batches, deletions with a uid precondition, and the release of the
//! tracking finalizer. Each write is counted in the metrics and recorded
//! as the Event Kubernetes records for it.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;

use super::COMPLETION_INDEX;
use super::tracking::FINALIZER;
use crate::Error;
use crate::context::Context;
use crate::events::Involved;
use crate::workload::{self, controller_ref, not_found};

/// Remove the tracking finalizer (a strategic merge patch that leaves any
/// other finalizer alone). A pod already gone needs nothing.
pub async fn remove_finalizer(ctx: &Context, api: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [FINALIZER]}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => {
            ctx.metrics.patched(ctx.name);
            Ok(())
        }
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Delete an active pod; `true` when this call deleted it.
pub async fn delete_pod(
    ctx: &Context,
    api: &Api<Pod>,
    name: &str,
    uid: Option<String>,
    involved: &Involved,
) -> Result<bool, Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            ctx.metrics.deleted(ctx.name);
            ctx.recorder
                .publish(
                    involved,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                )
                .await;
            Ok(true)
        }
        Err(e) if not_found(&e) || workload::conflict(&e) => Ok(false),
        Err(e) => {
            ctx.recorder
                .publish(
                    involved,
                    "Warning",
                    "FailedDelete",
                    &format!("Error deleting: {e}"),
                )
                .await;
            Err(e.into())
        }
    }
}

/// Create the pods for `which` (completion indexes, or none) in slow-start
/// batches ([`workload::create_in_batches`]). Returns how many were created.
pub async fn create_pods(
    ctx: &Context,
    api: &Api<Pod>,
    job: &Job,
    which: &[Option<i32>],
    involved: &Involved,
) -> Result<usize, Error> {
    let pods = which
        .iter()
        .take(workload::MAX_BATCH)
        .map(|ix| new_pod(job, *ix))
        .collect();
    workload::create_in_batches(ctx, api, pods, involved).await
}

/// A pod of `job` from its template: owned by the Job, with the tracking
/// finalizer, and for Indexed Jobs the completion index (annotation, label,
/// `JOB_COMPLETION_INDEX` in every container, hostname `<job>-<index>`).
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut prefix = match index {
        Some(i) => format!("{job_name}-{i}-"),
        None => format!("{job_name}-"),
    };
    // Room for the five random characters the API appends.
    if prefix.len() > 58 {
        prefix.truncate(58);
    }
    if let Some(i) = index {
        annotations.insert(COMPLETION_INDEX.into(), i.to_string());
        labels.insert(COMPLETION_INDEX.into(), i.to_string());
        if spec.hostname.is_none() {
            let mut host = format!("{job_name}-{i}");
            host.truncate(63);
            spec.hostname = Some(host.trim_end_matches('-').to_string());
        }
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
        };
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for c in containers {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == env.name) {
                vars.push(env.clone());
            }
        }
    }
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    finalizers.push(FINALIZER.into());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec as Spec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    #[test]
    fn indexed_pods_carry_their_index_everywhere_kubernetes_puts_it() {
        let job = Job {
            metadata: ObjectMeta {
                name: Some("work".into()),
                namespace: Some("ns".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            spec: Some(Spec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("job-name".to_string(), "work".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        };
        let pod = new_pod(&job, Some(3));
        let meta = &pod.metadata;
        assert_eq!(meta.generate_name.as_deref(), Some("work-3-"));
        assert_eq!(meta.annotations.as_ref().unwrap()[COMPLETION_INDEX], "3");
        assert_eq!(meta.labels.as_ref().unwrap()[COMPLETION_INDEX], "3");
        assert_eq!(meta.labels.as_ref().unwrap()["job-name"], "work");
        assert_eq!(
            meta.finalizers.as_deref(),
            Some(&[FINALIZER.to_string()][..])
        );
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Job", "u-1"));
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-3"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        let plain = new_pod(&job, None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("work-"));
        assert!(plain.metadata.annotations.is_none());
        assert!(plain.spec.unwrap().hostname.is_none());
    }
}
