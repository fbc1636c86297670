//! Kubernetes Events, published exactly as kube's `Recorder` publishes them (the same Event
//! objects, and a repeat within six minutes folded into the first one's series), but remembering
//! per recent event only what a repeat needs: its time, its note and its count.
//!
//! Why not kube's `Recorder`: it keeps every Event it published for six minutes, each as a full
//! `events.k8s.io/v1` object plus its key (two copies of the object reference), ≈ 2 KB each; at 15
//! Events per workflow that is ≈ 30 MB for 1,000 workflows reviewed within six minutes (issue 11).
//! It also scans the whole cache on every publish. Here an entry is ≈ 200 bytes (the note is most
//! of it) and expired entries are dropped at most once per [`GC_EVERY`].

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};

use crate::locks::lock;

/// How long a published Event can still become a series (kube-runtime's `CACHE_TTL`).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// Expired entries are dropped at most this often (an expired entry is never used meanwhile).
const GC_EVERY: Duration = Duration::from_secs(10);

/// What a repeat of a published Event needs: the first one's time (its name derives from it), its
/// note (a series keeps the first note) and how often it was seen.
struct Recent {
    first: Timestamp,
    /// The series' last observation (`None`: not repeated yet).
    series: Option<(i32, Timestamp)>,
    note: Option<Box<str>>,
}

impl Recent {
    /// The time the window is counted from (kube: the series' last observation, else the event's).
    fn last_seen(&self) -> Timestamp {
        self.series.map_or(self.first, |(_, at)| at)
    }

    fn live_at(&self, now: Timestamp) -> bool {
        self.last_seen() + SERIES_WINDOW > now
    }
}

/// The identity of an Event for folding: kube's `EventKey` (type, action, reason, reporter,
/// regarding and related objects), as two independent 64-bit hashes — a false match of both is
/// out of reach for the thousands of Events of six minutes.
type Key = (u64, u64);

pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    hashers: (RandomState, RandomState),
    recent: Mutex<Recents>,
}

struct Recents {
    entries: HashMap<Key, Recent>,
    gc_at: Instant,
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            hashers: (RandomState::new(), RandomState::new()),
            recent: Mutex::new(Recents {
                entries: HashMap::new(),
                gc_at: Instant::now(),
            }),
        }
    }

    /// Publishes `ev` about `reference`: a new Event, or a patch of the recent identical one's
    /// series (as `kube::runtime::events::Recorder::publish`).
    pub async fn publish(
        &self,
        ev: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = self.key(ev, reference);
        let event = {
            let mut recent = lock(&self.recent);
            recent.gc(now);
            match recent.entries.get(&key).filter(|r| r.live_at(now)) {
                Some(r) => self.repeated(ev, reference, r, now),
                None => self.event(ev, reference, now),
            }
        };
        let namespace = reference.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let name = event.metadata.name.clone().unwrap_or_default();
        match &event.series {
            Some(_) => {
                events
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&event))
                    .await?;
            }
            None => {
                events.create(&PostParams::default(), &event).await?;
            }
        }
        let remembered = Recent {
            first: event.event_time.as_ref().map_or(now, |t| t.0),
            series: event
                .series
                .as_ref()
                .map(|s| (s.count, s.last_observed_time.0)),
            note: event.note.map(String::into_boxed_str),
        };
        lock(&self.recent).entries.insert(key, remembered);
        Ok(())
    }

    fn key(&self, ev: &Event, reference: &ObjectReference) -> Key {
        let hash = |state: &RandomState| {
            let mut h = state.build_hasher();
            ev.type_.hash(&mut h);
            ev.action.hash(&mut h);
            ev.reason.hash(&mut h);
            self.reporter.hash(&mut h);
            hash_reference(reference, &mut h);
            ev.secondary.is_some().hash(&mut h);
            if let Some(related) = &ev.secondary {
                hash_reference(related, &mut h);
            }
            h.finish()
        };
        (hash(&self.hashers.0), hash(&self.hashers.1))
    }

    /// The Event as first published at `at` (kube's `Recorder::generate_event`).
    fn event(&self, ev: &Event, reference: &ObjectReference, at: Timestamp) -> K8sEvent {
        let controller = &self.reporter.controller;
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(at)),
            regarding: Some(reference.clone()),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: reference.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    reference.name.as_ref().unwrap_or(controller),
                    at.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            related: ev.secondary.clone(),
            ..Default::default()
        }
    }

    /// A repeat of `recent`: its Event (first time, hence name, and first note) with the series
    /// counted on.
    fn repeated(
        &self,
        ev: &Event,
        reference: &ObjectReference,
        recent: &Recent,
        now: Timestamp,
    ) -> K8sEvent {
        let mut event = self.event(ev, reference, recent.first);
        event.note = recent.note.as_deref().map(str::to_owned);
        event.series = Some(EventSeries {
            count: recent.series.map_or(2, |(count, _)| count + 1),
            last_observed_time: MicroTime(now),
        });
        event
    }
}

impl Recents {
    fn gc(&mut self, now: Timestamp) {
        if self.gc_at.elapsed() < GC_EVERY {
            return;
        }
        self.gc_at = Instant::now();
        self.entries.retain(|_, r| r.live_at(now));
    }
}

/// Every field of the reference (kube compares references whole).
fn hash_reference(r: &ObjectReference, h: &mut impl Hasher) {
    r.api_version.hash(h);
    r.field_path.hash(h);
    r.kind.hash(h);
    r.name.hash(h);
    r.namespace.hash(h);
    r.resource_version.hash(h);
    r.uid.hash(h);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ListParams;
    use kube::runtime::events::Recorder;

    fn reference(namespace: &str, resource_version: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("qms.creo.dev/v1".into()),
            kind: Some("QmsWorkflow".into()),
            name: Some("wf".into()),
            namespace: Some(namespace.into()),
            uid: Some("uid-1".into()),
            resource_version: Some(resource_version.into()),
            field_path: None,
        }
    }

    fn event(action: &str, note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: "GatePassed".into(),
            note: Some(note.into()),
            action: action.into(),
            secondary: None,
        }
    }

    /// The Events of `namespace` as (action, note, series count, regarding's resourceVersion,
    /// reporter), sorted: everything but the time-derived name and times.
    async fn published(client: &Client, namespace: &str) -> Vec<String> {
        let api: Api<K8sEvent> = Api::namespaced(client.clone(), namespace);
        let mut out: Vec<String> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| {
                let name = e.metadata.name.clone().unwrap_or_default();
                let derived = e.event_time.as_ref().map(|t| t.0.as_nanosecond());
                let named_after_time =
                    derived.is_some_and(|t| name == format!("wf.{t:x}"));
                format!(
                    "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} name-matches-stored-time={named_after_time}",
                    e.action,
                    e.reason,
                    e.note,
                    e.type_,
                    e.series.map(|s| s.count),
                    e.regarding.and_then(|r| r.resource_version),
                    e.reporting_controller,
                    e.reporting_instance,
                )
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn publishes_the_events_kubes_recorder_publishes_and_folds_repeats_alike() {
        let sim = kube_sim::KubeSim::builder().start().await.unwrap();
        let client = sim.client();
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        for ns in ["ours", "kubes"] {
            let mut n = k8s_openapi::api::core::v1::Namespace::default();
            n.metadata.name = Some(ns.into());
            namespaces.create(&PostParams::default(), &n).await.unwrap();
        }
        let reporter = Reporter {
            controller: "qms-operator".into(),
            instance: Some("pod-0".into()),
        };
        let ours = EventRecorder::new(client.clone(), reporter.clone());
        let kubes = Recorder::new(client.clone(), reporter);
        // A repeat (same action, reason and object version; another note), another action, and
        // the same action on a later version of the object.
        let script = [
            (event("gate.passed coverage run 1", "first"), "1"),
            (event("gate.passed coverage run 1", "second"), "1"),
            (event("gate.passed coverage run 1", "third"), "1"),
            (event("gate.passed latency run 1", "other"), "1"),
            (event("gate.passed coverage run 1", "later"), "2"),
        ];
        for (ev, rv) in &script {
            ours.publish(ev, &reference("ours", rv)).await.unwrap();
            kubes.publish(ev, &reference("kubes", rv)).await.unwrap();
        }
        let (a, b) = (
            published(&client, "ours").await,
            published(&client, "kubes").await,
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 3, "{a:#?}");
        assert!(
            a.iter()
                .any(|e| e.contains("\"first\"") && e.contains("Some(3)")),
            "the repeat keeps the first note and counts on: {a:#?}"
        );
        assert_eq!(lock(&ours.recent).entries.len(), 3);
        sim.stop().await;
    }
}
