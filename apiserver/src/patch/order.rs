//! The order of a merged list in a strategic merge patch, as kube-apiserver
//! arranges it: the elements the patch names (or its `$setElementOrder`
//! lists) in that order, and the elements only the server had woven in
//! where they stood relative to them in the server's list. An element the
//! server did not have comes before the server's that follow it, so a new
//! element of a patch without `$setElementOrder` goes first.

use serde_json::Value;

/// What identifies an element: its merge key's value in a list of objects,
/// the element itself in a list of scalars.
fn id<'a>(x: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(k) => x.get(k),
        None => Some(x),
    }
}

/// The identities a `$setElementOrder` list names: objects carrying the
/// merge key (lists of objects) or scalars; anything else is refused.
pub fn ids(order: &[Value], key: Option<&str>) -> Result<Vec<Value>, String> {
    order
        .iter()
        .map(|o| match key {
            Some(k) => o
                .get(k)
                .filter(|_| o.is_object())
                .cloned()
                .ok_or_else(|| format!("{o} does not carry the merge key {k:?}")),
            None if o.is_object() || o.is_array() => Err(format!("{o} is not a scalar")),
            None => Ok(o.clone()),
        })
        .collect()
}

/// Arrange `merged`: the elements whose identity is in `wanted`, in that
/// order, interleaved with the rest (kept in their order in `merged`, which
/// follows `server`) where `server` puts them before a wanted element.
pub fn arrange(
    merged: Vec<Value>,
    wanted: &[Value],
    server: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let pos_in = |list: &[Value], x: &Value, by_id: bool| -> Option<usize> {
        let want = id(x, key)?;
        list.iter().position(|y| {
            let y = if by_id { Some(y) } else { id(y, key) };
            y == Some(want)
        })
    };
    let (mut named, rest): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|x| pos_in(wanted, x, true).is_some());
    named.sort_by_key(|x| pos_in(wanted, x, true));
    let mut out = Vec::with_capacity(named.len() + rest.len());
    let (mut left, mut right) = (rest.into_iter().peekable(), named.into_iter().peekable());
    loop {
        match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => {
                let before = match (pos_in(server, l, false), pos_in(server, r, false)) {
                    (Some(a), Some(b)) => a < b,
                    _ => false,
                };
                let next = if before { left.next() } else { right.next() };
                out.extend(next);
            }
            (Some(_), None) => out.extend(left.next()),
            (None, _) => match right.next() {
                Some(r) => out.push(r),
                None => break,
            },
        }
    }
    out
}
