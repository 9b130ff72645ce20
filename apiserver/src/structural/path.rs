//! Field paths as Kubernetes' `field.Path` prints them: `spec.list[0]`,
//! `spec.labels[app]`, and `<nil>` for an error about the whole object.
//! The empty string stands for the root (Go's nil path).

/// Field `name` of `parent`.
pub(super) fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// Item `i` of the list at `parent`.
pub(super) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Key `key` of the map at `parent`.
pub(super) fn key(parent: &str, key: &str) -> String {
    format!("{parent}[{key}]")
}

/// How a cause names `p`: the root is `<nil>`, as Kubernetes prints a nil
/// path.
pub(super) fn shown(p: &str) -> String {
    if p.is_empty() {
        "<nil>".to_string()
    } else {
        p.to_string()
    }
}
