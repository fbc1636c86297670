//! PATCH: JSON patch, merge patch, strategic merge (built-ins only), server-side apply with
//! field managers, conflicts and force.

use crate::support;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

fn pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "labels": {"a": "1"}},
        "spec": {"containers": [
            {"name": "main", "image": "img:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "side:1"}
        ]}
    }))
    .unwrap()
}

#[tokio::test]
async fn json_patch_with_test_op() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "j"}, "data": {"a": "1"}})).unwrap(),
    )
    .await
    .unwrap();
    let ops = r#"[{"op":"test","path":"/data/a","value":"1"},{"op":"replace","path":"/data/a","value":"2"},{"op":"add","path":"/data/b","value":"3"}]"#;
    let r = patch_raw(&client, "application/json-patch+json", ops).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["data"], json!({"a": "2", "b": "3"}));
    // A failing test op rejects the whole patch.
    let r = patch_raw(
        &client,
        "application/json-patch+json",
        r#"[{"op":"test","path":"/data/a","value":"1"},{"op":"remove","path":"/data/b"}]"#,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(api.get("j").await.unwrap().data.unwrap()["b"], "3");
}

#[tokio::test]
async fn json_patch_test_of_null_passes_for_a_missing_path_as_the_apiserver_does() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "j"}, "data": {"a": "1"}})).unwrap(),
    )
    .await
    .unwrap();
    // What kube-runtime's finalizer() sends to add the first finalizer.
    let first = r#"[{"op":"test","path":"/metadata/finalizers","value":null},{"op":"add","path":"/metadata/finalizers","value":["x.io/f"]}]"#;
    let r = patch_raw(&client, "application/json-patch+json", first).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["metadata"]["finalizers"], json!(["x.io/f"]));
    // Once the path exists, the same test fails: null does not match the list.
    let again = patch_raw(&client, "application/json-patch+json", first).await;
    assert_eq!(again.status, 422, "{}", again.text);
}

async fn patch_raw(client: &kube::Client, ct: &str, body: &str) -> Resp {
    patch(client, "/api/v1/namespaces/default/configmaps/j", ct, body).await
}

#[tokio::test]
async fn merge_patch_sets_and_removes() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "m"}, "data": {"a": "1", "b": "2"}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let out = api
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        out.data.unwrap(),
        [
            ("b".to_string(), "2".to_string()),
            ("c".to_string(), "3".to_string())
        ]
        .into()
    );
    // A resourceVersion in a patch is a precondition.
    let err = api_err(
        api.patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}})),
        )
        .await,
    );
    assert_eq!(err.code, 409);
}

#[tokio::test]
async fn strategic_merge_patch_merges_lists_by_key() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &pod()).await.unwrap();
    let patch = json!({"spec": {"containers": [
        {"name": "main", "image": "img:2", "env": [{"name": "B", "value": "2"}]},
        {"name": "side", "$patch": "delete"}
    ]}, "metadata": {"labels": {"b": "2"}}});
    let out = api
        .patch("p", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let cs = out.spec.unwrap().containers;
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].image.as_deref(), Some("img:2"));
    let env: Vec<String> = cs[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env, vec!["A", "B"]);
    let labels = out.metadata.labels.unwrap();
    assert_eq!((labels["a"].as_str(), labels["b"].as_str()), ("1", "2"));

    // Conditions merge by type (on the status subresource).
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}});
    api.patch_status("p", &PatchParams::default(), &Patch::Strategic(status))
        .await
        .unwrap();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let out = api
        .patch_status("p", &PatchParams::default(), &Patch::Strategic(status))
        .await
        .unwrap();
    let conds: Vec<(String, String)> = out
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    assert_eq!(
        conds,
        vec![
            ("Ready".into(), "True".into()),
            ("Initialized".into(), "True".into())
        ]
    );
}

#[tokio::test]
async fn strategic_merge_patch_is_refused_for_custom_resources() {
    let sim = sim().await;
    let client = sim.client();
    install_widget_crd(&client).await;
    create_widget(&client, "w", json!({"color": "red"})).await;
    let r = patch(
        &client,
        &format!("{}/w", widgets_path("default")),
        "application/strategic-merge-patch+json",
        r#"{"spec":{"size":2}}"#,
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.text);
    assert_eq!(r.json()["reason"], "UnsupportedMediaType");
}

#[tokio::test]
async fn server_side_apply_tracks_managers_conflicts_and_force() {
    let sim = sim().await;
    let client = sim.client();
    install_widget_crd(&client).await;
    let api = widgets(&client, "default");
    let a = json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget", "metadata": {"name": "s"},
        "spec": {"color": "red", "size": 2, "parts": [{"name": "x", "count": 1}]}});
    // Apply creates the object; managedFields record the Apply operation.
    let created = api
        .patch("s", &PatchParams::apply("alice"), &Patch::Apply(&a))
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["size"], 2);
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&mf[0].fields_v1).unwrap();
    assert!(fields["f:spec"]["f:size"].is_object(), "{fields}");
    assert!(
        fields["f:spec"]["f:parts"]["k:{\"name\":\"x\"}"]["."].is_object(),
        "{fields}"
    );

    // Another manager changing an owned field conflicts, naming field and owner.
    let b = json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget", "metadata": {"name": "s"}, "spec": {"size": 5}});
    let err = api_err(
        api.patch("s", &PatchParams::apply("bob"), &Patch::Apply(&b))
            .await,
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert!(
        err.message.contains("conflict with \"alice\""),
        "{}",
        err.message
    );
    let causes = err.details.unwrap().causes;
    assert_eq!(causes[0].field, ".spec.size");
    assert_eq!(causes[0].reason, "FieldManagerConflict");

    // Same value: no conflict, shared ownership. A new list-map item merges by key.
    let b2 = json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget", "metadata": {"name": "s"},
        "spec": {"size": 2, "parts": [{"name": "y", "count": 2}]}});
    let shared = api
        .patch("s", &PatchParams::apply("bob"), &Patch::Apply(&b2))
        .await
        .unwrap();
    let parts: Vec<&str> = shared.data["spec"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(parts, vec!["x", "y"]);

    // Force takes the field over (bob keeps applying his list item).
    let b3 = json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget", "metadata": {"name": "s"},
        "spec": {"size": 5, "parts": [{"name": "y", "count": 2}]}});
    let forced = api
        .patch("s", &PatchParams::apply("bob").force(), &Patch::Apply(&b3))
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["size"], 5);
    let alice = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("alice"))
        .unwrap();
    let fields = serde_json::to_value(&alice.fields_v1).unwrap();
    assert!(
        fields["f:spec"].get("f:size").is_none(),
        "alice lost spec.size: {fields}"
    );

    // Alice dropping a field she alone owns removes it.
    let a2 = json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget", "metadata": {"name": "s"},
        "spec": {"color": "red"}});
    let out = api
        .patch("s", &PatchParams::apply("alice"), &Patch::Apply(&a2))
        .await
        .unwrap();
    let parts: Vec<&str> = out.data["spec"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(parts, vec!["y"], "item x was only alice's");
    assert_eq!(out.data["spec"]["size"], 5, "bob's field stays");
}

#[tokio::test]
async fn apply_requires_a_field_manager_and_updates_track_ownership() {
    let sim = sim().await;
    let client = sim.client();
    let r = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cfg",
        Some("application/apply-patch+yaml"),
        Some(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: '1'\n".to_vec(),
        ),
        None,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);

    let r = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cfg?fieldManager=yaml-applier",
        Some("application/apply-patch+yaml"),
        Some(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: '1'\n".to_vec(),
        ),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["data"]["a"], "1");

    // An Update by another manager takes over the field it changed.
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PatchParams {
        field_manager: Some("editor".into()),
        ..Default::default()
    };
    let out = api
        .patch("cfg", &pp, &Patch::Merge(json!({"data": {"a": "2"}})))
        .await
        .unwrap();
    let mf = out.metadata.managed_fields.unwrap();
    let editor = mf
        .iter()
        .find(|m| m.manager.as_deref() == Some("editor"))
        .unwrap();
    assert_eq!(editor.operation.as_deref(), Some("Update"));
    assert!(
        mf.iter()
            .all(|m| m.manager.as_deref() != Some("yaml-applier")),
        "applier lost its only field: {mf:?}"
    );
    // So re-applying the old value now conflicts with the editor.
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}});
    let err = api_err(
        api.patch(
            "cfg",
            &PatchParams::apply("yaml-applier"),
            &Patch::Apply(&cfg),
        )
        .await,
    );
    assert_eq!(err.code, 409);
    assert!(err.message.contains("\"editor\""), "{}", err.message);
}
