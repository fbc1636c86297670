//! Core CRUD semantics through kube::Client: optimistic concurrency, generateName, error shapes,
//! namespaces, dry-run, list selectors and pagination.

use crate::support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::*;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

#[tokio::test]
async fn default_namespaces_exist() {
    let sim = sim().await;
    let ns: Api<Namespace> = Api::all(sim.client());
    let names: Vec<String> = ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for want in ["default", "kube-system", "kube-public"] {
        assert!(names.contains(&want.to_string()), "{names:?}");
    }
    let d = ns.get("default").await.unwrap();
    assert_eq!(d.status.unwrap().phase.as_deref(), Some("Active"));
}

#[tokio::test]
async fn create_get_update_and_stale_update_conflicts() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let created = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let md = &created.metadata;
    assert!(md.uid.is_some() && md.creation_timestamp.is_some());
    let rv1: u64 = md.resource_version.as_deref().unwrap().parse().unwrap();

    let mut fresh = api.get("a").await.unwrap();
    fresh.data.as_mut().unwrap().insert("k".into(), "v2".into());
    let updated = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion increases");
    assert_eq!(
        updated.metadata.uid, created.metadata.uid,
        "uid is immutable"
    );

    // Writing with the old resourceVersion is a 409 Conflict with the apiserver's message.
    let mut stale = created.clone();
    stale.data.as_mut().unwrap().insert("k".into(), "v3".into());
    let err = api_err(api.replace("a", &PostParams::default(), &stale).await);
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // Update of a missing object: 404.
    let err = api_err(
        api.replace("missing", &PostParams::default(), &cm("missing", json!({})))
            .await,
    );
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn already_exists_and_not_found_have_the_real_status_shape() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("dup", json!({})))
        .await
        .unwrap();
    let r = post(
        &client,
        "/api/v1/namespaces/default/configmaps",
        &json!({"metadata": {"name": "dup"}}),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "configmaps \"dup\" already exists", "reason": "AlreadyExists",
               "details": {"name": "dup", "kind": "configmaps"}, "code": 409})
    );
    let r = get(&client, "/apis/apps/v1/namespaces/default/deployments/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "deployments.apps \"nope\" not found");
    assert_eq!(
        r.json()["details"],
        json!({"name": "nope", "group": "apps", "kind": "deployments"})
    );
}

#[tokio::test]
async fn generate_name_makes_unique_names() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let mut names = Vec::new();
    for _ in 0..3 {
        let obj: ConfigMap =
            serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
        let c = api.create(&PostParams::default(), &obj).await.unwrap();
        let name = c.metadata.name.unwrap();
        assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
        names.push(name);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3);
    let err = api_err(
        api.create(&PostParams::default(), &ConfigMap::default())
            .await,
    );
    assert_eq!(err.code, 422);
}

#[tokio::test]
async fn invalid_names_and_missing_namespaces_are_refused() {
    let sim = sim().await;
    let client = sim.client();
    let bad: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let err = api_err(
        bad.create(&PostParams::default(), &cm("Bad_Name", json!({})))
            .await,
    );
    assert_eq!(err.code, 422);
    assert_eq!(err.details.unwrap().causes[0].field, "metadata.name");

    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = api_err(
        missing
            .create(&PostParams::default(), &cm("x", json!({})))
            .await,
    );
    assert_eq!(err.code, 404);
    assert_eq!(err.message, "namespaces \"nowhere\" not found");
}

#[tokio::test]
async fn dry_run_stores_nothing_and_changes_no_resource_version() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let before = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let out = api.create(&dry, &cm("ghost", json!({}))).await.unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("ghost"));
    assert!(api.get_opt("ghost").await.unwrap().is_none());

    api.create(&PostParams::default(), &cm("real", json!({})))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let mut obj = api.get("real").await.unwrap();
    obj.data = Some([("k".to_string(), "changed".to_string())].into());
    api.replace("real", &dry, &obj).await.unwrap();
    assert_eq!(api.get("real").await.unwrap().data.unwrap()["k"], "v");
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    api.delete("real", &dp).await.unwrap();
    assert!(api.get_opt("real").await.unwrap().is_some());
    assert_eq!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv
    );
    assert_ne!(before, rv);
}

#[tokio::test]
async fn list_with_label_and_field_selectors() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    for (n, l) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web"})),
        ("c", json!({"app": "db"})),
        ("d", json!({})),
    ] {
        api.create(&PostParams::default(), &cm(n, l)).await.unwrap();
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect()
    };
    for (sel, want) in [
        ("app=web", vec!["a", "b"]),
        ("app==web", vec!["a", "b"]),
        ("app!=web", vec!["c", "d"]),
        ("app in (db, x)", vec!["c"]),
        ("app notin (web)", vec!["c", "d"]),
        ("tier", vec!["a"]),
        ("!app", vec!["d"]),
        ("app=web,!tier", vec!["b"]),
    ] {
        let got = names(api.list(&ListParams::default().labels(sel)).await.unwrap());
        assert_eq!(got, want, "selector {sel}");
    }
    let got = names(
        api.list(&ListParams::default().fields("metadata.name=c"))
            .await
            .unwrap(),
    );
    assert_eq!(got, vec!["c"]);
    let got = names(
        api.list(&ListParams::default().fields("metadata.name!=c,metadata.namespace=default"))
            .await
            .unwrap(),
    );
    assert_eq!(got, vec!["a", "b", "d"]);
    let err = api_err(api.list(&ListParams::default().fields("data.k=v")).await);
    assert_eq!(err.code, 400);

    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(
        pods.list(&ListParams::default().fields("status.phase=Pending"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        pods.list(&ListParams::default().fields("status.phase=Running"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
}

#[tokio::test]
async fn list_pagination_with_limit_and_continue() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    for i in 0..7 {
        api.create(&PostParams::default(), &cm(&format!("cm-{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        assert!(page.metadata.resource_version.is_some());
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => {
                assert_eq!(
                    page.metadata.remaining_item_count,
                    Some(7 - seen.len() as i64)
                );
                token = Some(t);
            }
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    let err = api_err(
        api.list(&ListParams::default().limit(2).continue_token("garbage"))
            .await,
    );
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn cluster_wide_list_spans_namespaces() {
    let sim = sim().await;
    let client = sim.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
    )
    .await
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "other")
        .create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap();
    Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &cm("y", json!({})))
        .await
        .unwrap();
    let all: Api<ConfigMap> = Api::all(client);
    let mut got: Vec<(String, String)> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| (c.metadata.namespace.unwrap(), c.metadata.name.unwrap()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("default".into(), "y".into()), ("other".into(), "x".into())]
    );
}
