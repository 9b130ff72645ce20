//! Kubernetes-compatible API server on the replicated event log (arrives with the API server issue).
