//! `POST /v1/tasks/{task_id}/result`: an agent submits its result (the JSON of the termination
//! message, of any realistic size) with `Authorization: Bearer $QMS_RESULT_TOKEN`.
//!
//! | answer | when | changes |
//! |---|---|---|
//! | 201 | stored | the task's result ConfigMap |
//! | 200 | the same result (same bytes) was stored already | nothing |
//! | 400 | the body is not UTF-8 JSON | nothing |
//! | 401 | no `Authorization: Bearer` token, or not a token of this operator's form | nothing |
//! | 403 | the token is not valid for this task (another task, another workflow, another key) | nothing |
//! | 404 | the workflow or the task does not exist | nothing |
//! | 409 | the task has ended, or a different result was stored already | nothing |
//! | 413 | the body is over `maxBodyBytes` (refused from `Content-Length`, or as soon as the read passes the limit), or it compresses to more than an object holds | nothing |
//! | 422 | the JSON is not a valid result (the reason names the field) | nothing |
//! | 503 | the Kubernetes API could not be reached: retry | nothing |
//!
//! Every replica serves it (standbys included): it reads the workflow from the API server, not
//! from a cache, and its only write is a create of a deterministically named object.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use qms_api::{QmsWorkflow, TaskPhase};
use qms_engine::result::AgentResult;
use serde_json::json;

use super::{ResultsSettings, store, token};
use crate::error::api_code;

#[derive(Clone)]
pub struct EndpointState {
    pub client: Client,
    pub settings: ResultsSettings,
}

pub fn router(client: Client, settings: ResultsSettings) -> Router {
    Router::new()
        .route("/v1/tasks/{task_id}/result", post(submit))
        .with_state(Arc::new(EndpointState { client, settings }))
}

fn answer(code: StatusCode, body: serde_json::Value) -> Response {
    (code, axum::Json(body)).into_response()
}

fn refuse(code: StatusCode, reason: impl Into<String>) -> Response {
    let mut r = answer(code, json!({ "error": reason.into() }));
    if code == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

fn unavailable(e: &kube::Error) -> Response {
    tracing::warn!(error = %e, "result endpoint: Kubernetes API error");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "the Kubernetes API could not be reached; retry",
    )
}

async fn submit(
    State(state): State<Arc<EndpointState>>,
    Path(task_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = state.settings.max_body_bytes;
    let claims = match credential(&headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let (workflow, uid, phase) = match authorized_task(&state, &claims, &task_id).await {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return too_large(limit),
    };
    let digest = store::digest(&body);
    let name = qms_engine::result::result_config_map_name(&task_id);
    let cms: Api<ConfigMap> = Api::namespaced(state.client.clone(), &claims.namespace);
    match cms.get_opt(&name).await {
        Ok(Some(cm)) if store::owned_by(&cm, &uid) => return repeated(&cm, &digest, &name),
        Ok(_) => {}
        Err(e) => return unavailable(&e),
    }
    if !matches!(phase, TaskPhase::Pending | TaskPhase::Running) {
        return refuse(
            StatusCode::CONFLICT,
            format!("task {task_id} has ended ({phase:?}): its result can no longer change"),
        );
    }
    let result = match validate(&body, limit) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let cm = match store::build(&workflow, &task_id, &body, &result.summary()) {
        Ok(cm) => cm,
        Err(e @ store::StoreError::TooLarge { .. }) => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
        }
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match cms.create(&PostParams::default(), &cm).await {
        Ok(_) => {
            tracing::info!(task = %task_id, workflow = %claims.workflow, annotations = result.annotations.len(), bytes = body.len(), "result stored");
            answer(
                StatusCode::CREATED,
                json!({"task_id": task_id, "stored": true, "configMap": name,
                       "annotations": result.annotations.len()}),
            )
        }
        Err(e) => create_failed(&cms, &e, &digest, &name).await,
    }
}

/// A refused request's answer (boxed: a `Response` is large).
type Refusal = Box<Response>;

/// The bearer token's claims (not verified yet: that needs the workflow's uid).
fn credential(headers: &HeaderMap) -> Result<token::Claims, Refusal> {
    let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return Err(Box::new(refuse(
            StatusCode::UNAUTHORIZED,
            "missing credential: send Authorization: Bearer $QMS_RESULT_TOKEN",
        )));
    };
    token::parse(bearer)
        .ok_or_else(|| Box::new(refuse(StatusCode::UNAUTHORIZED, "malformed credential")))
}

/// The workflow (and its uid) whose task `task_id` the credential is for, and the task's phase.
async fn authorized_task(
    state: &EndpointState,
    claims: &token::Claims,
    task_id: &str,
) -> Result<(QmsWorkflow, String, TaskPhase), Refusal> {
    let workflows: Api<QmsWorkflow> = Api::namespaced(state.client.clone(), &claims.namespace);
    let workflow = match workflows.get_opt(&claims.workflow).await {
        Ok(Some(wf)) => wf,
        Ok(None) => {
            return Err(Box::new(refuse(
                StatusCode::NOT_FOUND,
                "unknown task: its workflow does not exist",
            )));
        }
        Err(e) => return Err(Box::new(unavailable(&e))),
    };
    let uid = workflow.uid().unwrap_or_default();
    if !token::verify(state.settings.key.bytes(), claims, &uid, task_id) {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "the credential is not valid for this task",
        )));
    }
    let Some(phase) = workflow
        .status
        .iter()
        .flat_map(|s| &s.steps)
        .flat_map(|s| &s.tasks)
        .find(|t| t.job_name == task_id)
        .map(|t| t.phase)
    else {
        return Err(Box::new(refuse(
            StatusCode::NOT_FOUND,
            format!("unknown task {task_id}"),
        )));
    };
    Ok((workflow, uid, phase))
}

/// The body as an agent result: UTF-8, JSON, and the result format.
fn validate(body: &[u8], limit: usize) -> Result<AgentResult, Refusal> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "the body is not UTF-8",
        )));
    };
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            format!("result is not valid JSON: {e}"),
        )));
    }
    qms_engine::result::parse(text, limit)
        .map_err(|e| Box::new(refuse(StatusCode::UNPROCESSABLE_ENTITY, e)))
}

/// The answer when creating the result's ConfigMap failed.
async fn create_failed(
    cms: &Api<ConfigMap>,
    e: &kube::Error,
    digest: &str,
    name: &str,
) -> Response {
    match api_code(e) {
        // Submitted twice at once: the other request stored first.
        Some(409) => match cms.get_opt(name).await {
            Ok(Some(cm)) => repeated(&cm, digest, name),
            Ok(None) => unavailable(e),
            Err(e) => unavailable(&e),
        },
        Some(413 | 422) => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the Kubernetes API refused the stored result as too large",
        ),
        _ => unavailable(e),
    }
}

fn too_large(limit: usize) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the result is larger than the limit of {limit} bytes"),
    )
}

/// A result is stored already: the same bytes are accepted (once: nothing changes), others are
/// refused.
fn repeated(cm: &ConfigMap, digest: &str, name: &str) -> Response {
    if store::stored_digest(cm) == Some(digest) {
        answer(
            StatusCode::OK,
            json!({"stored": true, "configMap": name, "repeated": true}),
        )
    } else {
        refuse(
            StatusCode::CONFLICT,
            "a different result was stored for this task already",
        )
    }
}
