//! Trace export (spec §5.3): the operator on kube-sim, GitHub on (a fake GitHub on wiremock),
//! with an OTLP/HTTP endpoint pointing at a receiver inside the test, which decodes the protobuf
//! exports. A workflow carrying a `traceparent` annotation is reconciled in that trace (the
//! reconcile and Job spans carry its trace id and the workflow's correlation id, the Jobs carry
//! the trace on); a signed webhook delivery writes that annotation itself, so delivery →
//! reconcile → Job → check-run sync are one trace.
//!
//! The exporter is a layer of this test's own subscriber, not of the process-wide one the other
//! tests of the binary share (`common::init_tracing`): see [`scoped_runtime`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use hmac::{Hmac, Mac};
use kube::ResourceExt;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use qms_api::WorkflowState;
use qms_operator::telemetry::ANNOTATION_TRACEPARENT;
use serde_json::json;

const SECRET: &str = "whsec-trace-1f2e";
const REPO: &str = "creo/traced-app";
const PR: u64 = 99;
const SHA: &str = "5e4f30211223344556677889900aabbc9a8b7c6d";

/// A received span: trace id, span id and parent span id (hex), name, string attributes.
#[derive(Clone, Debug)]
struct Received {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    attributes: Vec<(String, String)>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP receiver on 127.0.0.1: `POST /v1/traces` with `application/x-protobuf`.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let protobuf = headers
                        .get("content-type")
                        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
                    let Ok(req) = ExportTraceServiceRequest::decode(body.as_ref()) else {
                        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                    };
                    if !protobuf {
                        return (axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                    }
                    let mut store = store.lock().unwrap();
                    for rs in req.resource_spans {
                        for ss in rs.scope_spans {
                            for s in ss.spans {
                                let attributes = s
                                    .attributes
                                    .iter()
                                    .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                                        Value::StringValue(v) => Some((kv.key.clone(), v.clone())),
                                        _ => None,
                                    })
                                    .collect();
                                store.push(Received {
                                    trace_id: hex(&s.trace_id),
                                    span_id: hex(&s.span_id),
                                    parent: hex(&s.parent_span_id),
                                    name: s.name,
                                    attributes,
                                });
                            }
                        }
                    }
                    (
                        axum::http::StatusCode::OK,
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), spans)
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// POSTs a signed `pull_request` delivery; returns the status code and body.
async fn deliver_pull_request(addr: std::net::SocketAddr) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let repository = json!({
        "id": 880002, "name": "traced-app", "full_name": REPO,
        "owner": {"login": "creo", "type": "Organization"}, "fork": false
    });
    let body = serde_json::to_vec(&json!({
        "action": "opened",
        "number": PR,
        "pull_request": {
            "number": PR, "state": "open", "draft": false,
            "html_url": format!("https://github.com/{REPO}/pull/{PR}"),
            "user": {"login": "bob", "type": "User"},
            "head": {"sha": SHA, "ref": "feature/trace", "repo": repository},
            "base": {"sha": "0000000000000000000000000000000000000001", "ref": "main", "repo": repository}
        },
        "repository": repository,
        "sender": {"login": "bob", "type": "User"}
    }))
    .unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: qms.example.com\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nX-GitHub-Event: pull_request\r\n\
         X-GitHub-Delivery: trace-delivery-1\r\nX-GitHub-Hook-ID: 78\r\n\
         X-Hub-Signature-256: {}\r\n\r\n",
        body.len(),
        sign(&body)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}

/// Flushes the exporter until the spans of `trace_id` satisfy `done`; returns them.
async fn spans_of(
    export: &Arc<qms_operator::telemetry::Tracing>,
    received: &Arc<Mutex<Vec<Received>>>,
    trace_id: &str,
    what: &str,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let start = tokio::time::Instant::now();
    loop {
        let e = export.clone();
        tokio::task::spawn_blocking(move || e.flush())
            .await
            .unwrap();
        let spans: Vec<Received> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        if done(&spans) {
            return spans;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "trace {trace_id}: no {what}; received {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

thread_local! {
    /// The test subscriber as this thread's default, for as long as the thread runs.
    static SCOPED: std::cell::RefCell<Option<::tracing::dispatcher::DefaultGuard>> =
        const { std::cell::RefCell::new(None) };
}

/// A runtime (2 workers, like the other tests) on whose every thread, workers and blocking pool,
/// `dispatch` is the default subscriber: the operator's tasks and the kube-sim's record their
/// spans there, while the other tests of this binary, on their own runtimes, never see it.
fn scoped_runtime(dispatch: &::tracing::Dispatch) -> tokio::runtime::Runtime {
    let dispatch = dispatch.clone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            let guard = ::tracing::dispatcher::set_default(&dispatch);
            SCOPED.with(|g| *g.borrow_mut() = Some(guard));
        })
        .on_thread_stop(|| SCOPED.with(|g| drop(g.borrow_mut().take())))
        .build()
        .expect("test runtime")
}

#[test]
fn a_workflow_is_reconciled_in_the_trace_of_its_traceparent() {
    use tracing_subscriber::prelude::*;
    // The receiver and the exporter's HTTP requests run on a runtime of their own: the layer has
    // to exist before the test's runtime starts its threads with it, and the exporter's last
    // flush (when the subscriber is dropped) needs them after that runtime is gone.
    let export_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("exporter runtime");
    let (base, received) = export_rt.block_on(receiver());
    // The traces URL as `run` derives it from OTEL_EXPORTER_OTLP_ENDPOINT.
    let args = qms_operator::config::SettingsArgs {
        otlp_endpoint: Some(base.clone()),
        leader_elect: false,
        ..Default::default()
    };
    let settings = qms_operator::Settings::load(&args).expect("settings");
    let url = settings.otlp_endpoint.clone().expect("endpoint set");
    assert_eq!(url, format!("{base}/v1/traces"));
    let (layer, export) = {
        let _on = export_rt.enter();
        qms_operator::telemetry::otlp_layer(&url).expect("exporter")
    };
    let dispatch = ::tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let rt = scoped_runtime(&dispatch);
    ::tracing::dispatcher::with_default(&dispatch, || {
        rt.block_on(reconciled_in_the_trace(settings, received, export))
    });
    drop(rt);
    drop(dispatch);
    drop(export_rt);
}

async fn reconciled_in_the_trace(
    settings: qms_operator::Settings,
    received: Arc<Mutex<Vec<Received>>>,
    tracing_export: qms_operator::telemetry::Tracing,
) {
    let env = Env::start().await;
    env.apply_examples(false).await;
    let gh = crate::fake_github::FakeGithub::start().await;
    env.apply(&agent("tracer", 2, &result("success", "", 0)))
        .await;
    env.apply(
        r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: traced
spec:
  steps:
    - name: check
      type: parallel
      agents: [{name: tracer}]
      timeout: 60s
"#,
    )
    .await;
    let settings = qms_operator::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        github: Some(qms_github::GithubConfig {
            api_base_url: gh.uri(),
            webhook_secrets: vec![qms_github::Secret::new(SECRET)],
            credentials: qms_github::Credentials::Token(qms_github::Secret::new("ghp_trace0123")),
            namespace: "default".into(),
            writes_per_minute: 6000,
            ..qms_github::GithubConfig::default()
        }),
        ..settings
    };
    let op = qms_operator::start(
        env.client.clone(),
        settings,
        qms_operator::Http::On { extra: None },
    )
    .await
    .expect("operator starts");
    let addr = op.http_addr.expect("HTTP server");
    op.wait_ready().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let delivery_span = "00f067aa0ba902b7";
    env.apply(&format!(
        r#"apiVersion: qms.creo.dev/v1
kind: QmsWorkflow
metadata:
  name: traced
  annotations:
    {ANNOTATION_TRACEPARENT}: 00-{trace_id}-{delivery_span}-01
spec:
  repository: creo/app
  pullRequest: 7
  headSha: "abcdef1"
  baseRef: main
  headRef: feature
  templateRef:
    name: traced
"#
    ))
    .await;
    let wf = env.wait_state("traced", WorkflowState::Completed).await;
    let correlation = wf
        .status
        .as_ref()
        .and_then(|s| s.correlation_id.clone())
        .expect("a correlation id");

    // The Job continues the trace.
    let jobs = env.list_jobs().await;
    assert!(!jobs.is_empty());
    for job in &jobs {
        let tp = job
            .annotations()
            .get(ANNOTATION_TRACEPARENT)
            .unwrap_or_else(|| panic!("{} has no traceparent", job.name_any()));
        assert!(tp.starts_with(&format!("00-{trace_id}-")), "{tp}");
    }

    let export = Arc::new(tracing_export);
    let spans = spans_of(
        &export,
        &received,
        trace_id,
        "reconcile with the correlation id and Job spans",
        |spans| {
            spans.iter().any(|s| {
                s.name == "workflow reconcile"
                    && s.attribute("qms.correlation_id") == Some(correlation.as_str())
            }) && spans.iter().any(|s| s.name == "create job")
        },
    )
    .await;
    // Reconciles are children of the delivery span; the Job span of a reconcile.
    let reconciles: Vec<&Received> = spans
        .iter()
        .filter(|s| s.name == "workflow reconcile")
        .collect();
    assert!(
        reconciles.iter().all(|s| s.parent == delivery_span),
        "{reconciles:?}"
    );
    assert!(
        reconciles
            .iter()
            .all(|s| s.attribute("workflow") == Some("default/traced")),
        "{reconciles:?}"
    );
    // The Job span is a reconcile's child, and the Jobs' traceparent names a Job span.
    let job_spans: Vec<&Received> = spans.iter().filter(|s| s.name == "create job").collect();
    assert!(
        job_spans
            .iter()
            .all(|j| reconciles.iter().any(|r| r.span_id == j.parent)),
        "{job_spans:?}"
    );
    for job in &jobs {
        let tp = &job.annotations()[ANNOTATION_TRACEPARENT];
        assert!(
            job_spans
                .iter()
                .any(|s| *tp == format!("00-{trace_id}-{}-01", s.span_id)),
            "{tp} names no exported Job span: {job_spans:?}"
        );
    }

    // A signed delivery: the workflow it creates carries the delivery span's context, and the
    // reconciles, Jobs and check-run syncs of that workflow are in the delivery's trace.
    let (code, answer) = deliver_pull_request(addr).await;
    assert_eq!(code, 200, "{answer}");
    let name = qms_github::naming::workflow_name(REPO, PR);
    let wf = env
        .wait_for(&name, "a correlation id", |wf| {
            wf.status
                .as_ref()
                .is_some_and(|s| s.correlation_id.is_some())
        })
        .await;
    let tp = wf.annotations()[ANNOTATION_TRACEPARENT].clone();
    let sc = qms_github::trace_context::parse(&tp).expect("a valid traceparent");
    let (trace, delivery) = (sc.trace_id().to_string(), sc.span_id().to_string());
    let correlation = wf.status.unwrap().correlation_id.unwrap();
    let spans = spans_of(
        &export,
        &received,
        &trace,
        "delivery, reconcile, Job and check-run sync spans",
        |spans| {
            let child = |name: &str| {
                spans.iter().any(|s| {
                    s.name == name
                        && s.parent == delivery
                        && s.attribute("qms.correlation_id") == Some(correlation.as_str())
                })
            };
            spans
                .iter()
                .any(|s| s.name == "webhook delivery" && s.span_id == delivery)
                && child("workflow reconcile")
                && child("check-run sync")
                && spans.iter().any(|s| s.name == "create job")
        },
    )
    .await;
    let delivery_span = spans.iter().find(|s| s.span_id == delivery).unwrap();
    assert_eq!(
        delivery_span
            .attribute("delivery")
            .map(|d| d.ends_with("trace-delivery-1")),
        Some(true),
        "{delivery_span:?}"
    );
    op.stop().await;
}
