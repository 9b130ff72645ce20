//! `DeleteOptions` as kube-apiserver reads them: from the request body when
//! there is one, otherwise from the query (never both: a body makes the
//! query's options count for nothing), then validated as
//! `ValidateDeleteOptions` does, with its 422 wording.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, Cause};
use crate::request::Query;

/// The three propagation policies, in the order Kubernetes lists them.
const POLICIES: [&str; 3] = ["Foreground", "Background", "Orphan"];

/// What a DELETE asks for beyond the object's name.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOptions {
    /// `kind`, when the body names one: only `DeleteOptions` is accepted.
    #[serde(default)]
    kind: Option<String>,
    /// Seconds the object (a pod) gets before it is removed.
    #[serde(default)]
    pub grace_period_seconds: Option<i64>,
    /// The object's uid and resourceVersion must still be these.
    #[serde(default)]
    pub preconditions: Option<Preconditions>,
    /// The deprecated form of `propagationPolicy` (true: Orphan; false:
    /// Foreground on a namespace, no finalizer on other objects).
    #[serde(default)]
    pub orphan_dependents: Option<bool>,
    /// `Foreground`, `Background` or `Orphan`.
    #[serde(default)]
    pub propagation_policy: Option<String>,
    /// `["All"]`: decide and answer as for real, write nothing.
    #[serde(default)]
    pub dry_run: Option<Vec<String>>,
}

/// `DeleteOptions.preconditions`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
}

/// A propagation policy once the options are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Foreground,
    Background,
    Orphan,
}

impl DeleteOptions {
    /// The options of a DELETE: its body (JSON) when it has one, else its
    /// query; then validated.
    pub fn from_request(body: &[u8], q: &Query) -> Result<DeleteOptions, ApiError> {
        let opts = if body.iter().all(u8::is_ascii_whitespace) {
            DeleteOptions::from_query(q)?
        } else {
            DeleteOptions::from_body(body)?
        };
        opts.validate()?;
        Ok(opts)
    }

    fn from_body(body: &[u8]) -> Result<DeleteOptions, ApiError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!("the request body is not valid DeleteOptions: {e}"))
        })?;
        // `null` decodes to no options, as into Kubernetes' struct.
        if v.is_null() {
            return Ok(DeleteOptions::default());
        }
        if !v.is_object() {
            return Err(ApiError::BadRequest(
                "the request body must be a JSON object describing DeleteOptions".into(),
            ));
        }
        let opts: DeleteOptions = serde_path_to_error::deserialize(&v).map_err(|e| {
            ApiError::BadRequest(format!(
                "the request body is not valid DeleteOptions: {}: {}",
                e.path(),
                e.inner()
            ))
        })?;
        if let Some(kind) = opts.kind.as_deref().filter(|k| *k != "DeleteOptions") {
            return Err(ApiError::BadRequest(format!(
                "the request body is a {kind}; a DELETE takes DeleteOptions"
            )));
        }
        Ok(opts)
    }

    fn from_query(q: &Query) -> Result<DeleteOptions, ApiError> {
        let present = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let grace_period_seconds = present("gracePeriodSeconds")
            .map(|v| {
                v.parse::<i64>().map_err(|e| {
                    ApiError::BadRequest(format!("invalid value {v:?} for gracePeriodSeconds: {e}"))
                })
            })
            .transpose()?;
        // Kubernetes' query booleans: 0, f and false (any case) are false,
        // anything else true.
        let orphan_dependents = present("orphanDependents")
            .map(|v| !(v == "0" || v.eq_ignore_ascii_case("f") || v.eq_ignore_ascii_case("false")));
        Ok(DeleteOptions {
            kind: None,
            grace_period_seconds,
            preconditions: None,
            orphan_dependents,
            propagation_policy: present("propagationPolicy").map(str::to_string),
            dry_run: present("dryRun").map(|d| vec![d.to_string()]),
        })
    }

    /// `ValidateDeleteOptions`: a 422 for `DeleteOptions.meta.k8s.io ""`.
    fn validate(&self) -> Result<(), ApiError> {
        let mut causes = Vec::new();
        if let (Some(_), Some(p)) = (self.orphan_dependents, &self.propagation_policy) {
            causes.push(Cause::invalid(
                "propagationPolicy",
                format!(
                    "Invalid value: {p:?}: orphanDependents and deletionPropagation cannot be both set"
                ),
            ));
        }
        if let Some(p) = self
            .propagation_policy
            .as_deref()
            .filter(|p| !POLICIES.contains(p))
        {
            causes.push(Cause::not_supported(
                "propagationPolicy",
                p,
                &["Foreground", "Background", "Orphan", "nil"],
            ));
        }
        if let Some(d) = &self.dry_run
            && d.iter().any(|v| v != "All")
        {
            let list: Vec<String> = d.iter().map(|v| format!("{v:?}")).collect();
            causes.push(Cause {
                field: "dryRun".into(),
                reason: "FieldValueNotSupported",
                message: format!(
                    "Unsupported value: []string{{{}}}: supported values: \"All\"",
                    list.join(", ")
                ),
            });
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid {
                group: "meta.k8s.io".into(),
                kind: "DeleteOptions".into(),
                name: String::new(),
                causes,
            })
        }
    }

    /// Whether nothing may be written.
    pub fn dry_run(&self) -> bool {
        self.dry_run
            .as_ref()
            .is_some_and(|d| d.iter().any(|v| v == "All"))
    }

    /// The propagation policy asked for, if any (valid by now).
    pub fn policy(&self) -> Option<Policy> {
        match self.propagation_policy.as_deref()? {
            "Foreground" => Some(Policy::Foreground),
            "Orphan" => Some(Policy::Orphan),
            _ => Some(Policy::Background),
        }
    }

    /// The uid precondition, if any.
    pub fn uid(&self) -> Option<&str> {
        self.preconditions.as_ref()?.uid.as_deref()
    }

    /// The resourceVersion precondition, if any.
    pub fn resource_version(&self) -> Option<&str> {
        self.preconditions.as_ref()?.resource_version.as_deref()
    }

    /// A delete that did not remove the object is answered 202 Accepted
    /// only when it set `orphanDependents: false` (kube-apiserver keeps
    /// 200 everywhere else, for old clients).
    pub fn accepted_when_pending(&self) -> bool {
        self.orphan_dependents == Some(false)
    }
}
