//! Admission: checks of a write that need both who asks and the object as
//! it would be stored, run after the kind's defaults and validation and
//! before the write (kube-apiserver's validating admission). RBAC's
//! escalation check and NodeRestriction are admission plugins; the
//! registry runs every plugin on create, update (every subresource) and
//! delete.

use serde_json::Value;

use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::request::RequestTarget;

/// What a write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// One write, as admission sees it.
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    pub operation: Operation,
    /// The resource written, with its subresource (`pods/status`); the
    /// binding and scale subresources arrive as updates of the main resource.
    pub target: &'a RequestTarget,
    pub name: &'a str,
    /// The object as it would be stored (create, update).
    pub object: Option<&'a Value>,
    /// The stored object (update, delete).
    pub old: Option<&'a Value>,
}

/// An admission plugin: refuses a write with the error the client gets
/// (a 403 Forbidden or a 422 Invalid, as Kubernetes' plugins answer).
pub trait Admit: Send + Sync {
    fn admit(&self, a: &Attributes<'_>) -> Result<(), ApiError>;
}
