//! Shared helpers for the `api_*` tests: raw HTTP through the sim's kube::Client, a test CRD.

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube_sim::KubeSim;
use serde_json::{Value, json};

pub const GROUP: &str = "example.kube-sim.dev";

/// A sim without the kubelet (these tests exercise the API server alone).
pub async fn sim() -> KubeSim {
    KubeSim::builder()
        .without_kubelet()
        .start()
        .await
        .expect("kube-sim starts")
}

/// A client for `sim` without kube's automatic retries of 429/503/504 (to see injected faults).
pub fn no_retry_client(sim: &KubeSim) -> Client {
    let mut config = kube::Config::new(sim.base_url().parse().expect("url"));
    config.default_namespace = "default".into();
    config.default_retry = false;
    Client::try_from(config).expect("client")
}

pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

/// Sends a request and returns status, headers and body whatever the status.
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
    accept: Option<&str>,
) -> Resp {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    if let Some(a) = accept {
        b = b.header("accept", a);
    }
    let req = b
        .body(kube::client::Body::from(body.unwrap_or_default()))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    Resp {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(client: &Client, path: &str) -> Resp {
    raw(client, "GET", path, None, None, None).await
}

pub async fn post(client: &Client, path: &str, body: &Value) -> Resp {
    raw(
        client,
        "POST",
        path,
        Some("application/json"),
        Some(body.to_string().into_bytes()),
        None,
    )
    .await
}

pub async fn put(client: &Client, path: &str, body: &Value) -> Resp {
    raw(
        client,
        "PUT",
        path,
        Some("application/json"),
        Some(body.to_string().into_bytes()),
        None,
    )
    .await
}

pub async fn patch(client: &Client, path: &str, content_type: &str, body: &str) -> Resp {
    raw(
        client,
        "PATCH",
        path,
        Some(content_type),
        Some(body.as_bytes().to_vec()),
        None,
    )
    .await
}

pub async fn delete(client: &Client, path: &str, body: Option<&Value>) -> Resp {
    raw(
        client,
        "DELETE",
        path,
        Some("application/json"),
        body.map(|b| b.to_string().into_bytes()),
        None,
    )
    .await
}

/// Reads a watch stream until `n` events arrived or the stream ended (bounded by a generous
/// safety timeout so a broken server fails the test instead of hanging it).
pub async fn watch_events(client: &Client, path: &str, n: usize) -> Vec<Value> {
    let req = http::Request::builder()
        .method("GET")
        .uri(path)
        .body(Vec::new())
        .expect("request");
    let stream = client.request_stream(req).await.expect("watch");
    let mut lines = stream.lines();
    let mut out = Vec::new();
    let read = async {
        while out.len() < n {
            match lines.next().await {
                Some(Ok(l)) if !l.trim().is_empty() => {
                    out.push(serde_json::from_str::<Value>(&l).expect("event JSON"))
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), read).await;
    out
}

pub fn widget_ar() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: "v1".into(),
        api_version: format!("{GROUP}/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

pub fn widgets(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &widget_ar())
}

/// A CRD exercising the schema features: enum, required, bounds, pattern, defaults, list types,
/// preserve-unknown-fields, a CEL rule, status subresource, printer columns, shortNames, categories.
pub fn widget_crd() -> Value {
    // Built in pieces: one big json! literal exceeds the default macro recursion limit.
    let spec_props = json!({
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
        "size": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
        "minSize": {"type": "integer", "default": 1},
        "mode": {"type": "string", "default": "fast"},
        "label": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "maxItems": 3},
        "parts": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}}},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    });
    let spec = json!({
        "type": "object",
        "required": ["color"],
        "x-kubernetes-validations": [{"rule": "self.minSize <= self.size", "message": "minSize must not exceed size"}],
        "properties": spec_props,
    });
    let status = json!({
        "type": "object",
        "properties": {
            "phase": {"type": "string"},
            "observedGeneration": {"type": "integer"},
            "conditions": {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}},
        }
    });
    let schema = json!({"type": "object", "properties": {"spec": spec, "status": status}});
    let columns = json!([
        {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
    ]);
    let version = json!({
        "name": "v1", "served": true, "storage": true,
        "subresources": {"status": {}},
        "additionalPrinterColumns": columns,
        "schema": {"openAPIV3Schema": schema},
    });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wg"], "categories": ["gadgetry"]},
            "versions": [version],
        }
    })
}

pub async fn install_widget_crd(client: &Client) {
    let r = post(
        client,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &widget_crd(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

pub fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("widget")
}

pub async fn create_widget(client: &Client, name: &str, spec: Value) -> DynamicObject {
    widgets(client, "default")
        .create(&PostParams::default(), &widget(name, spec))
        .await
        .expect("create widget")
}

pub fn widgets_path(ns: &str) -> String {
    format!("/apis/{GROUP}/v1/namespaces/{ns}/widgets")
}

/// The `kube::Error::Api` payload of a failed call.
pub fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
