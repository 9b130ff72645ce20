//! The cluster's identity: 16 bytes every member of one cluster holds in
//! its store metadata and sends with each call to another member, so that a
//! member of another cluster (an old member still running after its cluster
//! was restored elsewhere, a member pointed at the wrong addresses) is
//! refused before its votes or entries reach Raft.
//!
//! Members that bootstrap a cluster together must agree on the id without
//! talking, so it is derived, as etcd derives its cluster ID: from the
//! initial members and a token for a new cluster, and from the backup, the
//! restore point and the new members for a restored one. A member that
//! joins takes the id of the first member that calls it. A member without
//! an id (a data directory from before ids existed) accepts any caller, and
//! a caller without an id is accepted (members of an older build).

use std::collections::BTreeMap;
use std::fmt;

use crate::NodeId;

/// The gRPC metadata key that carries the caller's cluster id.
pub const METADATA_KEY: &str = "keel-cluster-id";

/// A cluster's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterId([u8; 16]);

impl ClusterId {
    /// The first 16 bytes of the SHA-256 of `parts`, each length-prefixed
    /// so that no two lists of parts hash the same bytes.
    fn derive(parts: &[&[u8]]) -> ClusterId {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&ctx.finish().as_ref()[..16]);
        ClusterId(id)
    }

    /// The id of a new cluster of `members` (id → peer address), the same
    /// on each of them.
    pub fn new_cluster(token: &str, members: &BTreeMap<NodeId, String>) -> ClusterId {
        let members = members_bytes(members);
        ClusterId::derive(&[b"keel new cluster", token.as_bytes(), &members])
    }

    /// The id of a cluster restored from the backup `backup` (its revision,
    /// who took it and when, and its checksum identify it) to revision
    /// `target`, with its revisions bumped by `bump`, as `members`: the same
    /// for every member of one restore plan, and another for another backup,
    /// restore point or plan (and so never the old cluster's).
    pub fn restored(
        backup: &[u8],
        target: u64,
        bump: u64,
        token: &str,
        members: &BTreeMap<NodeId, String>,
    ) -> ClusterId {
        let members = members_bytes(members);
        ClusterId::derive(&[
            b"keel restored cluster",
            backup,
            &target.to_be_bytes(),
            &bump.to_be_bytes(),
            token.as_bytes(),
            &members,
        ])
    }

    /// The 16 bytes, as stored.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// The id from its stored bytes; `None` when they are not 16 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<ClusterId> {
        Some(ClusterId(bytes.try_into().ok()?))
    }

    /// The id from its text form (32 hex digits).
    pub fn parse(text: &str) -> Option<ClusterId> {
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(ClusterId(id))
    }
}

/// 32 lowercase hex digits.
impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn members_bytes(members: &BTreeMap<NodeId, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, addr) in members {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(addr.len() as u64).to_be_bytes());
        out.extend_from_slice(addr.as_bytes());
    }
    out
}

/// Whether a call that carries `caller` (its metadata value, if any) may
/// reach a member whose id is `own`; the refusal names both clusters.
pub fn admit(own: Option<ClusterId>, caller: Option<&str>) -> Result<Option<ClusterId>, String> {
    let Some(text) = caller else {
        return Ok(None);
    };
    let Some(theirs) = ClusterId::parse(text) else {
        return Err(format!(
            "the caller's cluster id {text:?} is not 32 hex digits"
        ));
    };
    match own {
        Some(own) if own != theirs => Err(format!(
            "the caller belongs to cluster {theirs}, this member to cluster {own}: \
             a member of another cluster (an old member of a restored cluster?) is refused"
        )),
        _ => Ok(Some(theirs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(NodeId, &str)]) -> BTreeMap<NodeId, String> {
        list.iter().map(|(i, a)| (*i, a.to_string())).collect()
    }

    #[test]
    fn ids_are_derived_from_what_identifies_the_cluster() {
        let three = members(&[(1, "a:1"), (2, "b:1"), (3, "c:1")]);
        let id = ClusterId::new_cluster("t", &three);
        assert_eq!(id, ClusterId::new_cluster("t", &three.clone()));
        assert_ne!(id, ClusterId::new_cluster("u", &three));
        assert_ne!(
            id,
            ClusterId::new_cluster("t", &members(&[(1, "a:1"), (2, "b:1")]))
        );
        assert_ne!(
            id,
            ClusterId::new_cluster("t", &members(&[(1, "a:1"), (2, "b:1"), (3, "c:2")]))
        );

        let r = ClusterId::restored(b"backup", 10, 1000, "t", &three);
        assert_eq!(r, ClusterId::restored(b"backup", 10, 1000, "t", &three));
        assert_ne!(r, id);
        for other in [
            ClusterId::restored(b"backup2", 10, 1000, "t", &three),
            ClusterId::restored(b"backup", 11, 1000, "t", &three),
            ClusterId::restored(b"backup", 10, 1001, "t", &three),
            ClusterId::restored(b"backup", 10, 1000, "u", &three),
            ClusterId::restored(b"backup", 10, 1000, "t", &members(&[(1, "a:1")])),
        ] {
            assert_ne!(r, other);
        }
    }

    #[test]
    fn text_and_bytes_round_trip() {
        let id = ClusterId::new_cluster("t", &members(&[(1, "a:1")]));
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(ClusterId::parse(&text), Some(id));
        assert_eq!(ClusterId::from_bytes(&id.to_bytes()), Some(id));
        assert_eq!(ClusterId::parse(&text[1..]), None);
        assert_eq!(ClusterId::parse(&"g".repeat(32)), None);
        assert_eq!(ClusterId::parse("é".repeat(16).as_str()), None);
        assert_eq!(ClusterId::from_bytes(&[0; 15]), None);
    }

    #[test]
    fn only_a_caller_of_another_cluster_is_refused() {
        let a = ClusterId::new_cluster("a", &members(&[(1, "a:1")]));
        let b = ClusterId::new_cluster("b", &members(&[(1, "a:1")]));
        assert_eq!(admit(Some(a), Some(&a.to_string())), Ok(Some(a)));
        let err = admit(Some(a), Some(&b.to_string())).unwrap_err();
        assert!(
            err.contains(&a.to_string()) && err.contains(&b.to_string()),
            "{err}"
        );
        // No id on either side: an older build, or a member still to learn it.
        assert_eq!(admit(Some(a), None), Ok(None));
        assert_eq!(admit(None, Some(&b.to_string())), Ok(Some(b)));
        assert!(admit(None, Some("xyz")).is_err());
    }
}
