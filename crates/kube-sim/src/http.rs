//! HTTP layer: parses Kubernetes REST paths and query parameters, applies faults and counters,
//! and renders engine results (objects, lists, Tables, watch streams, pod logs).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::discovery;
use crate::engine::{DeleteOpts, Engine, FieldValidation, WriteOpts, present};
use crate::error::{ApiError, ApiResult};
use crate::openapi;
use crate::patch::PatchType;
use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{EventType, meta_str};
use crate::table::{self, IncludeObject};

const MAX_BODY: usize = 64 * 1024 * 1024;

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new().fallback(handle).with_state(engine)
}

fn json_response(code: StatusCode, v: &Value, content_type: &str) -> Response {
    let mut resp = (code, v.to_string()).into_response();
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

fn ok_json(v: &Value) -> Response {
    json_response(StatusCode::OK, v, "application/json")
}

struct Req {
    method: Method,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("true") | Some("1"))
    }
    fn header(&self, k: header::HeaderName) -> &str {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
    fn accept(&self) -> &str {
        self.header(header::ACCEPT)
    }
}

async fn handle(State(engine): State<Arc<Engine>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("reading body: {e}")).into_response(),
    };
    let req = Req {
        method: parts.method.clone(),
        query,
        headers: parts.headers.clone(),
        body,
    };
    let path = parts.uri.path().to_owned();
    match route(&engine, &path, &req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(engine: &Arc<Engine>, path: &str, req: &Req) -> ApiResult<Response> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get_only = |r: ApiResult<Response>| {
        if req.method == Method::GET {
            r
        } else {
            Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    match segs.as_slice() {
        [] => get_only(Ok(ok_json(
            &json!({"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version", "/healthz"]}),
        ))),
        ["version"] => get_only(Ok(ok_json(&discovery::version()))),
        ["healthz"] | ["readyz"] | ["livez"] => {
            get_only(Ok((StatusCode::OK, "ok").into_response()))
        }
        ["openapi", "v3"] => {
            engine.counters.incr("get", "openapi");
            get_only(Ok(ok_json(&openapi::index(&engine.registry()))))
        }
        ["openapi", "v3", "api", v] => {
            engine.counters.incr("get", "openapi");
            openapi::group_version_doc(&engine.registry(), "", v)
                .map(|d| ok_json(&d))
                .ok_or_else(ApiError::path_not_found)
        }
        ["openapi", "v3", "apis", g, v] => {
            engine.counters.incr("get", "openapi");
            openapi::group_version_doc(&engine.registry(), g, v)
                .map(|d| ok_json(&d))
                .ok_or_else(ApiError::path_not_found)
        }
        ["api"] => get_only(Ok(discovery_root(engine, req, true))),
        ["apis"] => get_only(Ok(discovery_root(engine, req, false))),
        ["api", v] => {
            engine.counters.incr("get", "discovery");
            discovery::resource_list(&engine.registry(), "", v)
                .map(|d| ok_json(&d))
                .ok_or_else(ApiError::path_not_found)
        }
        ["apis", g] => {
            engine.counters.incr("get", "discovery");
            discovery::api_group(&engine.registry(), g)
                .map(|d| ok_json(&d))
                .ok_or_else(ApiError::path_not_found)
        }
        ["apis", g, v] => {
            engine.counters.incr("get", "discovery");
            discovery::resource_list(&engine.registry(), g, v)
                .map(|d| ok_json(&d))
                .ok_or_else(ApiError::path_not_found)
        }
        ["api", v, rest @ ..] => resource(engine, "", v, rest, req).await,
        ["apis", g, v, rest @ ..] => resource(engine, g, v, rest, req).await,
        _ => Err(ApiError::path_not_found()),
    }
}

/// `/api` (`legacy`) or `/apis`: the aggregated discovery document when asked for, else the
/// APIVersions / APIGroupList.
fn discovery_root(engine: &Engine, req: &Req, legacy: bool) -> Response {
    engine.counters.incr("get", "discovery");
    if discovery::wants_aggregated(req.accept()) {
        json_response(
            StatusCode::OK,
            &discovery::aggregated(&engine.registry(), legacy),
            discovery::AGGREGATED_V2,
        )
    } else if legacy {
        ok_json(&discovery::api_versions(&engine.server_addr))
    } else {
        ok_json(&discovery::api_group_list(&engine.registry()))
    }
}

/// A parsed resource path.
struct Target {
    rt: Arc<ResourceType>,
    /// Namespace from the path (`None` for cluster-scoped or all-namespaces requests).
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    watch_path: bool,
}

fn parse_target(engine: &Engine, group: &str, version: &str, rest: &[&str]) -> ApiResult<Target> {
    let (watch_path, rest) = match rest.first() {
        Some(&"watch") => (true, &rest[1..]),
        _ => (false, rest),
    };
    let namespace_sub = rest.len() == 3 && (rest[2] == "status" || rest[2] == "finalize");
    let (ns, rest) = if rest.first() == Some(&"namespaces")
        && rest.len() >= 3
        && !(group.is_empty() && namespace_sub)
    {
        (Some(rest[1].to_owned()), &rest[2..])
    } else {
        (None, rest)
    };
    if rest.is_empty() || rest.len() > 3 {
        return Err(ApiError::path_not_found());
    }
    let rt = engine
        .registry()
        .find(group, version, rest[0])
        .ok_or_else(ApiError::path_not_found)?;
    let name = rest.get(1).map(|s| (*s).to_owned());
    let sub = rest.get(2).map(|s| (*s).to_owned());
    if ns.is_some() && !rt.namespaced {
        return Err(ApiError::path_not_found());
    }
    if let Some(s) = &sub {
        let ok = (s == "status" && rt.has_status)
            || (s == "log" && rt.group.is_empty() && rt.plural == "pods")
            || (s == "finalize" && rt.group.is_empty() && rt.plural == "namespaces");
        if !ok {
            return Err(ApiError::path_not_found());
        }
    }
    if rt.namespaced && ns.is_none() && name.is_some() {
        return Err(ApiError::path_not_found());
    }
    Ok(Target {
        rt,
        ns,
        name,
        sub,
        watch_path,
    })
}

fn write_opts(req: &Req) -> ApiResult<WriteOpts> {
    let validation = match req.q("fieldValidation") {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}: expected one of Ignore, Warn, Strict"
            )));
        }
    };
    let dry_run = match req.q("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            )));
        }
    };
    let explicit = req.q("fieldManager").filter(|m| !m.is_empty());
    let manager = match explicit {
        Some(m) => m.to_owned(),
        None => {
            let ua = req.header(header::USER_AGENT);
            let prefix = ua.split('/').next().unwrap_or_default();
            if prefix.is_empty() {
                "unknown".to_owned()
            } else {
                prefix.to_owned()
            }
        }
    };
    Ok(WriteOpts {
        dry_run,
        manager,
        manager_explicit: explicit.is_some(),
        validation,
        force: req.flag("force"),
    })
}

fn parse_body(req: &Req) -> ApiResult<Value> {
    // Protobuf (and CBOR) are not spoken: answering 415 makes client-go fall back to JSON.
    let ct = req.header(header::CONTENT_TYPE);
    let base = ct.split(';').next().unwrap_or_default().trim();
    if base == crate::proto::MEDIA_TYPE {
        return crate::proto::decode(&req.body);
    }
    if !base.is_empty()
        && !matches!(
            base,
            "application/json" | "application/yaml" | "text/yaml" | "application/x-yaml" | "*/*"
        )
    {
        return Err(ApiError::unsupported_media_type(
            ct,
            &["application/json", "application/yaml"],
        ));
    }
    if req.body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(v) => Ok(v),
        Err(e) => match serde_saphyr::from_slice::<Value>(&req.body) {
            Ok(v) if v.is_object() => Ok(v),
            _ => Err(ApiError::bad_request(format!(
                "the object provided is unrecognized: {e}"
            ))),
        },
    }
}

fn write_response(out: crate::engine::WriteOutcome, req: &Req) -> Response {
    let code = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = convert_single_for_accept(&out.object, req.accept());
    let mut resp = json_response(code, &body, "application/json");
    for w in out.warnings {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "299 - {}",
            serde_json::to_string(&w).unwrap_or_default()
        )) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn wants_partial_metadata(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|m| m.contains("as=PartialObjectMetadata"))
}

fn partial(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
}

fn convert_single_for_accept(obj: &Value, accept: &str) -> Value {
    if wants_partial_metadata(accept) {
        partial(obj)
    } else {
        obj.clone()
    }
}

fn delete_opts(req: &Req) -> ApiResult<DeleteOpts> {
    let mut o = DeleteOpts {
        dry_run: req.q("dryRun") == Some("All"),
        propagation: req.q("propagationPolicy").map(str::to_owned),
        ..Default::default()
    };
    if !req.body.is_empty() {
        let b: Value = if req.body.starts_with(b"k8s\0") {
            crate::proto::decode(&req.body)?
        } else {
            serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("decoding DeleteOptions: {e}")))?
        };
        if let Some(p) = b["propagationPolicy"].as_str() {
            o.propagation = Some(p.to_owned());
        }
        if b["orphanDependents"].as_bool() == Some(true) {
            o.propagation = Some("Orphan".into());
        }
        if b["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            o.dry_run = true;
        }
        o.precondition_uid = b["preconditions"]["uid"].as_str().map(str::to_owned);
        o.precondition_rv = b["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
    }
    if let Some(p) = &o.propagation
        && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {p:?}"
        )));
    }
    Ok(o)
}

fn selectors(req: &Req, rt: &ResourceType) -> ApiResult<(LabelSelector, FieldSelector)> {
    Ok((
        LabelSelector::parse(req.q("labelSelector").unwrap_or_default())?,
        FieldSelector::parse(
            req.q("fieldSelector").unwrap_or_default(),
            &rt.group,
            &rt.plural,
        )?,
    ))
}

async fn resource(
    engine: &Arc<Engine>,
    group: &str,
    version: &str,
    rest: &[&str],
    req: &Req,
) -> ApiResult<Response> {
    let t = parse_target(engine, group, version, rest)?;
    let verb = verb_of(&t, req)?;
    if t.rt.namespaced && t.ns.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::path_not_found());
    }
    let label = match &t.sub {
        Some(s) => format!("{}/{s}", t.rt.plural),
        None => t.rt.plural.clone(),
    };
    engine
        .counters
        .incr_for(verb, &label, req.header(header::USER_AGENT));
    if let Some(d) = engine.faults.latency(verb, &label) {
        tokio::time::sleep(d).await;
    }
    if let Some(e) = engine
        .faults
        .check(verb, &label, req.header(header::USER_AGENT))
    {
        return Err(e);
    }
    match verb {
        "get" if t.sub.as_deref() == Some("log") => {
            let ns = t.ns.clone().unwrap_or_default();
            pod_log(
                engine,
                &t.rt,
                &ns,
                t.name.as_deref().unwrap_or_default(),
                req,
            )
            .await
        }
        "get" => get(engine, &t, req),
        "list" => list(engine, &t, req),
        "watch" => watch(engine, &t, req),
        _ => write(engine, &t, verb, req).await,
    }
}

/// The Kubernetes verb of a request on a resource path (405 for a method the path has none for).
fn verb_of(t: &Target, req: &Req) -> ApiResult<&'static str> {
    let is_watch = t.watch_path || req.flag("watch");
    Ok(match (&req.method, t.name.is_some()) {
        (&Method::GET, false) if is_watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) if is_watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
    })
}

fn get(engine: &Arc<Engine>, t: &Target, req: &Req) -> ApiResult<Response> {
    let ns = t.ns.clone().unwrap_or_default();
    let obj = engine.get(&t.rt, &ns, t.name.as_deref().unwrap_or_default())?;
    if table::wants_table(req.accept()) {
        let include = IncludeObject::parse(req.q("includeObject"));
        let rv = meta_str(&obj, "resourceVersion").to_owned();
        return Ok(ok_json(&table::table(
            &t.rt,
            &[obj],
            include,
            json!({"resourceVersion": rv}),
            true,
        )));
    }
    Ok(ok_json(&convert_single_for_accept(&obj, req.accept())))
}

fn list(engine: &Arc<Engine>, t: &Target, req: &Req) -> ApiResult<Response> {
    let rt = &t.rt;
    let (labels, fields) = selectors(req, rt)?;
    let limit = req.q("limit").and_then(|l| l.parse::<usize>().ok());
    let res = engine.list(
        rt,
        t.ns.as_deref(),
        &labels,
        &fields,
        limit,
        req.q("continue"),
    )?;
    let mut meta = json!({"resourceVersion": res.resource_version.to_string()});
    if let Some(c) = &res.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = res.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    if table::wants_table(req.accept()) {
        let include = IncludeObject::parse(req.q("includeObject"));
        return Ok(ok_json(&table::table(rt, &res.items, include, meta, true)));
    }
    if wants_partial_metadata(req.accept()) {
        let items: Vec<Value> = res.items.iter().map(partial).collect();
        return Ok(ok_json(
            &json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": meta, "items": items}),
        ));
    }
    Ok(ok_json(
        &json!({"apiVersion": rt.api_version(), "kind": rt.list_kind, "metadata": meta, "items": res.items}),
    ))
}

/// create, update, patch, delete, deletecollection: run off the async workers.
async fn write(engine: &Arc<Engine>, t: &Target, verb: &str, req: &Req) -> ApiResult<Response> {
    let rt = t.rt.clone();
    let ns = t.ns.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let status = t.sub.as_deref() == Some("status");
    let engine2 = engine.clone();
    match verb {
        "create" => {
            let opts = write_opts(req)?;
            let body = parse_body(req)?;
            let out = run_blocking(move || engine2.create(&rt, &ns, body, &opts)).await?;
            Ok(write_response(out, req))
        }
        "update" => {
            let opts = write_opts(req)?;
            let body = parse_body(req)?;
            let out =
                run_blocking(move || engine2.update(&rt, &ns, &name, body, status, &opts)).await?;
            Ok(write_response(out, req))
        }
        "patch" => {
            let opts = write_opts(req)?;
            let kind = PatchType::from_content_type(req.header(header::CONTENT_TYPE), rt.custom)?;
            let body = req.body.clone();
            let out =
                run_blocking(move || engine2.patch(&rt, &ns, &name, kind, &body, status, &opts))
                    .await?;
            Ok(write_response(out, req))
        }
        "delete" => {
            let opts = delete_opts(req)?;
            let out = run_blocking(move || engine2.delete(&rt, &ns, &name, &opts)).await?;
            Ok(ok_json(&out))
        }
        "deletecollection" => {
            let opts = delete_opts(req)?;
            let (labels, fields) = selectors(req, &rt)?;
            let ns_opt = t.ns.clone();
            let rt2 = rt.clone();
            let items = run_blocking(move || {
                engine2.delete_collection(&rt2, ns_opt.as_deref(), &labels, &fields, &opts)
            })
            .await?;
            let rv = engine.lock().store.rv();
            Ok(ok_json(
                &json!({"apiVersion": rt.api_version(), "kind": rt.list_kind, "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::method_not_allowed("unsupported verb")),
    }
}

/// Writes hold a std mutex and may fsync the WAL: keep them off the async workers.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("write task failed: {e}")))?
}

async fn pod_log(
    engine: &Arc<Engine>,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    req: &Req,
) -> ApiResult<Response> {
    engine.get(rt, ns, name)?;
    let tail = req.q("tailLines").and_then(|t| t.parse::<usize>().ok());
    let limit = req.q("limitBytes").and_then(|t| t.parse::<usize>().ok());
    let render = |bytes: Vec<u8>| -> Vec<u8> {
        let mut out = bytes;
        if let Some(n) = tail {
            let text = String::from_utf8_lossy(&out).into_owned();
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let start = lines.len().saturating_sub(n);
            out = lines[start..].concat().into_bytes();
        }
        if let Some(l) = limit {
            out.truncate(l);
        }
        out
    };
    let initial = render(engine.logs.get(ns, name).unwrap_or_default());
    if !req.flag("follow") {
        let mut resp = (StatusCode::OK, initial).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(resp);
    }
    // follow: stream what exists, then new bytes until the pod finishes or disappears.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let engine = engine.clone();
    let (ns, name) = (ns.to_owned(), name.to_owned());
    let rt = rt.clone();
    let mut sent = engine.logs.get(&ns, &name).map(|b| b.len()).unwrap_or(0);
    tokio::spawn(async move {
        if tx.send(Bytes::from(initial)).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let all = engine.logs.get(&ns, &name).unwrap_or_default();
            if all.len() > sent {
                if tx.send(Bytes::copy_from_slice(&all[sent..])).await.is_err() {
                    return;
                }
                sent = all.len();
            }
            let done = match engine.get(&rt, &ns, &name) {
                Ok(p) => matches!(
                    p["status"]["phase"].as_str(),
                    Some("Succeeded") | Some("Failed")
                ),
                Err(_) => true,
            };
            if done {
                let all = engine.logs.get(&ns, &name).unwrap_or_default();
                if all.len() > sent {
                    let _ = tx.send(Bytes::copy_from_slice(&all[sent..])).await;
                }
                return;
            }
        }
    });
    let mut resp = Response::new(stream_body(rx));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

fn stream_body(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Body::from_stream(stream)
}

// ---- watch -----------------------------------------------------------------------------------

struct WatchFilter {
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|ns| meta_str(obj, "namespace") == ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }
}

struct Encoder {
    rt: Arc<ResourceType>,
    table: Option<IncludeObject>,
    first: bool,
}

impl Encoder {
    fn event(&mut self, ty: &str, obj: &Value) -> Bytes {
        let obj = present(&self.rt, obj);
        let object = match self.table {
            Some(include) => {
                let rv = meta_str(&obj, "resourceVersion").to_owned();
                let t = table::table(
                    &self.rt,
                    &[obj],
                    include,
                    json!({"resourceVersion": rv}),
                    self.first,
                );
                self.first = false;
                t
            }
            None => obj,
        };
        line(&json!({"type": ty, "object": object}))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta}}),
        )
    }
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn gone_event(message: String) -> Bytes {
    line(&json!({"type": "ERROR", "object": ApiError::gone(message).to_status()}))
}

/// The query of a watch request.
struct WatchParams {
    filter: WatchFilter,
    bookmarks: bool,
    send_initial: bool,
    timeout: Option<Duration>,
    rv_param: String,
    table_mode: Option<IncludeObject>,
}

impl WatchParams {
    fn parse(t: &Target, req: &Req) -> ApiResult<Self> {
        let rt = &t.rt;
        let (labels, mut fields) = selectors(req, rt)?;
        if let Some(name) = &t.name {
            fields = FieldSelector::parse(&format!("metadata.name={name}"), &rt.group, &rt.plural)?;
        }
        Ok(Self {
            filter: WatchFilter {
                ns: t.ns.clone(),
                labels,
                fields,
            },
            bookmarks: req.flag("allowWatchBookmarks"),
            send_initial: req.flag("sendInitialEvents"),
            timeout: req
                .q("timeoutSeconds")
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            rv_param: req.q("resourceVersion").unwrap_or_default().to_owned(),
            table_mode: table::wants_table(req.accept())
                .then(|| IncludeObject::parse(req.q("includeObject"))),
        })
    }
}

fn watch(engine: &Arc<Engine>, t: &Target, req: &Req) -> ApiResult<Response> {
    let p = WatchParams::parse(t, req)?;
    let mut enc = Encoder {
        rt: t.rt.clone(),
        table: p.table_mode,
        first: true,
    };
    let key = t.rt.store_key();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let expire = engine.faults.take_expire();
    let (mut initial, start_rv, rv_rx) = initial_events(engine, &key, &p, &mut enc, expire)?;
    if expire {
        initial.push(gone_event(format!(
            "too old resource version: {} (injected fault)",
            p.rv_param
        )));
    }
    let drop_after = engine.faults.watch_drop_after();
    let mut drop_rx = engine.faults.drop_signal();
    drop_rx.borrow_and_update();
    let stream = WatchStream {
        engine: engine.clone(),
        key,
        filter: p.filter,
        enc,
        tx,
        rv_rx,
        drop_rx,
        drop_after,
        bookmarks: p.bookmarks,
        bookmark_every: engine.bookmark_interval,
    };
    tokio::spawn(stream.run(initial, start_rv, p.timeout));
    let mut resp = Response::new(stream_body(rx));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

/// Under the store lock: the events a watch starts with (the current objects as ADDED for a
/// list-then-watch or `sendInitialEvents`, or a 410 for a resourceVersion too old), the
/// resourceVersion it streams from (`None`: it ends after the initial events), and the store's
/// change signal.
fn initial_events(
    engine: &Engine,
    key: &str,
    p: &WatchParams,
    enc: &mut Encoder,
    expire: bool,
) -> ApiResult<(Vec<Bytes>, Option<u64>, tokio::sync::watch::Receiver<u64>)> {
    let mut initial: Vec<Bytes> = Vec::new();
    let st = engine.lock();
    let current = st.store.rv();
    let start = if expire {
        None
    } else if p.send_initial || p.rv_param.is_empty() || p.rv_param == "0" {
        for o in st.store.list(key, p.filter.ns.as_deref()) {
            if p.filter.matches(&o) {
                initial.push(enc.event("ADDED", &o));
            }
        }
        if p.send_initial {
            initial.push(enc.bookmark(current, true));
        }
        Some(current)
    } else {
        let rv_param = &p.rv_param;
        let rv: u64 = rv_param.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid resource version: {rv_param:?}"))
        })?;
        match st.store.events_since(key, rv) {
            Ok(_) => Some(rv),
            Err(oldest) => {
                initial.push(gone_event(format!(
                    "too old resource version: {rv} ({oldest})"
                )));
                None
            }
        }
    };
    Ok((initial, start, st.store.subscribe()))
}

/// The task that streams one watch's events.
struct WatchStream {
    engine: Arc<Engine>,
    key: String,
    filter: WatchFilter,
    enc: Encoder,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    rv_rx: tokio::sync::watch::Receiver<u64>,
    drop_rx: tokio::sync::watch::Receiver<u64>,
    /// Injected fault: end the watch after this many events.
    drop_after: Option<u64>,
    bookmarks: bool,
    bookmark_every: Duration,
}

impl WatchStream {
    /// Sends `initial`, then every matching change after `start_rv` until the client goes away,
    /// the timeout passes, the history is compacted past it, or a fault drops it.
    async fn run(mut self, initial: Vec<Bytes>, start_rv: Option<u64>, timeout: Option<Duration>) {
        for b in initial {
            if self.tx.send(b).await.is_err() {
                return;
            }
        }
        let Some(mut last) = start_rv else { return };
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(self.bookmark_every);
        ticker.reset();
        let mut sent: u64 = 0;
        loop {
            if !self.send_changes(&mut last, &mut sent).await {
                return;
            }
            let sleep_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => futures::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = self.rv_rx.changed() => if r.is_err() { return },
                _ = ticker.tick() => {
                    if self.bookmarks && self.tx.send(self.enc.bookmark(last, false)).await.is_err() {
                        return;
                    }
                }
                _ = sleep_deadline => return,
                _ = self.drop_rx.changed() => return,
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Sends the changes after `last` that the filter sees (as ADDED/MODIFIED/DELETED by how
    /// the object moved in or out of the selection) and moves `last` past what the store has.
    /// Returns whether the watch goes on.
    async fn send_changes(&mut self, last: &mut u64, sent: &mut u64) -> bool {
        let (events, scanned) = {
            let st = self.engine.lock();
            (st.store.events_since(&self.key, *last), st.store.rv())
        };
        let evs = match events {
            Ok(evs) => evs,
            Err(oldest) => {
                let _ = self
                    .tx
                    .send(gone_event(format!(
                        "too old resource version: {last} ({oldest})"
                    )))
                    .await;
                return false;
            }
        };
        for ev in evs {
            *last = ev.rv;
            let cur = self.filter.matches(&ev.object);
            let prev = ev.prev.as_ref().is_some_and(|p| self.filter.matches(p));
            let ty = match ev.kind {
                EventType::Added if cur => "ADDED",
                EventType::Modified if cur && prev => "MODIFIED",
                EventType::Modified if cur => "ADDED",
                EventType::Modified if prev => "DELETED",
                EventType::Deleted if cur || prev => "DELETED",
                _ => continue,
            };
            if self.tx.send(self.enc.event(ty, &ev.object)).await.is_err() {
                return false;
            }
            *sent += 1;
            if self.drop_after.is_some_and(|n| *sent >= n) {
                return false;
            }
        }
        *last = (*last).max(scanned);
        true
    }
}
