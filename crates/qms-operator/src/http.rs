//! The operator's HTTP server: `/metrics` (Prometheus text), `/healthz`, `/readyz` (ready once every
//! watch has listed). [`router`] returns a plain axum `Router` so more routes (the GitHub webhook)
//! can be merged into the same server.
//!
//! With leader election the server runs on every replica, standbys included:
//! - `/readyz` answers 200 `standby` on a standby. Readiness must not mean "is the leader": a
//!   Deployment's rolling update waits for the new pod to become Ready before it stops the old
//!   one, and the new pod cannot lead while the old one holds the Lease — the rollout would never
//!   finish — and a PodDisruptionBudget would count every standby as disrupted. On the leader,
//!   `/readyz` is 200 once its caches synced, as without election.
//! - The GitHub webhook is answered by any replica the Service picks. It runs no controller: it
//!   verifies the delivery and stores the change on the QmsWorkflow (spec, annotations) with a
//!   resourceVersion-tested write that also records the delivery id, so deliveries handled by
//!   different replicas cannot double-apply or lose each other's changes (qms-github's
//!   deduplication design). The leader's controllers pick the change up from the watch. Answering
//!   503 on standbys instead would lose deliveries: the Service does not retry another pod and
//!   GitHub does not redeliver failed deliveries by itself.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::context::Shared;

/// Refreshes the gauges computed from the caches (workflows by state, agent load) and renders.
pub fn render_metrics(shared: &Shared) -> String {
    let m = &shared.metrics;
    m.workflows.clear();
    for state in qms_api::WorkflowState::ALL {
        m.workflows
            .get_or_create(&crate::metrics::StateLabels {
                state: state.as_str().to_owned(),
            })
            .set(0);
    }
    for wf in shared.all_workflows() {
        m.workflows
            .get_or_create(&crate::metrics::StateLabels {
                state: crate::observe::state_of(&wf).as_str().to_owned(),
            })
            .inc();
    }
    m.leader.set(i64::from(shared.is_leader()));
    m.agent_running.clear();
    m.agent_capacity.clear();
    m.agent_healthy.clear();
    // An agent name in several namespaces is healthy only if it is healthy in all (fail closed).
    let mut healthy = std::collections::BTreeMap::<String, bool>::new();
    let now = chrono::Utc::now();
    for scope in &shared.scopes {
        let jobs = scope.stores.jobs.state();
        for agent in scope.stores.agents.state() {
            use kube::ResourceExt;
            let ns = agent.namespace().unwrap_or_default();
            let window = agent.spec.health.window_or_default();
            let stats = crate::observe::agent_stats(&ns, &agent.name_any(), window, &jobs, now);
            let labels = crate::metrics::AgentLabels {
                agent: agent.name_any(),
            };
            m.agent_running
                .get_or_create(&labels)
                .inc_by(i64::from(stats.running));
            m.agent_capacity
                .get_or_create(&labels)
                .inc_by(i64::from(agent.spec.load_capacity));
            // The same rule as the task placement (observe::agent_views) and `Healthy` condition.
            let ok = agent.spec.health.is_healthy(stats.recent_failures);
            *healthy.entry(agent.name_any()).or_insert(true) &= ok;
        }
    }
    for (agent, ok) in healthy {
        m.agent_healthy
            .get_or_create(&crate::metrics::AgentLabels { agent })
            .set(i64::from(ok));
    }
    m.render()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render_metrics(&shared),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if shared.is_standby() {
        // Serving (webhooks, metrics) and able to take over: see the module docs.
        (StatusCode::OK, "standby")
    } else if shared.ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

/// The operator's routes; merge further routers into it before serving.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared)
}

/// `router` (the GitHub webhook's) with the time to answer each request observed in
/// `qms_github_webhook_duration_seconds`, whatever the answer (a 401 or a 503 counts too).
pub fn timed_webhooks(router: Router, shared: Arc<Shared>) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let shared = shared.clone();
            async move {
                let start = std::time::Instant::now();
                let response = next.run(req).await;
                shared
                    .metrics
                    .webhook_duration
                    .observe(start.elapsed().as_secs_f64());
                response
            }
        },
    ))
}

/// Binds `addr` and serves `router` until the task is dropped.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}
