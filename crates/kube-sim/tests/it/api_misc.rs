//! Discovery documents, OpenAPI for built-ins, pod logs, protobuf request bodies, metadata-only
//! responses and built-in defaults.

use crate::support;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, LogParams, PostParams};
use kube::discovery::Discovery;
use serde_json::json;
use support::*;

#[tokio::test]
async fn discovery_documents() {
    let sim = sim().await;
    let client = sim.client();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "35"));
    let core = client.list_core_api_resources("v1").await.unwrap();
    let pods = core.resources.iter().find(|r| r.name == "pods").unwrap();
    assert!(pods.namespaced);
    assert_eq!(pods.kind, "Pod");
    assert_eq!(pods.short_names.as_deref(), Some(&["po".to_string()][..]));
    assert!(pods.verbs.contains(&"watch".to_string()));
    assert!(core.resources.iter().any(|r| r.name == "pods/log"));
    assert!(core.resources.iter().any(|r| r.name == "pods/status"));
    let groups = client.list_api_groups().await.unwrap();
    for g in [
        "apps",
        "batch",
        "coordination.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
        "rbac.authorization.k8s.io",
        "networking.k8s.io",
        "policy",
    ] {
        assert!(groups.groups.iter().any(|x| x.name == g), "{g}");
    }
    let agg = client.list_core_api_versions_aggregated().await.unwrap();
    assert!(
        agg.items[0].versions[0]
            .resources
            .iter()
            .any(|r| r.resource.as_deref() == Some("configmaps"))
    );
    // kube's discovery (aggregated) resolves built-ins.
    let d = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(d.groups().any(|g| g.name() == "batch"));
    assert_eq!(get(&client, "/apis/nonexistent.io/v1").await.status, 404);
    assert_eq!(get(&client, "/api/v1/nonexistents").await.status, 404);
}

#[tokio::test]
async fn openapi_v3_describes_built_ins_with_gvk() {
    let sim = sim().await;
    let client = sim.client();
    let index = get(&client, "/openapi/v3").await.json();
    for p in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/apiextensions.k8s.io/v1",
    ] {
        assert!(
            index["paths"][p]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with(&format!("/openapi/v3/{p}?hash=")),
            "{p}"
        );
    }
    let doc = get(&client, "/openapi/v3/apis/apps/v1").await.json();
    let dep = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        dep["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
    );
}

#[tokio::test]
async fn pod_logs_are_served_from_the_log_store() {
    let sim = sim().await;
    let client = sim.client();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let err = api_err(pods.logs("nope", &LogParams::default()).await);
    assert_eq!(err.code, 404);
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(pods.logs("p", &LogParams::default()).await.unwrap(), "");
    sim.pod_logs().append("default", "p", b"one\ntwo\nthree\n");
    assert_eq!(
        pods.logs("p", &LogParams::default()).await.unwrap(),
        "one\ntwo\nthree\n"
    );
    let tail = LogParams {
        tail_lines: Some(2),
        container: Some("ignored".into()),
        ..Default::default()
    };
    assert_eq!(pods.logs("p", &tail).await.unwrap(), "two\nthree\n");
    // follow streams until the pod finishes.
    let follow = LogParams {
        follow: true,
        ..Default::default()
    };
    let status = json!({"status": {"phase": "Succeeded"}});
    pods.patch_status("p", &Default::default(), &kube::api::Patch::Merge(status))
        .await
        .unwrap();
    assert_eq!(pods.logs("p", &follow).await.unwrap(), "one\ntwo\nthree\n");
}

/// A `k8s\0` protobuf envelope around a ConfigMap, as client-go's typed clients send it.
fn protobuf_configmap(name: &str) -> Vec<u8> {
    fn field(num: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(num << 3) | 2, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }
    let meta = field(1, name.as_bytes());
    let data = field(2, &[field(1, b"key"), field(2, b"value")].concat());
    let cm = [field(1, &meta), data].concat();
    let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
    [
        b"k8s\0".to_vec(),
        field(1, &type_meta),
        field(2, &cm),
        field(4, b"application/vnd.kubernetes.protobuf"),
    ]
    .concat()
}

#[tokio::test]
async fn protobuf_request_bodies_are_understood_and_answered_in_json() {
    let sim = sim().await;
    let client = sim.client();
    let r = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/vnd.kubernetes.protobuf"),
        Some(protobuf_configmap("from-proto")),
        Some("application/vnd.kubernetes.protobuf,application/json"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/json");
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    assert_eq!(
        cms.get("from-proto").await.unwrap().data.unwrap()["key"],
        "value"
    );
    // A kind it cannot decode is 415, not a silent misparse.
    let mut body = protobuf_configmap("x");
    let pos = body.windows(9).position(|w| w == b"ConfigMap").unwrap();
    body[pos..pos + 9].copy_from_slice(b"ConfigMop");
    let r = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/vnd.kubernetes.protobuf"),
        Some(body),
        None,
    )
    .await;
    assert_eq!(r.status, 415);
}

#[tokio::test]
async fn metadata_only_lists() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "m"}, "data": {"a": "b"}})).unwrap(),
    )
    .await
    .unwrap();
    let list = cms.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("m"));
    let one = cms.get_metadata("m").await.unwrap();
    assert_eq!(one.metadata.name.as_deref(), Some("m"));
}

#[tokio::test]
async fn jobs_get_the_apiservers_defaults_and_validation() {
    let sim = sim().await;
    let jobs: Api<Job> = Api::default_namespaced(sim.client());
    let job: Job = serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1", "command": ["true"]}]}}}}))
    .unwrap();
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    let spec = created.spec.unwrap();
    let uid = created.metadata.uid.unwrap();
    assert_eq!(spec.completions, Some(1));
    assert_eq!(spec.parallelism, Some(1));
    assert_eq!(spec.backoff_limit, Some(6));
    assert_eq!(
        spec.selector.unwrap().match_labels.unwrap()["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(
        spec.template.metadata.unwrap().labels.unwrap()["job-name"],
        "j"
    );
    assert!(created.status.is_none() || created.status.unwrap().active.is_none());
    let bad: Job = serde_json::from_value(
        json!({"metadata": {"name": "bad"}, "spec": {"template": {"spec": {
        "restartPolicy": "Always", "containers": [{"name": "c", "image": "x"}]}}}}),
    )
    .unwrap();
    let err = api_err(jobs.create(&PostParams::default(), &bad).await);
    assert_eq!(err.code, 422);
    assert_eq!(
        err.details.unwrap().causes[0].field,
        "spec.template.spec.restartPolicy"
    );
}
