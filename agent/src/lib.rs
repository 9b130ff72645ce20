//! Node agent: registration, pod sync and the CRI client (arrives with a later issue).
