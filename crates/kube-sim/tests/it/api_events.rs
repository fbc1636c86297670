//! Events: core v1 and events.k8s.io/v1 are two versions of one stored resource. Writes through
//! either API (kube-runtime's `Recorder`, PUT, merge/strategic/JSON patches, delete) are visible
//! through both, each in its own shape, with the same resourceVersions and watch events, field
//! selectors on each API's own names; the real kubectl shows recorder events in `describe` and
//! `get events`.

use crate::support;
use crate::tools;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use k8s_openapi::api::events::v1::Event as NewEvent;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{Value, json};

const CORE: &str = "/api/v1/namespaces/default/events";
const NEW: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

async fn configmap(client: &kube::Client, name: &str) -> ConfigMap {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": {"a": "1", "b": "2", "c": "3"},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .expect("create configmap")
}

fn recorder(client: &kube::Client) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "qms-test".into(),
            instance: Some("test-1".into()),
        },
    )
}

fn synced() -> Event {
    Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("synced 3 keys".into()),
        action: "Sync".into(),
        secondary: None,
    }
}

fn uid(cm: &ConfigMap) -> String {
    cm.metadata.uid.clone().expect("uid")
}

/// The field selector `kubectl describe` lists an object's events with (core v1).
fn describe_selector(cm: &ConfigMap) -> String {
    format!(
        "involvedObject.name={},involvedObject.namespace=default,involvedObject.kind=ConfigMap,involvedObject.uid={}",
        cm.metadata.name.as_deref().unwrap(),
        uid(cm)
    )
}

fn core_api(client: &kube::Client) -> Api<CoreEvent> {
    Api::namespaced(client.clone(), "default")
}

fn new_api(client: &kube::Client) -> Api<NewEvent> {
    Api::namespaced(client.clone(), "default")
}

async fn names(api: &Api<NewEvent>, fields: &str) -> Vec<String> {
    api.list(&ListParams::default().fields(fields))
        .await
        .expect("list events.k8s.io events")
        .items
        .into_iter()
        .map(|e| e.metadata.name.unwrap())
        .collect()
}

async fn core_names(api: &Api<CoreEvent>, fields: &str) -> Vec<String> {
    api.list(&ListParams::default().fields(fields))
        .await
        .expect("list core events")
        .items
        .into_iter()
        .map(|e| e.metadata.name.unwrap())
        .collect()
}

#[tokio::test]
async fn recorder_events_are_listed_by_the_core_api() {
    let sim = support::sim().await;
    let client = sim.client();
    let cm = configmap(&client, "settings").await;
    let recorder = recorder(&client);
    recorder
        .publish(&synced(), &cm.object_ref(&()))
        .await
        .unwrap();

    // What `kubectl describe configmap settings` asks for.
    let core = core_api(&client);
    let listed = core
        .list(&ListParams::default().fields(&describe_selector(&cm)))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1, "{:?}", listed.items);
    let e = &listed.items[0];
    let name = e.metadata.name.clone().unwrap();
    assert!(name.starts_with("settings."), "{name}");
    assert_eq!(e.message.as_deref(), Some("synced 3 keys"));
    assert_eq!(e.reason.as_deref(), Some("Synced"));
    assert_eq!(e.type_.as_deref(), Some("Normal"));
    assert_eq!(e.action.as_deref(), Some("Sync"));
    assert_eq!(e.reporting_component.as_deref(), Some("qms-test"));
    assert_eq!(e.reporting_instance.as_deref(), Some("test-1"));
    assert!(e.event_time.is_some());
    assert_eq!(e.count, None);
    assert!(e.series.is_none());
    assert!(e.first_timestamp.is_none() && e.last_timestamp.is_none());
    let io = &e.involved_object;
    assert_eq!(io.api_version.as_deref(), Some("v1"));
    assert_eq!(io.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(io.name.as_deref(), Some("settings"));
    assert_eq!(io.namespace.as_deref(), Some("default"));
    assert_eq!(io.uid, cm.metadata.uid);

    // The core shape on the wire: no events.k8s.io field names.
    let raw = support::get(&client, &format!("{CORE}/{name}"))
        .await
        .json();
    assert_eq!(
        (raw["apiVersion"].as_str(), raw["kind"].as_str()),
        (Some("v1"), Some("Event"))
    );
    for gone in [
        "note",
        "regarding",
        "reportingController",
        "deprecatedCount",
    ] {
        assert!(raw.get(gone).is_none(), "{gone} in {raw}");
    }

    // One object: same uid and resourceVersion through both APIs.
    let new = new_api(&client);
    let n = new.get(&name).await.unwrap();
    assert_eq!(n.metadata.uid, e.metadata.uid);
    assert_eq!(n.metadata.resource_version, e.metadata.resource_version);
    assert_eq!(n.note.as_deref(), Some("synced 3 keys"));
    assert_eq!(n.regarding.as_ref().unwrap().uid, cm.metadata.uid);

    // A repeat is a merge patch through events.k8s.io that bumps the series: the core API sees it.
    recorder
        .publish(&synced(), &cm.object_ref(&()))
        .await
        .unwrap();
    let listed = core
        .list(&ListParams::default().fields(&describe_selector(&cm)))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let e2 = &listed.items[0];
    assert_eq!(e2.metadata.name.as_deref(), Some(name.as_str()));
    let series = e2.series.as_ref().expect("series after a repeat");
    assert_eq!(series.count, Some(2));
    assert!(series.last_observed_time.is_some());
    let rv = |e: &CoreEvent| -> u64 {
        e.metadata
            .resource_version
            .as_ref()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(rv(e2) > rv(e));
    assert_eq!(e2.message.as_deref(), Some("synced 3 keys"));

    // Another object's events are not selected.
    let other = configmap(&client, "other").await;
    assert!(
        core_names(&core, &describe_selector(&other))
            .await
            .is_empty()
    );

    // Each API selects on its own field names.
    assert_eq!(
        core_names(&core, "reportingComponent=qms-test,reason=Synced").await,
        [name.as_str()]
    );
    // `source` falls back to the reporting controller (no source.component was set).
    assert_eq!(core_names(&core, "source=qms-test").await, [name.as_str()]);
    assert_eq!(
        names(
            &new,
            &format!(
                "regarding.name=settings,regarding.kind=ConfigMap,regarding.uid={},reportingController=qms-test,type=Normal",
                uid(&cm)
            )
        )
        .await,
        [name.as_str()]
    );
    assert!(names(&new, "regarding.name=other").await.is_empty());
    for (path, wrong) in [
        (NEW, "involvedObject.name=settings"),
        (NEW, "reportingComponent=qms-test"),
        (CORE, "regarding.name=settings"),
        (CORE, "reportingController=qms-test"),
    ] {
        let r = support::get(&client, &format!("{path}?fieldSelector={wrong}")).await;
        assert_eq!(r.status, 400, "{path} {wrong}: {}", r.text);
        assert!(r.text.contains("field label not supported"), "{}", r.text);
    }
}

#[tokio::test]
async fn core_events_are_served_by_events_k8s_io() {
    let sim = support::sim().await;
    let client = sim.client();
    let cm = configmap(&client, "settings").await;
    let involved = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "settings", "namespace": "default", "uid": uid(&cm)});
    let r = support::post(
        &client,
        CORE,
        &json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "legacy.1"},
            "involvedObject": involved,
            "reason": "Scaled",
            "message": "scaled to 3",
            "type": "Warning",
            "source": {"component": "old-controller", "host": "node-1"},
            "firstTimestamp": "2025-01-01T00:00:00Z",
            "lastTimestamp": "2025-01-01T00:05:00Z",
            "count": 3,
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let created = r.json();
    assert_eq!(created["apiVersion"], "v1");

    let raw = support::get(&client, &format!("{NEW}/legacy.1"))
        .await
        .json();
    assert_eq!(raw["apiVersion"], "events.k8s.io/v1");
    assert_eq!(raw["kind"], "Event");
    assert_eq!(raw["regarding"], involved);
    assert_eq!(raw["note"], "scaled to 3");
    assert_eq!(
        raw["deprecatedSource"],
        json!({"component": "old-controller", "host": "node-1"})
    );
    assert_eq!(raw["deprecatedFirstTimestamp"], "2025-01-01T00:00:00Z");
    assert_eq!(raw["deprecatedLastTimestamp"], "2025-01-01T00:05:00Z");
    assert_eq!(raw["deprecatedCount"], 3);
    assert_eq!(
        (raw["reason"].as_str(), raw["type"].as_str()),
        (Some("Scaled"), Some("Warning"))
    );
    for gone in [
        "message",
        "involvedObject",
        "source",
        "count",
        "firstTimestamp",
        "lastTimestamp",
    ] {
        assert!(raw.get(gone).is_none(), "{gone} in {raw}");
    }
    assert_eq!(
        raw["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(raw["metadata"]["uid"], created["metadata"]["uid"]);

    // kube's typed events.k8s.io client reads it, and lists it by `regarding`.
    let new = new_api(&client);
    let core = core_api(&client);
    assert_eq!(
        names(&new, &format!("regarding.uid={}", uid(&cm))).await,
        ["legacy.1"]
    );
    let mut ev = new.get("legacy.1").await.unwrap();
    assert_eq!(ev.deprecated_count, Some(3));

    // PUT through events.k8s.io.
    ev.note = Some("scaled to 4".into());
    ev.deprecated_count = Some(4);
    new.replace("legacy.1", &PostParams::default(), &ev)
        .await
        .unwrap();
    let c = core.get("legacy.1").await.unwrap();
    assert_eq!(
        (c.message.as_deref(), c.count),
        (Some("scaled to 4"), Some(4))
    );

    // Strategic merge patch through core v1.
    core.patch(
        "legacy.1",
        &PatchParams::default(),
        &Patch::Strategic(json!({"message": "scaled to 5"})),
    )
    .await
    .unwrap();
    assert_eq!(
        new.get("legacy.1").await.unwrap().note.as_deref(),
        Some("scaled to 5")
    );

    // JSON patch through events.k8s.io, on its own field names.
    let r = support::patch(
        &client,
        &format!("{NEW}/legacy.1"),
        "application/json-patch+json",
        r#"[{"op": "test", "path": "/note", "value": "scaled to 5"}, {"op": "replace", "path": "/note", "value": "scaled to 6"}]"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = core.get("legacy.1").await.unwrap();
    assert_eq!(c.message.as_deref(), Some("scaled to 6"));

    // The other version's field names are unknown fields: dropped with a warning, or refused
    // with fieldValidation=Strict; nothing changes.
    let r = support::patch(
        &client,
        &format!("{NEW}/legacy.1"),
        "application/merge-patch+json",
        r#"{"message": "ignored"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let warning = r
        .headers
        .get("warning")
        .map(|w| w.to_str().unwrap().to_owned());
    assert!(
        warning
            .as_deref()
            .is_some_and(|w| w.contains(r#"unknown field \"message\""#)),
        "{warning:?}"
    );
    assert_eq!(r.json()["note"], "scaled to 6");
    assert_eq!(
        r.json()["metadata"]["resourceVersion"],
        json!(c.metadata.resource_version)
    );
    let r = support::patch(
        &client,
        &format!("{CORE}/legacy.1?fieldValidation=Strict"),
        "application/merge-patch+json",
        r#"{"note": "ignored"}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains(r#"unknown field \"note\""#), "{}", r.text);
    assert_eq!(
        core.get("legacy.1").await.unwrap().message.as_deref(),
        Some("scaled to 6")
    );

    // Delete through events.k8s.io: gone from both.
    new.delete("legacy.1", &DeleteParams::default())
        .await
        .unwrap();
    for path in [CORE, NEW] {
        assert_eq!(
            support::get(&client, &format!("{path}/legacy.1"))
                .await
                .status,
            404
        );
    }
}

#[tokio::test]
async fn watches_of_either_api_see_writes_through_the_other() {
    let sim = support::sim().await;
    let client = sim.client();
    let cm = configmap(&client, "settings").await;
    let start = support::get(&client, CORE).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let core = core_api(&client);
    let new = new_api(&client);

    // An event about another object first: filtered watches must skip it.
    let r = support::post(
        &client,
        CORE,
        &json!({"metadata": {"name": "unrelated"}, "involvedObject": {"kind": "ConfigMap", "name": "else", "namespace": "default"}, "message": "m"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Created through events.k8s.io (the recorder), modified through core, deleted through core.
    recorder(&client)
        .publish(&synced(), &cm.object_ref(&()))
        .await
        .unwrap();
    let name = core_names(&core, &describe_selector(&cm)).await.remove(0);
    core.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"message": "edited"})),
    )
    .await
    .unwrap();
    core.delete(&name, &DeleteParams::default()).await.unwrap();

    let filtered = |path: &str, label: &str| {
        format!("{path}?watch=true&resourceVersion={start}&fieldSelector={label}=settings")
    };
    let core_events =
        support::watch_events(&client, &filtered(CORE, "involvedObject.name"), 3).await;
    let new_events = support::watch_events(&client, &filtered(NEW, "regarding.name"), 3).await;
    let types = |evs: &[Value]| -> Vec<String> {
        evs.iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        types(&core_events),
        ["ADDED", "MODIFIED", "DELETED"],
        "{core_events:?}"
    );
    assert_eq!(
        types(&new_events),
        ["ADDED", "MODIFIED", "DELETED"],
        "{new_events:?}"
    );
    for (c, n) in core_events.iter().zip(&new_events) {
        let (c, n) = (&c["object"], &n["object"]);
        assert_eq!(c["apiVersion"], "v1");
        assert_eq!(n["apiVersion"], "events.k8s.io/v1");
        assert_eq!(
            c["metadata"]["resourceVersion"],
            n["metadata"]["resourceVersion"]
        );
        assert_eq!(c["message"], n["note"]);
        assert_eq!(c["involvedObject"], n["regarding"]);
        assert_eq!(c["reportingComponent"], n["reportingController"]);
        assert!(c.get("note").is_none() && n.get("message").is_none());
    }
    assert_eq!(new_events[0]["object"]["note"], "synced 3 keys");
    assert_eq!(new_events[1]["object"]["note"], "edited");

    // Unfiltered: both APIs see both events, in the same order.
    let all_core = support::watch_events(
        &client,
        &format!("{CORE}?watch=true&resourceVersion={start}"),
        4,
    )
    .await;
    let all_new = support::watch_events(
        &client,
        &format!("{NEW}?watch=true&resourceVersion={start}"),
        4,
    )
    .await;
    let rvs = |evs: &[Value]| -> Vec<Value> {
        evs.iter()
            .map(|e| e["object"]["metadata"]["resourceVersion"].clone())
            .collect()
    };
    assert_eq!(rvs(&all_core).len(), 4);
    assert_eq!(rvs(&all_core), rvs(&all_new));
    assert_eq!(all_new[0]["object"]["metadata"]["name"], "unrelated");

    // kube's typed watch on events.k8s.io decodes events written through core v1.
    let rv_now = support::get(&client, NEW).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let stream = new
        .watch(
            &kube::api::WatchParams::default().fields("regarding.name=settings"),
            &rv_now,
        )
        .await
        .unwrap();
    let r = support::post(
        &client,
        CORE,
        &json!({"metadata": {"name": "typed"}, "involvedObject": {"kind": "ConfigMap", "name": "settings", "namespace": "default"}, "message": "via core", "reason": "Typed"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut stream = stream.boxed();
    let first = tokio::time::timeout(Duration::from_secs(30), stream.try_next())
        .await
        .expect("hang protection: no watch event")
        .unwrap();
    match first {
        Some(WatchEvent::Added(e)) => {
            assert_eq!(e.metadata.name.as_deref(), Some("typed"));
            assert_eq!(e.note.as_deref(), Some("via core"));
            assert_eq!(e.regarding.unwrap().name.as_deref(), Some("settings"));
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
}

#[tokio::test]
async fn event_tables_print_like_the_apiserver() {
    let sim = support::sim().await;
    let client = sim.client();
    let cm = configmap(&client, "settings").await;
    let recorder = recorder(&client);
    recorder
        .publish(&synced(), &cm.object_ref(&()))
        .await
        .unwrap();
    recorder
        .publish(&synced(), &cm.object_ref(&()))
        .await
        .unwrap();
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io";
    for path in [CORE, NEW] {
        let t = support::raw(&client, "GET", path, None, None, Some(accept))
            .await
            .json();
        let cols: Vec<(&str, i64)> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["priority"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            cols,
            [
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1),
            ],
            "{path}"
        );
        let rows = t["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{path}: {t}");
        let cells = rows[0]["cells"].as_array().unwrap();
        assert_eq!(cells[1], "Normal");
        assert_eq!(cells[2], "Synced");
        assert_eq!(cells[3], "configmap/settings");
        assert_eq!(cells[4], "");
        assert_eq!(cells[5], "qms-test, test-1");
        assert_eq!(cells[6], "synced 3 keys");
        assert_eq!(cells[8], 2, "the series count");
        assert!(cells[9].as_str().unwrap().starts_with("settings."));
        // Last Seen (the series' lastObservedTime) and First Seen (eventTime) are real ages.
        for age in [&cells[0], &cells[7]] {
            assert!(
                age.as_str()
                    .is_some_and(|a| !a.is_empty() && !a.starts_with('<')),
                "{path}: {cells:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_and_get_show_recorder_events() {
    let cluster = tools::Cluster::start().await;
    let client = cluster.client();
    cluster
        .kubectl(&["create", "configmap", "settings", "--from-literal=a=1"])
        .await
        .ok();
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .get("settings")
        .await
        .unwrap();
    let recorder = recorder(&client);
    recorder
        .publish(&synced(), &cm.object_ref(&()))
        .await
        .unwrap();
    let other = configmap(&client, "other").await;
    let warning = Event {
        type_: EventType::Warning,
        reason: "Drifted".into(),
        note: Some("about the other one".into()),
        action: "Check".into(),
        secondary: None,
    };
    recorder
        .publish(&warning, &other.object_ref(&()))
        .await
        .unwrap();

    let out = cluster
        .kubectl(&["describe", "configmap", "settings"])
        .await;
    let stdout = out.ok();
    let events = stdout
        .split_once("\nEvents:")
        .unwrap_or_else(|| panic!("no Events section:\n{stdout}"))
        .1;
    let header = events.lines().nth(1).unwrap_or_default();
    for col in ["Type", "Reason", "Age", "From", "Message"] {
        assert!(header.contains(col), "{header:?} in\n{stdout}");
    }
    let row = events
        .lines()
        .find(|l| l.contains("Synced"))
        .unwrap_or_else(|| panic!("the recorder's event is missing:\n{stdout}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[..2], ["Normal", "Synced"], "{row}");
    assert!(
        row.contains("qms-test") && row.trim_end().ends_with("synced 3 keys"),
        "{row}"
    );
    assert!(
        !events.contains("Drifted"),
        "another object's event:\n{stdout}"
    );

    // A repeat shows up as a series.
    recorder
        .publish(&synced(), &cm.object_ref(&()))
        .await
        .unwrap();
    let out = cluster
        .kubectl(&["describe", "configmap", "settings"])
        .await;
    let stdout = out.ok();
    let row = stdout
        .lines()
        .find(|l| l.contains("Synced"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("(x2 over "), "{row}");

    // `kubectl get events` (core v1) lists both, with the apiserver's columns.
    let out = cluster.kubectl(&["get", "events"]).await;
    let stdout = out.ok();
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{stdout}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert!(
        rows.iter().any(|r| r[1..]
            == [
                "Normal",
                "Synced",
                "configmap/settings",
                "synced",
                "3",
                "keys"
            ]),
        "{stdout}"
    );
    assert!(
        rows.iter()
            .any(|r| r[1..4] == ["Warning", "Drifted", "configmap/other"]),
        "{stdout}"
    );

    // Wide: source and count; field selectors; the events.k8s.io resource lists the same.
    let out = cluster
        .kubectl(&[
            "get",
            "events",
            "-o",
            "wide",
            "--field-selector",
            "involvedObject.name=settings",
        ])
        .await;
    let stdout = out.ok();
    assert!(
        stdout.lines().next().unwrap().contains("SOURCE"),
        "{stdout}"
    );
    let row = stdout.lines().nth(1).unwrap_or_default();
    assert!(row.contains("qms-test, test-1"), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let count = row.split_whitespace().rev().nth(1);
    assert_eq!(count, Some("2"), "{stdout}");
    let out = cluster
        .kubectl(&[
            "get",
            "events.events.k8s.io",
            "--field-selector",
            "regarding.name=other",
        ])
        .await;
    let stdout = out.ok();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.contains("configmap/other") && stdout.contains("about the other one"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_custom_resource_shows_its_events() {
    let cluster = tools::Cluster::start().await;
    tools::install_test_crds(&cluster).await;
    let client = cluster.client();
    let widget = tools::widgets(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "test.kube-sim.dev/v1",
                "kind": "Widget",
                "metadata": {"name": "alpha", "namespace": "default"},
                "spec": {"color": "red", "size": 3},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let reference = widget.object_ref(&kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("test.kube-sim.dev", "v1", "Widget"),
        "widgets",
    ));
    let event = Event {
        type_: EventType::Warning,
        reason: "Painted".into(),
        note: Some("color changed to red".into()),
        action: "Paint".into(),
        secondary: None,
    };
    recorder(&client).publish(&event, &reference).await.unwrap();

    let out = cluster.kubectl(&["describe", "widget", "alpha"]).await;
    let stdout = out.ok();
    let events = stdout
        .split_once("\nEvents:")
        .unwrap_or_else(|| panic!("no Events section:\n{stdout}"))
        .1;
    let row = events
        .lines()
        .find(|l| l.contains("Painted"))
        .unwrap_or_else(|| panic!("the recorder's event is missing:\n{stdout}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[..2], ["Warning", "Painted"], "{row}");
    assert!(
        row.contains("qms-test") && row.trim_end().ends_with("color changed to red"),
        "{row}"
    );
}
