//! `POST /webhooks/github`: size limit → signature → content type → parse → deduplicate →
//! decide → store (with the delivery key) → answer.
//!
//! Order matters: the body is bounded before it is hashed (413 without hashing), and nothing
//! parses it before the signature is verified (401). The answer is sent after the change is
//! stored, well within GitHub's 10 s (a deadline answers 503 before that).
//!
//! Content types: `application/json` and `application/x-www-form-urlencoded` (GitHub's other
//! choice, the JSON in the `payload` field; the signature covers the raw form body). Anything
//! else is 415.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::cache::{TemplateCache, TrustCache};
use crate::client::GithubClient;
use crate::commands::{self, Command};
use crate::config::GithubConfig;
use crate::dedup::{Claim, Deliveries};
use crate::events::{self, Event, PullRequest};
use crate::intent::{self, ExternalId, Facts, Outcome};
use crate::naming::{self, DeliveryKey};
use crate::signature;
use crate::store::{StoreError, WorkflowStore};

pub const WEBHOOK_PATH: &str = "/webhooks/github";
/// Answer before GitHub's 10 s timeout, even when the cluster or GitHub is slow.
pub const DEADLINE: Duration = Duration::from_secs(8);
/// Decide again this many times when the workflow changed under us (a burst of comments on one
/// PR), with a short random pause so the writers do not collide again in lockstep.
const CONFLICT_RETRIES: usize = 12;

/// Counters the operator can export on /metrics.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    pub received: AtomicU64,
    pub too_large: AtomicU64,
    /// HMAC computations (a 413 must not make one).
    pub signature_checks: AtomicU64,
    pub bad_signature: AtomicU64,
    pub duplicates: AtomicU64,
    pub applied: AtomicU64,
    pub ignored: AtomicU64,
    pub failed: AtomicU64,
}

struct Inner {
    cfg: GithubConfig,
    github: Arc<GithubClient>,
    store: WorkflowStore,
    /// Templates from a watch (see `cache`), so a new pull request lists nothing.
    templates: Arc<TemplateCache>,
    /// Trust verdicts per (login, repository), briefly (see `cache`).
    trust: TrustCache,
    deliveries: Deliveries,
    metrics: WebhookMetrics,
}

#[derive(Clone)]
pub struct WebhookState {
    inner: Arc<Inner>,
}

impl WebhookState {
    pub fn new(cfg: GithubConfig, github: Arc<GithubClient>, kube: kube::Client) -> Self {
        let store = WorkflowStore::new(kube.clone(), &cfg.namespace);
        let templates = Arc::new(TemplateCache::new(kube, &cfg.namespace));
        let trust = TrustCache::new(cfg.permission_cache_ttl, cfg.permission_cache_size);
        Self {
            inner: Arc::new(Inner {
                cfg,
                github,
                store,
                templates,
                trust,
                deliveries: Deliveries::default(),
                metrics: WebhookMetrics::default(),
            }),
        }
    }

    pub fn metrics(&self) -> &WebhookMetrics {
        &self.inner.metrics
    }

    /// Whether templates are served from the watch yet (false until its first list completes;
    /// deliveries list them from the API server until then).
    pub fn templates_watched(&self) -> bool {
        self.inner.templates.is_watching()
    }

    /// The template cache, to share with the check-run sync ([`crate::CheckSyncer::with_templates`])
    /// and to start at start-up ([`TemplateCache::start`]).
    pub fn template_cache(&self) -> Arc<TemplateCache> {
        self.inner.templates.clone()
    }

    /// Trust verdicts currently cached.
    pub fn trust_cache_len(&self) -> usize {
        self.inner.trust.len()
    }
}

/// The router to `.merge()` into the operator's HTTP server.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(handle))
        .with_state(state)
}

fn answer(code: StatusCode, status: &str, detail: &str) -> Response {
    (
        code,
        axum::Json(json!({ "status": status, "detail": detail })),
    )
        .into_response()
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// One delivery: accept it (size, signature, content type, headers, parse), then claim it and
/// apply it within [`DEADLINE`]. Every refusal is answered with its 4xx here.
/// A delivery refused (or answered) before it is processed: the response to send.
type Refused = Box<Response>;

fn refuse(code: StatusCode, status: &str, detail: &str) -> Refused {
    Box::new(answer(code, status, detail))
}

async fn handle(State(state): State<WebhookState>, req: Request<Body>) -> Response {
    let st = &state.inner;
    st.metrics.received.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let accepted = async {
        let bytes = read_body(st, headers, body).await?;
        verify_signature(st, headers, &bytes)?;
        let json_body = json_payload(headers, bytes)?;
        let (event_name, key) = delivery_headers(headers)?;
        let event = parse_event(st, event_name, &json_body)?;
        Ok::<_, Refused>((event_name, key, event))
    }
    .await;
    match accepted {
        Ok((event_name, key, event)) => dispatch(st, event_name, &key, &event).await,
        Err(refused) => *refused,
    }
}

/// Step 1, size: before reading more than the limit and before hashing.
async fn read_body(st: &Inner, headers: &HeaderMap, body: Body) -> Result<Bytes, Refused> {
    let limit = st.cfg.max_body_bytes;
    let too_large = || {
        st.metrics.too_large.fetch_add(1, Ordering::Relaxed);
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "rejected",
            "payload too large",
        )
    };
    let declared =
        header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

/// Step 2: the signature over the raw bytes.
fn verify_signature(st: &Inner, headers: &HeaderMap, bytes: &Bytes) -> Result<(), Refused> {
    let m = &st.metrics;
    m.signature_checks.fetch_add(1, Ordering::Relaxed);
    signature::verify(
        &st.cfg.webhook_secrets,
        header_str(headers, "x-hub-signature-256"),
        bytes,
    )
    .map_err(|e| {
        m.bad_signature.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "webhook refused");
        refuse(StatusCode::UNAUTHORIZED, "rejected", &e.to_string())
    })
}

/// Step 3, content type: the JSON payload, as sent or from the `payload` form field.
fn json_payload(headers: &HeaderMap, bytes: Bytes) -> Result<Bytes, Refused> {
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        "application/json" => Ok(bytes),
        "application/x-www-form-urlencoded" => {
            match form_urlencoded::parse(&bytes).find(|(k, _)| k == "payload") {
                Some((_, v)) => Ok(Bytes::from(v.into_owned())),
                None => Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "rejected",
                    "form body without a payload field",
                )),
            }
        }
        _ => Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "rejected",
            "content type must be application/json or application/x-www-form-urlencoded",
        )),
    }
}

/// The event name and the delivery key; a `ping` is answered here.
fn delivery_headers(headers: &HeaderMap) -> Result<(&str, DeliveryKey), Refused> {
    let Some(event_name) = header_str(headers, "x-github-event") else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "rejected",
            "missing X-GitHub-Event",
        ));
    };
    let Some(delivery) = header_str(headers, "x-github-delivery") else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "rejected",
            "missing X-GitHub-Delivery",
        ));
    };
    if event_name == "ping" {
        return Err(refuse(StatusCode::OK, "pong", "webhook configured"));
    }
    let key = DeliveryKey::new(
        header_str(headers, "x-github-hook-installation-target-id"),
        header_str(headers, "x-github-hook-id"),
        delivery,
    );
    Ok((event_name, key))
}

/// Step 4, parse (after the signature: unauthenticated input is never parsed); an event not
/// handled is answered 202 here.
fn parse_event(st: &Inner, event_name: &str, json_body: &Bytes) -> Result<Event, Refused> {
    let event = events::parse(event_name, json_body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "rejected", &e.to_string()))?;
    if let Event::Other(kind) = &event {
        st.metrics.ignored.fetch_add(1, Ordering::Relaxed);
        return Err(refuse(
            StatusCode::ACCEPTED,
            "ignored",
            &format!("event {kind:?} is not handled"),
        ));
    }
    Ok(event)
}

/// Step 5: in-memory deduplication (the durable one is the annotation, checked in `process`), then
/// [`process`] within [`DEADLINE`] in the delivery's trace.
async fn dispatch(st: &Inner, event_name: &str, key: &DeliveryKey, event: &Event) -> Response {
    let m = &st.metrics;
    let guard = match st.deliveries.claim(key) {
        Claim::New(g) => g,
        Claim::InFlight | Claim::Done => {
            m.duplicates.fetch_add(1, Ordering::Relaxed);
            return answer(StatusCode::OK, "duplicate", "delivery already processed");
        }
    };
    // One trace per delivery (spec §5.3): the workflows it writes carry this span's context.
    let span = tracing::info_span!(
        "webhook delivery",
        delivery = key.as_str(),
        event = event_name
    );
    let result = tokio::time::timeout(
        DEADLINE,
        tracing::Instrument::instrument(process(st, event, key), span),
    )
    .await;
    match result {
        Ok(Ok(r)) => {
            guard.done();
            r
        }
        Ok(Err(e)) => {
            m.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(delivery = key.as_str(), error = %e, "webhook not applied");
            answer(StatusCode::SERVICE_UNAVAILABLE, "error", &e)
        }
        Err(_) => {
            m.failed.fetch_add(1, Ordering::Relaxed);
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "error",
                "timed out; redeliver to retry",
            )
        }
    }
}

/// The workflow name(s) an event is about.
enum Target {
    Name(String),
    Head { repository: String, sha: String },
    None,
}

fn target(event: &Event, namespace: &str) -> Target {
    match event {
        Event::PullRequest(e) => {
            Target::Name(naming::workflow_name(&e.repository.full_name, e.number))
        }
        Event::IssueComment(e) => Target::Name(naming::workflow_name(
            &e.repository.full_name,
            e.issue.number,
        )),
        Event::CheckRun(e) => match e
            .check_run
            .external_id
            .as_deref()
            .and_then(ExternalId::parse)
        {
            Some(ext) if ext.namespace == namespace => Target::Name(ext.name),
            _ => Target::None,
        },
        Event::CheckSuite(e) => match e.check_suite.pull_requests.first() {
            Some(pr) => Target::Name(naming::workflow_name(&e.repository.full_name, pr.number)),
            None => Target::Head {
                repository: e.repository.full_name.clone(),
                sha: e.check_suite.head_sha.clone(),
            },
        },
        Event::MergeGroup(e) => match e.merge_group.pull_request() {
            Some(pr) => Target::Name(naming::merge_group_workflow_name(
                &e.repository.full_name,
                pr,
                &e.merge_group.head_sha,
            )),
            None => Target::None,
        },
        Event::Push(e) => match e.branch() {
            Some(branch) if !e.is_deletion() => Target::Name(naming::push_workflow_name(
                &e.repository.repository.full_name,
                branch,
                &e.after,
            )),
            _ => Target::None,
        },
        Event::Ping | Event::Other(_) => Target::None,
    }
}

/// Who must be trusted for this event to act, if anyone.
fn actor(event: &Event, workflow_exists: bool) -> Option<String> {
    match event {
        Event::IssueComment(e)
            if e.action == "created"
                && e.issue.pull_request.is_some()
                && e.comment.user.type_.as_deref() != Some("Bot")
                && !commands::parse(&e.comment.body).is_empty() =>
        {
            Some(e.comment.user.login.clone())
        }
        Event::CheckRun(e) if e.action == "requested_action" => Some(e.sender.login.clone()),
        // A fork PR by a trusted author runs without ok-to-test.
        Event::PullRequest(e) if !workflow_exists && e.pull_request.is_from_fork() => {
            Some(e.pull_request.user.login.clone())
        }
        _ => None,
    }
}

async fn is_trusted(
    st: &Inner,
    inst: Option<u64>,
    repo: &str,
    login: &str,
) -> Result<bool, String> {
    if st
        .cfg
        .trusted_logins
        .iter()
        .any(|l| l.eq_ignore_ascii_case(login))
    {
        return Ok(true);
    }
    let now = st.github.now();
    if let Some(verdict) = st.trust.get(repo, login, now) {
        return Ok(verdict);
    }
    let verdict = lookup_trust(st, inst, repo, login).await?;
    st.trust.put(repo, login, verdict, now);
    Ok(verdict)
}

/// Permission, then team membership, on GitHub.
async fn lookup_trust(
    st: &Inner,
    inst: Option<u64>,
    repo: &str,
    login: &str,
) -> Result<bool, String> {
    let perm = st
        .github
        .permission(inst, repo, login)
        .await
        .map_err(|e| format!("cannot check {login}'s permission: {e}"))?;
    if perm >= st.cfg.trusted_permission {
        return Ok(true);
    }
    for team in &st.cfg.trusted_teams {
        if st
            .github
            .is_team_member(inst, team, login)
            .await
            .map_err(|e| format!("cannot check team {team}: {e}"))?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Applies one delivery: read what it is about, decide (`intent::decide`), carry the outcome out;
/// a conflicting concurrent write starts over (at most [`CONFLICT_RETRIES`] times).
async fn process(st: &Inner, event: &Event, key: &DeliveryKey) -> Result<Response, String> {
    let repo = event
        .repository()
        .map(|r| r.full_name.clone())
        .unwrap_or_default();
    let inst = event.installation();
    if let Some(i) = inst {
        st.github.remember_installation(&repo, i);
    }
    let err = |e: StoreError| e.to_string();
    if let Some(done) = create_first(st, event, key, &repo).await? {
        return Ok(done);
    }
    for attempt in 0..CONFLICT_RETRIES {
        if attempt > 0 {
            let pause = 5 + rand::random::<u64>() % (10 * attempt as u64);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let workflow = find_workflow(st, event).await.map_err(err)?;
        if let Some(wf) = &workflow
            && naming::recorded_deliveries(wf.metadata.annotations.as_ref())
                .iter()
                .any(|k| k == key.as_str())
        {
            st.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(answer(
                StatusCode::OK,
                "duplicate",
                "delivery already applied",
            ));
        }
        let template = template_for(st, workflow.as_ref(), event, &repo).await?;
        let template = template.as_deref();
        let trusted = match actor(event, workflow.is_some()) {
            Some(login) => Some(is_trusted(st, inst, &repo, &login).await?),
            None => None,
        };
        let pull_request =
            ok_to_test_pull_request(st, event, inst, &repo, workflow.is_some(), trusted).await?;
        let facts = Facts {
            now: st.github.now(),
            namespace: &st.cfg.namespace,
            run_drafts: st.cfg.run_drafts,
            delivery: key,
            workflow: workflow.as_ref(),
            template,
            trusted,
            pull_request: pull_request.as_ref(),
        };
        let outcome = intent::decide(event, &facts);
        let delivery = Delivery {
            event,
            key,
            inst,
            repo: &repo,
        };
        if let Some(response) = carry_out(st, &delivery, workflow.as_ref(), outcome).await? {
            return Ok(response);
        }
    }
    Err("the workflow kept changing concurrently; redeliver to retry".into())
}

/// The workflow the event is about, if it exists.
async fn find_workflow(
    st: &Inner,
    event: &Event,
) -> Result<Option<qms_api::QmsWorkflow>, StoreError> {
    match target(event, &st.cfg.namespace) {
        Target::Name(name) => st.store.get(&name).await,
        Target::Head { repository, sha } => st.store.find_by_head(&repository, &sha).await,
        Target::None => Ok(None),
    }
}

/// The workflow's template, or for a new workflow the one selected for the repository, from the
/// template cache (a watch; a list only until its first list completes).
async fn template_for(
    st: &Inner,
    workflow: Option<&qms_api::QmsWorkflow>,
    event: &Event,
    repo: &str,
) -> Result<Option<Arc<qms_api::WorkflowTemplate>>, String> {
    let kube_err = |e: kube::Error| e.to_string();
    Ok(match workflow {
        Some(wf) => st
            .templates
            .get(&wf.spec.template_ref.name)
            .await
            .map_err(kube_err)?,
        None => {
            let templates = st.templates.all().await.map_err(kube_err)?;
            match event {
                Event::MergeGroup(_) => intent::select_merge_group_template(&templates, repo),
                Event::Push(e) => e
                    .branch()
                    .and_then(|b| intent::select_push_template(&templates, repo, b)),
                _ => intent::select_template(&templates, repo),
            }
            .cloned()
            .map(Arc::new)
        }
    })
}

/// The pull request, read for a trusted `/qms ok-to-test` on a PR without a workflow yet (a
/// comment does not carry the head SHA).
async fn ok_to_test_pull_request(
    st: &Inner,
    event: &Event,
    inst: Option<u64>,
    repo: &str,
    workflow_exists: bool,
    trusted: Option<bool>,
) -> Result<Option<PullRequest>, String> {
    match event {
        Event::IssueComment(e)
            if !workflow_exists
                && trusted == Some(true)
                && commands::parse(&e.comment.body).contains(&Ok(Command::OkToTest)) =>
        {
            Ok(Some(
                st.github
                    .pull_request(inst, repo, e.issue.number)
                    .await
                    .map_err(|e| format!("cannot read the pull request: {e}"))?,
            ))
        }
        _ => Ok(None),
    }
}

/// The delivery being processed, as [`carry_out`] needs it.
struct Delivery<'a> {
    event: &'a Event,
    key: &'a DeliveryKey,
    inst: Option<u64>,
    repo: &'a str,
}

/// Carries out the decided outcome: the answer, or `None` when the write conflicted with a
/// concurrent change (decide again).
async fn carry_out(
    st: &Inner,
    d: &Delivery<'_>,
    workflow: Option<&qms_api::QmsWorkflow>,
    outcome: Outcome,
) -> Result<Option<Response>, String> {
    let m = &st.metrics;
    let (key, inst, repo) = (d.key, d.inst, d.repo);
    let pr_number = pr_number(d.event, workflow);
    match outcome {
        Outcome::Ignore(reason) => {
            m.ignored.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(delivery = key.as_str(), %reason, "ignored");
            Ok(Some(answer(StatusCode::ACCEPTED, "ignored", &reason)))
        }
        Outcome::Retry(reason) => Err(reason),
        Outcome::Reply(text) => {
            if let Some(n) = pr_number {
                reply(st, inst, repo, n, &text).await;
            }
            Ok(Some(answer(StatusCode::OK, "replied", &text)))
        }
        Outcome::ForkPending {
            repository,
            pull_request,
            head_sha,
        } => {
            fork_pending(st, inst, &repository, pull_request, &head_sha).await?;
            Ok(Some(answer(
                StatusCode::ACCEPTED,
                "waiting",
                "pull request from a fork: waiting for a trusted `/qms ok-to-test`",
            )))
        }
        Outcome::Apply {
            change,
            reply: text,
            note,
        } => {
            match st.store.apply(workflow, &change, key).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            }
            m.applied.fetch_add(1, Ordering::Relaxed);
            tracing::info!(delivery = key.as_str(), %note, "applied");
            if let (Some(text), Some(n)) = (text, pr_number) {
                reply(st, inst, repo, n, &text).await;
            }
            Ok(Some(answer(StatusCode::OK, "applied", &note)))
        }
    }
}

/// A new pull request (opened, reopened, ready for review; not from a fork, which needs a trust
/// check first) is created in one write, without reading first: its name is deterministic, so a
/// workflow that exists already (a redelivery, a reopened PR, a concurrent delivery) answers
/// AlreadyExists, and then the usual read-decide-patch loop runs. `None` = not handled here.
async fn create_first(
    st: &Inner,
    event: &Event,
    key: &DeliveryKey,
    repo: &str,
) -> Result<Option<Response>, String> {
    let Event::PullRequest(e) = event else {
        return Ok(None);
    };
    if !matches!(
        e.action.as_str(),
        "opened" | "reopened" | "ready_for_review"
    ) || e.pull_request.is_from_fork()
    {
        return Ok(None);
    }
    let templates = st.templates.all().await.map_err(|e| e.to_string())?;
    let facts = Facts {
        now: st.github.now(),
        namespace: &st.cfg.namespace,
        run_drafts: st.cfg.run_drafts,
        delivery: key,
        workflow: None,
        template: intent::select_template(&templates, repo),
        trusted: None,
        pull_request: None,
    };
    let Outcome::Apply {
        change: change @ intent::Change::Create(_),
        note,
        ..
    } = intent::decide(event, &facts)
    else {
        return Ok(None);
    };
    match st.store.apply(None, &change, key).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    st.metrics.applied.fetch_add(1, Ordering::Relaxed);
    tracing::info!(delivery = key.as_str(), %note, "applied");
    Ok(Some(answer(StatusCode::OK, "applied", &note)))
}

fn pr_number(event: &Event, wf: Option<&qms_api::QmsWorkflow>) -> Option<u64> {
    match event {
        Event::PullRequest(e) => Some(e.number),
        Event::IssueComment(e) => Some(e.issue.number),
        // A merge group or a push is not a pull request: nothing is posted for it.
        Event::MergeGroup(_) | Event::Push(_) => None,
        _ => wf
            .filter(|w| w.spec.merge_group.is_none() && w.spec.push.is_none())
            .map(|w| w.spec.pull_request),
    }
}

/// Replies are best effort: the change (if any) is stored already; a failed reply is logged.
async fn reply(st: &Inner, inst: Option<u64>, repo: &str, pr: u64, text: &str) {
    if let Err(e) = st.github.create_comment(inst, repo, pr, text).await {
        tracing::warn!(%repo, pr, error = %e, "could not post the reply comment");
    }
}

/// Shows a fork PR as waiting: check run `QMS`, conclusion `action_required`, once per SHA.
async fn fork_pending(
    st: &Inner,
    inst: Option<u64>,
    repo: &str,
    pr: u64,
    sha: &str,
) -> Result<(), String> {
    let external_id = format!("qms-fork-pending:{repo}#{pr}");
    let existing = st
        .github
        .list_check_runs(inst, repo, sha, "QMS")
        .await
        .map_err(|e| format!("cannot list check runs: {e}"))?;
    if existing
        .iter()
        .any(|c| c.external_id.as_deref() == Some(external_id.as_str()))
    {
        return Ok(());
    }
    let now = st
        .github
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let base = st.cfg.api_base_url.as_str();
    // The PR page is the natural place for the details: that is where `/qms ok-to-test` goes.
    let web = if base == crate::config::DEFAULT_API_URL {
        "https://github.com".to_owned()
    } else {
        base.trim_end_matches("/api/v3").to_owned()
    };
    let body = json!({
        "name": "QMS",
        "head_sha": sha,
        "external_id": external_id,
        "status": "completed",
        "conclusion": "action_required",
        "completed_at": now,
        "details_url": format!("{web}/{repo}/pull/{pr}"),
        "output": {
            "title": "Waiting for /qms ok-to-test",
            "summary": "This pull request comes from a fork, so the QMS review does not run its agents \
                        until a trusted member of the repository checks the changes and comments \
                        `/qms ok-to-test` on the pull request.",
        },
    });
    st.github
        .create_check_run(inst, repo, &body)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot create the waiting check run: {e}"))
}
