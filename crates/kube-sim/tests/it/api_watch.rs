//! Watch semantics: from a resourceVersion, filtered watches, bookmarks, 410 Gone for compacted
//! history, timeoutSeconds, streaming lists (sendInitialEvents), Table watches, kube-runtime.

use crate::support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube_sim::KubeSim;
use serde_json::{Value, json};
use support::*;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn watch_from_resource_version_replays_later_changes() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    api.delete("a", &Default::default()).await.unwrap();
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&resourceVersion={rv}"),
        3,
    )
    .await;
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    );
    assert_eq!(events[1]["object"]["data"]["x"], "1");
    let rvs: Vec<u64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
    assert_eq!(events[0]["object"]["kind"], "ConfigMap");

    // The legacy /watch/ path works too, and without a resourceVersion the current state is
    // sent as ADDED events first.
    let events = watch_events(
        &client,
        "/api/v1/watch/namespaces/default/configmaps?timeoutSeconds=1",
        10,
    )
    .await;
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["before"]);
    assert_eq!(events[0]["type"], "ADDED");
}

#[tokio::test]
async fn label_filtered_watch_turns_transitions_into_added_and_deleted() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("x", json!({"app": "other"})))
        .await
        .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb&timeoutSeconds=1"),
        5,
    )
    .await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["ADDED", "DELETED"]);
}

#[tokio::test]
async fn too_old_resource_version_gets_410_expired() {
    let sim = KubeSim::builder()
        .without_kubelet()
        .watch_history(3)
        .start()
        .await
        .unwrap();
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("c0", json!({})))
        .await
        .unwrap();
    let old_rv = api
        .get("c0")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 1..6 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({})))
            .await
            .unwrap();
    }
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&resourceVersion={old_rv}"),
        5,
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    let status = &events[0]["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("too old resource version")
    );

    // kube's watch API surfaces it as an error event.
    let lp = kube::api::WatchParams::default();
    let mut stream = api.watch(&lp, &old_rv).await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(kube::api::WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

/// A custom resource's watch history starts when its CRD is served, as a real apiserver's watch
/// cache does: from an older resourceVersion the watch is 410 Gone; from the CRD's own
/// resourceVersion it replays what came after; kube-runtime's watcher (list, then watch) works.
#[tokio::test]
async fn custom_resource_watch_from_before_its_crd_is_410_gone() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("before-crd", json!({})))
        .await
        .unwrap();
    let before_crd = api
        .get("before-crd")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let r = post(
        &client,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &widget_crd(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let crd_rv = r.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    create_widget(&client, "w1", json!({"color": "red"})).await;

    let path = widgets_path("default");
    for rv in ["1", before_crd.as_str()] {
        let events = watch_events(
            &client,
            &format!("{path}?watch=true&resourceVersion={rv}&timeoutSeconds=2"),
            5,
        )
        .await;
        let seen: Vec<(&str, &Value)> = events
            .iter()
            .map(|e| (e["type"].as_str().unwrap_or_default(), &e["object"]["code"]))
            .collect();
        assert_eq!(seen, [("ERROR", &json!(410))], "from {rv}: {events:?}");
    }
    let events = watch_events(
        &client,
        &format!("{path}?watch=true&resourceVersion={crd_rv}&timeoutSeconds=2"),
        5,
    )
    .await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default(),
                e["object"]["metadata"]["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(seen, [("ADDED", "w1")], "{events:?}");
    // Built-in resources keep their history from the server's start.
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&resourceVersion=1&timeoutSeconds=2"),
        5,
    )
    .await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "before-crd"),
        "{events:?}"
    );

    let mut stream = watcher(widgets(&client, "default"), watcher::Config::default()).boxed();
    let mut init = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::InitApply(o) => init.push(o.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(init, ["w1"]);
    create_widget(&client, "w2", json!({"color": "blue"})).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::Apply(o) if o.metadata.name.as_deref() == Some("w2") => break,
            _ => {}
        }
    }
}

#[tokio::test]
async fn bookmarks_are_sent_when_allowed() {
    let sim = KubeSim::builder()
        .without_kubelet()
        .bookmark_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"),
        2,
    )
    .await;
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e["type"], "BOOKMARK");
        assert_eq!(e["object"]["kind"], "ConfigMap");
        let brv: u64 = e["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(brv >= rv.parse::<u64>().unwrap());
    }
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream() {
    let sim = sim().await;
    let client = sim.client();
    // With nothing happening, the stream must end on its own (the helper's safety timeout is 30s,
    // far beyond the requested 1s, and no events are expected).
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&resourceVersion=1&timeoutSeconds=1"),
        1,
    )
    .await;
    assert!(events.is_empty(), "{events:?}");
    let req = http::Request::builder()
        .uri(format!("{CMS}?watch=true&timeoutSeconds=1"))
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(req).await.unwrap();
    assert_eq!(
        text, "",
        "no objects and no events: the stream closed empty"
    );
}

#[tokio::test]
async fn send_initial_events_ends_with_an_annotated_bookmark() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for n in ["i1", "i2"] {
        api.create(&PostParams::default(), &cm(n, json!({})))
            .await
            .unwrap();
    }
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"),
        3,
    )
    .await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["ADDED", "ADDED", "BOOKMARK"]);
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn table_watch_events_carry_rows() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("t", json!({})))
        .await
        .unwrap();
    api.patch(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .unwrap();
    let req = http::Request::builder()
        .uri(format!(
            "{CMS}?watch=true&resourceVersion={rv}&timeoutSeconds=1"
        ))
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(req).await.unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["object"]["kind"], "Table");
    assert_eq!(events[0]["object"]["columnDefinitions"][0]["name"], "Name");
    assert_eq!(events[1]["object"]["rows"][0]["cells"][0], "t");
    assert_eq!(
        events[1]["object"]["rows"][0]["cells"][1], 1,
        "DATA column counts the new key"
    );
}

#[tokio::test]
async fn kube_runtime_watcher_sees_changes_in_both_list_modes() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("pre", json!({})))
        .await
        .unwrap();
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut stream = watcher(api.clone(), config).boxed();
        let mut init_names = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(20), stream.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                watcher::Event::InitApply(o) => init_names.push(o.metadata.name.unwrap()),
                watcher::Event::InitDone => break,
                _ => {}
            }
        }
        assert!(init_names.contains(&"pre".to_string()), "{init_names:?}");
        let name = format!("live-{}", init_names.len());
        api.create(&PostParams::default(), &cm(&name, json!({})))
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(20), stream.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                watcher::Event::Apply(o) if o.metadata.name.as_deref() == Some(name.as_str()) => {
                    break;
                }
                _ => {}
            }
        }
    }
}
