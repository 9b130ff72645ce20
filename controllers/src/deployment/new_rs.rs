//! Finding or creating the deployment's new replica set (named by its
//! template hash, numbered one past the old revisions) and recording
//! that revision on the deployment; the rollout steps start here.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;

use super::plan::{self, Rs};
use super::progress::{self, PROGRESSING};
use super::revision::{self, HASH_LABEL};
use super::{Sync, rs_template, view};
use crate::replicaset::pods;
use crate::{Error, status_code};

impl Sync {
    /// Find the new replica set and bring its revision (and the
    /// deployment's) up to date; create it when `create` and missing.
    pub(super) async fn new_rs(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let (new, old) = self.split();
        let max_old = old
            .iter()
            .map(|i| revision::revision(self.sets[*i].metadata.annotations.as_ref()))
            .max()
            .unwrap_or(0);
        let rev = max_old + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(i) = new {
            let rs = &self.sets[i];
            let ann = revision::new_rs_annotations(
                rs.metadata.annotations.as_ref(),
                self.d.metadata.annotations.as_ref(),
                rev,
                None,
            );
            let ready_differs = rs
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0)
                != min_ready.unwrap_or(0);
            if ann.is_some() || ready_differs {
                let mut obj = rs.clone();
                if let Some(a) = ann {
                    obj.metadata.annotations = Some(a);
                }
                if let Some(s) = obj.spec.as_mut() {
                    s.min_ready_seconds = min_ready;
                }
                let name = obj.metadata.name.clone().unwrap_or_default();
                self.sets[i] = self
                    .rs_api
                    .replace(&name, &PostParams::default(), &obj)
                    .await?;
            }
            let rs_rev = revision::revision(self.sets[i].metadata.annotations.as_ref());
            self.set_deployment_revision(rs_rev).await?;
            let status = self.d.status.clone().unwrap_or_default();
            if progress::deadline(&self.d).is_some()
                && progress::condition(&status, PROGRESSING).is_none()
            {
                let mut status = status;
                let name = self.sets[i].metadata.name.clone().unwrap_or_default();
                progress::set_condition(
                    &mut status,
                    progress::new_condition(
                        PROGRESSING,
                        "True",
                        progress::FOUND_NEW_RS,
                        format!("Found new replica set \"{name}\""),
                        Timestamp::now(),
                    ),
                );
                self.put_status(status).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        self.create_new_rs(rev).await.map(Some)
    }

    async fn create_new_rs(&mut self, rev: i64) -> Result<usize, Error> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let name = self.d.metadata.name.clone().unwrap_or_default();
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = revision::template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        let tmeta = template.metadata.get_or_insert_with(Default::default);
        tmeta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let t = self.target()?;
        let replicas = if self.is_rolling() {
            let zero = Rs {
                name: String::new(),
                replicas: 0,
                available: 0,
                created: i64::MAX,
                desired: None,
                max: None,
            };
            let all: Vec<Rs> = self.sets.iter().map(view).chain([zero.clone()]).collect();
            plan::new_rs_replicas(&t, &all, &zero)
        } else {
            t.replicas
        };
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{name}-{hash}")),
                namespace: self.d.metadata.namespace.clone(),
                labels: tmeta.labels.clone(),
                annotations: revision::new_rs_annotations(
                    None,
                    self.d.metadata.annotations.as_ref(),
                    rev,
                    Some((t.replicas, t.replicas + t.max_surge)),
                ),
                owner_references: Some(vec![pods::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(e) if status_code(&e) == Some(409) => {
                // Ours already (a cache behind its own write), or a
                // collision with another template: bump collisionCount.
                let existing = self.rs_api.get(&rs_name).await?;
                let ours =
                    pods::controller_of(&existing.metadata).is_some_and(|r| r.uid == self.uid());
                if ours && revision::equal_ignoring_hash(&rs_template(&existing), &spec.template) {
                    self.sets.push(existing);
                    return Ok(self.sets.len() - 1);
                }
                let mut status = self.d.status.clone().unwrap_or_default();
                status.collision_count = Some(collisions.unwrap_or(0).saturating_add(1));
                self.put_status(status).await?;
                return Err(Error::Invalid(format!(
                    "replica set {rs_name} exists with another template: hash collision"
                )));
            }
            Err(e) => {
                let mut status = self.d.status.clone().unwrap_or_default();
                progress::set_condition(
                    &mut status,
                    progress::new_condition(
                        PROGRESSING,
                        "False",
                        "ReplicaSetCreateError",
                        format!(
                            "Failed to create new replica set \"{rs_name}\": {}",
                            crate::replicaset::api_message(&e)
                        ),
                        Timestamp::now(),
                    ),
                );
                let _ = self.put_status(status).await;
                return Err(e.into());
            }
        };
        self.ctx.metrics.created(self.ctx.name);
        if replicas > 0 {
            self.record_scaling(&format!(
                "Scaled up replica set {rs_name} from 0 to {replicas}"
            ))
            .await;
        }
        self.sets.push(created);
        self.set_deployment_revision(rev).await?;
        if progress::deadline(&self.d).is_some() {
            let mut status = self.d.status.clone().unwrap_or_default();
            progress::set_condition(
                &mut status,
                progress::new_condition(
                    PROGRESSING,
                    "True",
                    progress::NEW_RS_CREATED,
                    format!("Created new replica set \"{rs_name}\""),
                    Timestamp::now(),
                ),
            );
            self.put_status(status).await?;
        }
        Ok(self.sets.len() - 1)
    }

    /// Annotate the deployment with its new replica set's revision.
    async fn set_deployment_revision(&mut self, rev: i64) -> Result<(), Error> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(revision::REVISION))
            .cloned();
        if current.as_deref() == Some(rev.to_string().as_str()) {
            return Ok(());
        }
        let mut obj = self.d.clone();
        obj.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(revision::REVISION.into(), rev.to_string());
        let name = obj.metadata.name.clone().unwrap_or_default();
        self.d = self
            .d_api
            .replace(&name, &PostParams::default(), &obj)
            .await?;
        Ok(())
    }
}
