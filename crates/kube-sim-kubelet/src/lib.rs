//! kube-sim's stand-in for kube-controller-manager's Job controller and for the kubelet.
//!
//! It talks to the API server only through a `kube::Client`, exactly like the real components do,
//! so everything it does is visible to watchers (the operator, kubectl) as ordinary API writes.
//! INTERFACE CONTRACT with crate `kube-sim` (which starts it and serves pod logs from `PodLogs`):
//! `PodLogs`, `ContainerRunner`, `ContainerSpec`, `ContainerOutcome`, `LocalProcessRunner`, `spawn`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Output of every pod container that ran, keyed by (namespace, pod name); served by kube-sim at
/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
#[derive(Clone, Default)]
pub struct PodLogs {
    inner: Arc<Mutex<HashMap<(String, String), Vec<u8>>>>,
}

impl PodLogs {
    pub fn append(&self, namespace: &str, pod: &str, bytes: &[u8]) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((namespace.to_owned(), pod.to_owned()))
            .or_default()
            .extend_from_slice(bytes);
    }

    pub fn get(&self, namespace: &str, pod: &str) -> Option<Vec<u8>> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(namespace.to_owned(), pod.to_owned())).cloned()
    }

    pub fn remove(&self, namespace: &str, pod: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(namespace.to_owned(), pod.to_owned()));
    }
}
