//! Deletion: finalizers, owner-reference garbage collection (Background, Foreground, Orphan),
//! namespace termination, deletecollection.

use crate::support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;
use support::*;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn owned(name: &str, owner: &ConfigMap, block: bool) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid,
        "blockOwnerDeletion": block
    }]}}))
    .unwrap()
}

#[tokio::test]
async fn finalizer_holds_the_object_until_removed() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let obj: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = api.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.deletion_grace_period_seconds, Some(0));
    // Adding a finalizer to an object being deleted is forbidden.
    let err = api_err(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "x/y"]}})),
        )
        .await,
    );
    assert_eq!(err.code, 422);
    // Removing the last finalizer deletes it.
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("f").await.unwrap().is_none());
}

#[tokio::test]
async fn background_deletion_collects_dependents() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let owner = api
        .create(&PostParams::default(), &cm("owner"))
        .await
        .unwrap();
    let other = api
        .create(&PostParams::default(), &cm("other-owner"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned("child", &owner, false))
        .await
        .unwrap();
    let grandchild_owner = api.get("child").await.unwrap();
    api.create(
        &PostParams::default(),
        &owned("grandchild", &grandchild_owner, false),
    )
    .await
    .unwrap();
    // A dependent with a second, living owner survives.
    let mut two: ConfigMap = owned("two-owners", &owner, false);
    let mut refs = two.metadata.owner_references.take().unwrap();
    refs.extend(owned("x", &other, false).metadata.owner_references.unwrap());
    two.metadata.owner_references = Some(refs);
    api.create(&PostParams::default(), &two).await.unwrap();

    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(api.get_opt("owner").await.unwrap().is_none());
    assert!(api.get_opt("child").await.unwrap().is_none());
    assert!(api.get_opt("grandchild").await.unwrap().is_none());
    assert!(api.get_opt("two-owners").await.unwrap().is_some());
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let owner = api
        .create(&PostParams::default(), &cm("owner"))
        .await
        .unwrap();
    let mut blocker = owned("blocker", &owner, true);
    blocker.metadata.finalizers = Some(vec!["example.com/slow".into()]);
    api.create(&PostParams::default(), &blocker).await.unwrap();
    api.create(&PostParams::default(), &owned("plain", &owner, false))
        .await
        .unwrap();

    api.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let held = api.get("owner").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(
        held.metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_string())
    );
    assert!(api.get_opt("plain").await.unwrap().is_none());
    assert!(
        api.get("blocker")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );

    // When the blocking dependent finally goes, so does the owner.
    api.patch(
        "blocker",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("blocker").await.unwrap().is_none());
    assert!(api.get_opt("owner").await.unwrap().is_none());
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_the_owner_reference() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let owner = api
        .create(&PostParams::default(), &cm("owner"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned("kid", &owner, false))
        .await
        .unwrap();
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    api.delete("owner", &dp).await.unwrap();
    let kid = api.get("kid").await.unwrap();
    assert!(kid.metadata.owner_references.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn deleting_a_namespace_cascades_and_blocks_new_content() {
    let sim = sim().await;
    let client = sim.client();
    install_widget_crd(&client).await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let mut held = cm("held");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    widgets(&client, "doomed")
        .create(
            &PostParams::default(),
            &widget("w", json!({"color": "red"})),
        )
        .await
        .unwrap();

    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = nss.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(cms.get_opt("a").await.unwrap().is_none());
    assert!(
        widgets(&client, "doomed")
            .get_opt("w")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let err = api_err(cms.create(&PostParams::default(), &cm("late")).await);
    assert_eq!(err.code, 403);
    assert_eq!(err.reason, "Forbidden");
    assert!(
        err.message.contains("because it is being terminated"),
        "{}",
        err.message
    );

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        nss.get_opt("doomed").await.unwrap().is_none(),
        "empty terminating namespace is removed"
    );
}

#[tokio::test]
async fn delete_collection_with_selector() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    for (n, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let o: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": n, "labels": {"app": app}}}))
                .unwrap();
        api.create(&PostParams::default(), &o).await.unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=x"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, vec!["c"]);
}

#[tokio::test]
async fn delete_preconditions_are_checked() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    api.create(&PostParams::default(), &cm("p")).await.unwrap();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let err = api_err(api.delete("p", &dp).await);
    assert_eq!(err.code, 409);
    assert!(api.get_opt("p").await.unwrap().is_some());
}

#[tokio::test]
async fn a_dependent_created_after_its_owner_is_gone_is_collected() {
    let sim = sim().await;
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let owner = api
        .create(&PostParams::default(), &cm("gone-owner"))
        .await
        .unwrap();
    let kept = api
        .create(&PostParams::default(), &cm("live-owner"))
        .await
        .unwrap();
    api.delete("gone-owner", &DeleteParams::default())
        .await
        .unwrap();
    // A controller racing its owner's deletion: the create succeeds, then the GC removes it.
    api.create(&PostParams::default(), &owned("late", &owner, true))
        .await
        .unwrap();
    assert!(api.get_opt("late").await.unwrap().is_none());
    // With a live owner the dependent stays.
    api.create(&PostParams::default(), &owned("on-time", &kept, true))
        .await
        .unwrap();
    assert!(api.get_opt("on-time").await.unwrap().is_some());
}
