//! In-memory object store: one bucket per (group, resource), a single global `resourceVersion`
//! counter (like etcd's revision), and a bounded history of change events per bucket that watches
//! read from. Watchers are woken through a `tokio::sync::watch` channel carrying the latest RV.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::wal::{Record, Wal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub object: Arc<Value>,
    /// The object before this change (for selector transitions in filtered watches).
    pub prev: Option<Arc<Value>>,
}

#[derive(Debug, Default)]
struct Bucket {
    objects: BTreeMap<(String, String), Arc<Value>>,
    history: VecDeque<Arc<Event>>,
    /// Events with `rv <= compacted` may be missing from `history`.
    compacted: u64,
}

pub struct Store {
    rv: u64,
    /// RV at start (after WAL replay): history before it is unknown.
    base_rv: u64,
    buckets: HashMap<String, Bucket>,
    uids: HashMap<String, (String, String, String)>,
    /// Owner uid -> dependents (bucket, namespace, name), for garbage collection.
    owners: HashMap<String, std::collections::BTreeSet<(String, String, String)>>,
    history_limit: usize,
    wal: Option<Wal>,
    notify: tokio::sync::watch::Sender<u64>,
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (notify, _) = tokio::sync::watch::channel(0);
        Store {
            rv: 0,
            base_rv: 0,
            buckets: HashMap::new(),
            uids: HashMap::new(),
            owners: HashMap::new(),
            history_limit: history_limit.max(1),
            wal: None,
            notify,
        }
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    pub fn rv(&self) -> u64 {
        self.rv
    }

    fn index_owners(&mut self, key: &str, obj: &Value, add: bool) {
        let Some(refs) = obj["metadata"]["ownerReferences"].as_array() else {
            return;
        };
        let id = (
            key.to_owned(),
            meta_str(obj, "namespace").to_owned(),
            meta_str(obj, "name").to_owned(),
        );
        for uid in refs.iter().filter_map(|r| r["uid"].as_str()) {
            if add {
                self.owners
                    .entry(uid.to_owned())
                    .or_default()
                    .insert(id.clone());
            } else if let Some(set) = self.owners.get_mut(uid) {
                set.remove(&id);
                if set.is_empty() {
                    self.owners.remove(uid);
                }
            }
        }
    }

    /// Loads a replayed object (no event, no WAL write).
    pub fn load(&mut self, key: &str, obj: Value, rv: u64) {
        let ns = meta_str(&obj, "namespace").to_owned();
        let name = meta_str(&obj, "name").to_owned();
        let uid = meta_str(&obj, "uid").to_owned();
        if !uid.is_empty() {
            self.uids
                .insert(uid, (key.to_owned(), ns.clone(), name.clone()));
        }
        if let Some(prev) = self.get(key, &ns, &name) {
            self.index_owners(key, &prev, false);
        }
        self.index_owners(key, &obj, true);
        self.buckets
            .entry(key.to_owned())
            .or_default()
            .objects
            .insert((ns, name), Arc::new(obj));
        self.rv = self.rv.max(rv);
    }

    pub fn unload(&mut self, key: &str, ns: &str, name: &str, rv: u64) {
        if let Some(b) = self.buckets.get_mut(key)
            && let Some(old) = b.objects.remove(&(ns.to_owned(), name.to_owned()))
        {
            self.uids.remove(meta_str(&old, "uid"));
            self.index_owners(key, &old, false);
        }
        self.rv = self.rv.max(rv);
    }

    /// Marks the end of replay: history before now is unknown, and writes go to `wal`.
    pub fn finish_load(&mut self, wal: Option<Wal>) {
        self.base_rv = self.rv;
        for b in self.buckets.values_mut() {
            b.compacted = self.rv;
        }
        self.wal = wal;
        self.notify.send_replace(self.rv);
    }

    /// Every live object as a WAL snapshot.
    pub fn snapshot(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for (key, b) in &self.buckets {
            for ((ns, name), obj) in &b.objects {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                out.push(Record {
                    op: "put".into(),
                    key: key.clone(),
                    ns: ns.clone(),
                    name: name.clone(),
                    rv,
                    object: Some((**obj).clone()),
                });
            }
        }
        out.sort_by_key(|r| r.rv);
        out
    }

    pub fn get(&self, key: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.buckets
            .get(key)?
            .objects
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Objects of a bucket in (namespace, name) order, optionally restricted to one namespace.
    pub fn list(&self, key: &str, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(b) = self.buckets.get(key) else {
            return Vec::new();
        };
        match ns {
            Some(ns) => b
                .objects
                .range((ns.to_owned(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => b.objects.values().cloned().collect(),
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.buckets.keys().cloned().collect()
    }

    pub fn uid_exists(&self, uid: &str) -> bool {
        self.uids.contains_key(uid)
    }

    /// Objects (with their bucket key) that list `uid` in their ownerReferences.
    pub fn dependents_of(&self, uid: &str) -> Vec<(String, Arc<Value>)> {
        self.owners
            .get(uid)
            .map(|set| {
                set.iter()
                    .filter_map(|(key, ns, name)| self.get(key, ns, name).map(|o| (key.clone(), o)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn next_rv(&self) -> u64 {
        self.rv + 1
    }

    fn wal_append(&mut self, record: Record) -> ApiResult<()> {
        if let Some(wal) = self.wal.as_mut() {
            wal.append(&record)
                .map_err(|e| ApiError::internal(format!("writing state file: {e}")))?;
        }
        Ok(())
    }

    fn record(&mut self, key: &str, event: Event) {
        let limit = self.history_limit;
        let base = self.base_rv;
        let b = self
            .buckets
            .entry(key.to_owned())
            .or_insert_with(|| Bucket {
                compacted: base,
                ..Default::default()
            });
        b.history.push_back(Arc::new(event));
        while b.history.len() > limit {
            if let Some(old) = b.history.pop_front() {
                b.compacted = b.compacted.max(old.rv);
            }
        }
    }

    /// Stores `obj` (create or replace), assigning the next resourceVersion.
    pub fn put(&mut self, key: &str, mut obj: Value) -> ApiResult<Arc<Value>> {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let ns = meta_str(&obj, "namespace").to_owned();
        let name = meta_str(&obj, "name").to_owned();
        self.wal_append(Record {
            op: "put".into(),
            key: key.to_owned(),
            ns: ns.clone(),
            name: name.clone(),
            rv,
            object: Some(obj.clone()),
        })?;
        self.rv = rv;
        let uid = meta_str(&obj, "uid").to_owned();
        let obj = Arc::new(obj);
        let base = self.base_rv;
        let prev = self
            .buckets
            .entry(key.to_owned())
            .or_insert_with(|| Bucket {
                compacted: base,
                ..Default::default()
            })
            .objects
            .insert((ns.clone(), name.clone()), obj.clone());
        if !uid.is_empty() {
            self.uids.insert(uid, (key.to_owned(), ns, name));
        }
        if let Some(p) = &prev {
            self.index_owners(key, p, false);
        }
        self.index_owners(key, &obj, true);
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(
            key,
            Event {
                rv,
                kind,
                object: obj.clone(),
                prev,
            },
        );
        self.notify.send_replace(rv);
        Ok(obj)
    }

    /// Removes an object; the DELETED event carries it with a fresh resourceVersion.
    pub fn remove(&mut self, key: &str, ns: &str, name: &str) -> ApiResult<Option<Arc<Value>>> {
        let Some(old) = self.get(key, ns, name) else {
            return Ok(None);
        };
        let rv = self.next_rv();
        self.wal_append(Record {
            op: "del".into(),
            key: key.to_owned(),
            ns: ns.to_owned(),
            name: name.to_owned(),
            rv,
            object: None,
        })?;
        self.rv = rv;
        if let Some(b) = self.buckets.get_mut(key) {
            b.objects.remove(&(ns.to_owned(), name.to_owned()));
        }
        self.uids.remove(meta_str(&old, "uid"));
        self.index_owners(key, &old, false);
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let last = Arc::new(last);
        self.record(
            key,
            Event {
                rv,
                kind: EventType::Deleted,
                object: last.clone(),
                prev: Some(old),
            },
        );
        self.notify.send_replace(rv);
        Ok(Some(last))
    }

    /// The bucket `key` starts being served now: its watch history begins at the current
    /// resourceVersion (watching from an older one gets 410 Gone, as from a real apiserver's
    /// watch cache, which starts when the CRD is served).
    pub fn start_watch_history(&mut self, key: &str) {
        let rv = self.rv;
        let b = self.buckets.entry(key.to_owned()).or_default();
        b.compacted = b.compacted.max(rv);
    }

    /// Events of a bucket after `rv`, or `Err(oldest_available_rv)` if some were compacted away.
    pub fn events_since(&self, key: &str, rv: u64) -> Result<Vec<Arc<Event>>, u64> {
        let Some(b) = self.buckets.get(key) else {
            return if rv < self.base_rv {
                Err(self.base_rv)
            } else {
                Ok(Vec::new())
            };
        };
        if rv < b.compacted {
            return Err(b.compacted + 1);
        }
        let start = b.history.partition_point(|e| e.rv <= rv);
        Ok(b.history.iter().skip(start).cloned().collect())
    }
}
