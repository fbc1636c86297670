//! Container output storage (`PodLogs`) and the per-container sink handed to runners.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Output of every pod container that ran, keyed by (namespace, pod name); served by kube-sim at
/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
///
/// stdout and stderr are interleaved in the order they were read, like `kubectl logs` shows them.
/// The kubelet removes a pod's entry when the pod is deleted.
#[derive(Clone, Default)]
pub struct PodLogs {
    inner: Arc<Mutex<LogMap>>,
}

type LogMap = HashMap<(String, String), Vec<u8>>;

impl std::fmt::Debug for PodLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodLogs").finish_non_exhaustive()
    }
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

    /// Makes sure an (empty) entry exists, so a pod whose container started but printed nothing
    /// yet serves an empty log rather than "not found".
    pub fn touch(&self, namespace: &str, pod: &str) {
        self.append(namespace, pod, b"");
    }
}

/// Where a runner writes the container's stdout/stderr: appends to the pod's entry in [`PodLogs`]
/// as the bytes are produced.
#[derive(Clone, Debug)]
pub struct LogSink {
    logs: PodLogs,
    namespace: String,
    pod: String,
}

impl LogSink {
    pub fn new(logs: PodLogs, namespace: &str, pod: &str) -> Self {
        Self {
            logs,
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
        }
    }

    pub fn write(&self, bytes: &[u8]) {
        self.logs.append(&self.namespace, &self.pod, bytes);
    }

    /// Everything written for this pod so far (all runs of its container).
    pub fn contents(&self) -> Vec<u8> {
        self.logs
            .get(&self.namespace, &self.pod)
            .unwrap_or_default()
    }
}

/// The kubelet's `FallbackToLogsOnError` message: the last 80 lines of the log, at most 2048 bytes.
pub fn log_tail(log: &[u8]) -> String {
    const MAX_LINES: usize = 80;
    const MAX_BYTES: usize = 2048;
    let mut start = log.len();
    let mut lines = 0;
    // A trailing newline does not start a new (empty) line.
    let body_end = if log.ends_with(b"\n") {
        log.len() - 1
    } else {
        log.len()
    };
    for (i, b) in log[..body_end].iter().enumerate().rev() {
        if *b == b'\n' {
            lines += 1;
            if lines == MAX_LINES {
                start = i + 1;
                break;
            }
        }
        start = i;
    }
    if body_end == 0 {
        start = 0;
    }
    let mut tail = &log[start..];
    if tail.len() > MAX_BYTES {
        tail = &tail[tail.len() - MAX_BYTES..];
    }
    String::from_utf8_lossy(tail).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_80_lines() {
        let log: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = log_tail(log.as_bytes());
        assert!(tail.starts_with("line 20\n"), "{tail}");
        assert!(tail.ends_with("line 99\n"));
        assert_eq!(tail.lines().count(), 80);
    }

    #[test]
    fn tail_short_and_empty() {
        assert_eq!(log_tail(b""), "");
        assert_eq!(log_tail(b"a\nb"), "a\nb");
        assert_eq!(log_tail(b"a\n"), "a\n");
    }

    #[test]
    fn tail_is_capped_at_2048_bytes() {
        let log = vec![b'x'; 5000];
        assert_eq!(log_tail(&log).len(), 2048);
    }

    #[test]
    fn sink_appends() {
        let logs = PodLogs::default();
        let sink = LogSink::new(logs.clone(), "ns", "p");
        sink.write(b"a");
        sink.write(b"b");
        assert_eq!(logs.get("ns", "p").unwrap(), b"ab");
        assert_eq!(sink.contents(), b"ab");
    }
}
