//! Controllers that reconcile cluster state through the public API (arrive with later issues).
