//! Fault injection (errors, 429 with Retry-After, conflicts, dropped and expired watches) and
//! request counters.

use crate::support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube_sim::{FaultRule, KubeSim};
use serde_json::json;
use support::*;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

#[tokio::test]
async fn error_rules_inject_500_429_and_409_for_matching_requests_only() {
    let sim = sim().await;
    let client = no_retry_client(&sim);
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("a")).await.unwrap();

    sim.faults().add(
        FaultRule::error(500)
            .verb("get")
            .resource("configmaps")
            .times(2),
    );
    assert_eq!(api_err(api.get("a").await).code, 500);
    assert_eq!(api_err(api.get("a").await).code, 500);
    api.get("a").await.expect("rule spent after 2 failures");
    api.list(&ListParams::default())
        .await
        .expect("other verbs unaffected");

    sim.faults()
        .add(FaultRule::too_many_requests(7).verb("list").times(1));
    let r = get(&client, "/api/v1/namespaces/default/configmaps").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "7");
    assert_eq!(r.json()["reason"], "TooManyRequests");

    sim.faults().add(
        FaultRule::conflict()
            .verb("create")
            .resource("configmaps")
            .times(1),
    );
    let err = api_err(api.create(&PostParams::default(), &cm("b")).await);
    assert_eq!(err.code, 409);
    assert!(
        api.get_opt("b").await.unwrap().is_none(),
        "a faulted write stores nothing"
    );
    api.create(&PostParams::default(), &cm("b")).await.unwrap();

    sim.faults().add(FaultRule::error(503).resource("secrets"));
    let r = get(&client, "/api/v1/namespaces/default/secrets").await;
    assert_eq!(r.status, 503);
    sim.faults().clear();
    assert_eq!(
        get(&client, "/api/v1/namespaces/default/secrets")
            .await
            .status,
        200
    );

    // kube's default client retries a 429 after Retry-After and succeeds; the counters show both tries.
    sim.faults().add(
        FaultRule::too_many_requests(1)
            .verb("list")
            .resource("serviceaccounts")
            .times(1),
    );
    let before = sim.counters().get("list", "serviceaccounts");
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::default_namespaced(sim.client());
    sas.list(&ListParams::default()).await.expect("retried");
    assert_eq!(sim.counters().get("list", "serviceaccounts") - before, 2);
}

#[tokio::test]
async fn probabilistic_faults_are_reproducible_with_a_seed() {
    async fn run(seed: u64) -> Vec<u16> {
        let sim = KubeSim::builder()
            .without_kubelet()
            .seed(seed)
            .start()
            .await
            .unwrap();
        sim.faults()
            .add(FaultRule::error(500).verb("list").probability(0.5));
        let mut codes = Vec::new();
        for _ in 0..24 {
            codes.push(
                get(&sim.client(), "/api/v1/namespaces/default/configmaps")
                    .await
                    .status,
            );
        }
        codes
    }
    let a = run(42).await;
    assert_eq!(a, run(42).await);
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
}

#[tokio::test]
async fn builder_faults_and_latency_apply() {
    let sim = KubeSim::builder()
        .without_kubelet()
        .fault(FaultRule::error(500).verb("delete"))
        .start()
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(sim.client());
    api.create(&PostParams::default(), &cm("x")).await.unwrap();
    assert_eq!(
        api_err(api.delete("x", &Default::default()).await).code,
        500
    );
    // Latency delays but does not fail the request.
    sim.faults()
        .set_latency(Some("get"), None, std::time::Duration::from_millis(20));
    api.get("x").await.unwrap();
}

#[tokio::test]
async fn watches_can_be_dropped_and_expired() {
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
    for n in ["a", "b", "c"] {
        api.create(&PostParams::default(), &cm(n)).await.unwrap();
    }
    // End each watch after 2 events: the stream closes although a third is available.
    sim.faults().drop_watches_after(Some(2));
    let events = watch_events(
        &client,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"),
        10,
    )
    .await;
    assert_eq!(events.len(), 2);
    sim.faults().drop_watches_after(None);

    // Force 410 Gone on the next watch only.
    sim.faults().expire_next_watch();
    let events = watch_events(
        &client,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"),
        10,
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    let events = watch_events(
        &client,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"),
        3,
    )
    .await;
    assert_eq!(events.len(), 3);

    // drop_watches ends streams that are open right now: read the three existing events,
    // then the stream must end instead of waiting for more.
    use futures::{AsyncBufReadExt, StreamExt};
    let req = http::Request::builder()
        .uri(format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"
        ))
        .body(Vec::new())
        .unwrap();
    let mut lines = client.request_stream(req).await.unwrap().lines();
    for _ in 0..3 {
        let line = lines.next().await.unwrap().unwrap();
        assert!(line.contains("ADDED"), "{line}");
    }
    sim.faults().drop_watches();
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next())
        .await
        .expect("stream ended");
    assert!(next.is_none() || next.unwrap().is_err());
}

#[tokio::test]
async fn counters_count_requests_per_verb_and_resource() {
    let sim = sim().await;
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    sim.counters().reset();
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    api.get("a").await.unwrap();
    api.get("a").await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    let _ = api.get("missing").await;
    let _ = get(&client, "/api/v1/namespaces/default/pods/x/status").await;
    assert_eq!(sim.counters().get("create", "configmaps"), 1);
    assert_eq!(sim.counters().get("get", "configmaps"), 3);
    assert_eq!(sim.counters().get("list", "configmaps"), 1);
    assert_eq!(sim.counters().get("get", "pods/status"), 1);
    assert_eq!(sim.counters().get("delete", "configmaps"), 0);
    assert_eq!(sim.counters().total(), 6);
}

#[tokio::test]
async fn counters_are_also_kept_per_client_user_agent() {
    let sim = sim().await;
    let operator: Api<ConfigMap> =
        Api::default_namespaced(sim.client_with_user_agent("qms-operator/0.1.0").unwrap());
    let other: Api<ConfigMap> = Api::default_namespaced(sim.client());
    sim.counters().reset();
    operator
        .create(&PostParams::default(), &cm("a"))
        .await
        .unwrap();
    operator.get("a").await.unwrap();
    other.get("a").await.unwrap();
    let by = sim.counters().snapshot_by_client();
    let key = |ua: &str, verb: &str| (ua.to_owned(), verb.to_owned(), "configmaps".to_owned());
    assert_eq!(by.get(&key("qms-operator", "create")), Some(&1));
    assert_eq!(by.get(&key("qms-operator", "get")), Some(&1));
    let others: u64 = by
        .iter()
        .filter(|((ua, verb, res), _)| ua != "qms-operator" && verb == "get" && res == "configmaps")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(others, 1);
    assert_eq!(
        sim.counters().get("get", "configmaps"),
        2,
        "the totals still count both"
    );
    sim.counters().reset();
    assert!(sim.counters().snapshot_by_client().is_empty());
}
