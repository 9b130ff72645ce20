//! Apply conflicts as Kubernetes reports them: a 409 `Conflict` whose
//! causes are `FieldManagerConflict`s, one per field another manager owns,
//! and whose message kubectl prints before its `--force-conflicts` advice.

use super::fieldset::display;
use crate::error::{ApiError, Cause};

/// Fields `manager` (as [`super::managed::Entry::describe`] words it) owns
/// that an apply would change.
pub struct Conflict {
    pub manager: String,
    pub paths: Vec<Vec<String>>,
}

/// The error for `found` (not empty): `Apply failed with 1 conflict:
/// conflict with "mgr" using v1: .data.key`, or for several, a list of
/// fields under each manager.
pub fn error(found: &[Conflict]) -> ApiError {
    let mut sorted: Vec<&Conflict> = found.iter().collect();
    sorted.sort_by(|a, b| a.manager.cmp(&b.manager));
    let mut causes = Vec::new();
    for c in &sorted {
        for p in &c.paths {
            causes.push(Cause {
                field: display(p),
                reason: "FieldManagerConflict",
                message: format!("conflict with {}", c.manager),
            });
        }
    }
    let message = if causes.len() == 1 {
        format!(
            "Apply failed with 1 conflict: {}: {}",
            causes[0].message, causes[0].field
        )
    } else {
        let mut lines = Vec::new();
        for c in &sorted {
            lines.push(format!("conflicts with {}:", c.manager));
            for p in &c.paths {
                lines.push(format!("- {}", display(p)));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            causes.len(),
            lines.join("\n")
        )
    };
    ApiError::ApplyConflict { message, causes }
}
