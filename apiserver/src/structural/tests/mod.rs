//! Table-driven tests of structural schemas: each row a schema, an object
//! (or none) and what Kubernetes answers: the causes a CRD gets, the object
//! defaulted or pruned, the causes of an invalid object.

mod check;
mod defaults;
mod prune;
mod values;

use serde_json::Value;

use super::Structural;
use crate::error::Cause;

/// Where the schemas of these tests sit in their CRD; `@` in expectations.
const AT: &str = "spec.versions[0].schema.openAPIV3Schema";

fn structural(schema: &Value) -> Structural {
    Structural::new(schema, AT).unwrap_or_else(|c| panic!("{schema} is refused: {c:#?}"))
}

/// `field: message` of each cause, `@` standing for [`AT`].
fn lines(causes: &[Cause]) -> Vec<String> {
    causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message).replace(AT, "@"))
        .collect()
}

/// `got` has exactly the `want` lines, in any order; a wanted line ending
/// in `*` matches any line it begins.
fn assert_lines(row: &str, got: &[String], want: &[&str]) {
    let mut left: Vec<&String> = got.iter().collect();
    for w in want {
        let pos = left.iter().position(|g| match w.strip_suffix('*') {
            Some(prefix) => g.starts_with(prefix),
            None => g.as_str() == *w,
        });
        match pos {
            Some(i) => {
                left.remove(i);
            }
            None => panic!("{row}: missing {w:?}\n got: {got:#?}"),
        }
    }
    assert!(left.is_empty(), "{row}: unexpected {left:#?}");
}
