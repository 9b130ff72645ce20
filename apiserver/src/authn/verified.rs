//! The signatures already checked: a bounded map from a ServiceAccount
//! token to its claims, so that a controller's every request does not pay
//! an Ed25519 verification (kube-apiserver caches token reviews the same
//! way). Only the signature is remembered; the validity window, audience
//! and the bound objects are checked again on every request.

use std::collections::HashMap;
use std::sync::Mutex;

use super::jwt::Claims;

/// Tokens remembered at most; the map is emptied when it is full, which
/// keeps the bound without bookkeeping per entry (a cluster's controllers
/// and nodes use far fewer tokens at once).
pub const CAPACITY: usize = 4096;

/// Tokens whose signature verified, with their claims.
#[derive(Default)]
pub struct Verified {
    tokens: Mutex<HashMap<String, Claims>>,
}

impl Verified {
    /// The claims of `token` if its signature verified before.
    pub fn get(&self, token: &str) -> Option<Claims> {
        self.lock().get(token).cloned()
    }

    /// Remember that `token`'s signature verified.
    pub fn insert(&self, token: &str, claims: &Claims) {
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(token.to_string(), claims.clone());
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claims>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}
