//! What a webhook delivery needs besides the workflow itself, without asking for it every time:
//!
//! - [`TemplateCache`]: the WorkflowTemplates of the webhook namespace from a watch of their own
//!   (a standby replica serves webhooks too, and runs none of the operator's watches). Until the
//!   watch has listed once (the first deliveries after start) or while it cannot start, templates
//!   are listed from the API server as before. A changed or new template is seen once the watch
//!   delivers it (normally within milliseconds).
//! - [`TrustCache`]: whether a login is trusted in a repository (permission and team checks on
//!   GitHub), kept for `QMS_GITHUB_PERMISSION_CACHE_TTL` (default 30 s) and for at most
//!   `QMS_GITHUB_PERMISSION_CACHE_SIZE` (default 4096) (login, repository) pairs. A revoked
//!   permission therefore takes effect after at most the TTL; a failed lookup is never cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use qms_api::WorkflowTemplate;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The templates of one namespace, from a watch started on first use.
pub struct TemplateCache {
    api: Api<WorkflowTemplate>,
    namespace: String,
    store: Store<WorkflowTemplate>,
    writer: Mutex<Option<reflector::store::Writer<WorkflowTemplate>>>,
    /// Set once the watch listed everything (and again after each re-list).
    ready: Arc<AtomicBool>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl TemplateCache {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        let (store, writer) = reflector::store();
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            store,
            writer: Mutex::new(Some(writer)),
            ready: Arc::new(AtomicBool::new(false)),
            task: Mutex::new(None),
        }
    }

    /// Starts the watch if it is not running yet (at start-up, or lazily with the first use).
    /// Outside a Tokio runtime it does nothing (the first use starts it).
    pub fn start(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let Some(writer) = lock(&self.writer).take() else {
            return;
        };
        let ready = self.ready.clone();
        let stream = watcher(self.api.clone(), watcher::Config::default())
            .default_backoff()
            .modify(|t: &mut WorkflowTemplate| {
                t.metadata.managed_fields = None;
            })
            .reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => ready.store(true, Ordering::Release),
                    Ok(_) => {}
                    // The backoff re-lists; until then the cache keeps what it had (a watch that
                    // cannot list at all never became ready, so deliveries list directly).
                    Err(e) => tracing::debug!(error = %e, "template watch interrupted"),
                }
            }
        });
        *lock(&self.task) = Some(task.abort_handle());
    }

    fn ensure_started(&self) {
        self.start();
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether deliveries are served from the watch (false until its first list completes).
    pub fn is_watching(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// All templates of the namespace.
    pub async fn all(&self) -> Result<Vec<Arc<WorkflowTemplate>>, kube::Error> {
        self.ensure_started();
        if self.is_watching() {
            return Ok(self.store.state());
        }
        let list = self.api.list(&ListParams::default()).await?;
        Ok(list.items.into_iter().map(Arc::new).collect())
    }

    /// The template `name`, if it exists.
    pub async fn get(&self, name: &str) -> Result<Option<Arc<WorkflowTemplate>>, kube::Error> {
        self.ensure_started();
        if self.is_watching() {
            return Ok(self
                .store
                .get(&ObjectRef::new(name).within(&self.namespace)));
        }
        Ok(self.api.get_opt(name).await?.map(Arc::new))
    }
}

impl Drop for TemplateCache {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
    }
}

/// Default of `QMS_GITHUB_PERMISSION_CACHE_TTL`.
pub const DEFAULT_TRUST_TTL: Duration = Duration::from_secs(30);
/// Default of `QMS_GITHUB_PERMISSION_CACHE_SIZE`.
pub const DEFAULT_TRUST_CAPACITY: usize = 4096;

/// (repository, login), lower-cased.
type TrustKey = (String, String);

/// Trust verdicts per (repository, login), both case-insensitive, bounded in time and number.
#[derive(Debug)]
pub struct TrustCache {
    ttl: chrono::Duration,
    capacity: usize,
    entries: Mutex<HashMap<TrustKey, (bool, DateTime<Utc>)>>,
}

impl TrustCache {
    /// `ttl` zero turns the cache off; `capacity` is at least 1.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero()),
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn key(repository: &str, login: &str) -> TrustKey {
        (repository.to_ascii_lowercase(), login.to_ascii_lowercase())
    }

    /// The verdict stored less than the TTL before `now`.
    pub fn get(&self, repository: &str, login: &str, now: DateTime<Utc>) -> Option<bool> {
        let entries = lock(&self.entries);
        let (verdict, at) = entries.get(&Self::key(repository, login))?;
        (now - *at < self.ttl && *at <= now).then_some(*verdict)
    }

    /// Stores a verdict looked up at `now`. When full, expired entries go first, then the oldest.
    pub fn put(&self, repository: &str, login: &str, verdict: bool, now: DateTime<Utc>) {
        if self.ttl <= chrono::Duration::zero() {
            return;
        }
        let key = Self::key(repository, login);
        let mut entries = lock(&self.entries);
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| now - *at < ttl);
            // A miss costs a GitHub request; a scan of at most `capacity` entries is cheap beside it.
            while entries.len() >= self.capacity {
                let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (verdict, now));
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn verdicts_expire_after_the_ttl() {
        let c = TrustCache::new(Duration::from_secs(30), 10);
        c.put("Creo/App", "Alice", true, t(0));
        assert_eq!(c.get("creo/app", "alice", t(29)), Some(true));
        assert_eq!(c.get("creo/app", "alice", t(30)), None);
        assert_eq!(c.get("creo/other", "alice", t(1)), None, "per repository");
        c.put("creo/app", "alice", false, t(31));
        assert_eq!(c.get("creo/app", "alice", t(32)), Some(false));
    }

    #[test]
    fn size_is_bounded_oldest_first() {
        let c = TrustCache::new(Duration::from_secs(300), 3);
        for (i, login) in ["a", "b", "c", "d"].iter().enumerate() {
            c.put("o/r", login, true, t(i as i64));
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("o/r", "a", t(5)), None, "the oldest went");
        assert_eq!(c.get("o/r", "d", t(5)), Some(true));
        // Updating a present key does not evict anyone.
        c.put("o/r", "b", false, t(6));
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("o/r", "c", t(6)), Some(true));
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let c = TrustCache::new(Duration::ZERO, 10);
        c.put("o/r", "a", true, t(0));
        assert!(c.is_empty());
        assert_eq!(c.get("o/r", "a", t(0)), None);
    }
}
