//! The GitHub REST client: octocrab for transport, plus what GitHub's limits need.
//!
//! - Writes are paced under GitHub's secondary limits for content-creating requests: a token
//!   bucket (default 80/min) and a sliding hourly window (default 500/h).
//! - `429`/`403` with `Retry-After` or an exhausted `x-ratelimit-remaining` block every request
//!   until the time GitHub named; `5xx` and transport errors block with jittered exponential
//!   backoff (a circuit breaker: during an outage we stop hammering GitHub).
//! - Nothing sleeps. A blocked request fails at once with the time it may be retried
//!   ([`GithubError::retry_at`]); the check run sync is level-triggered, so the caller simply
//!   requeues and the next sync catches up.
//!
//! The Authorization header is added here per request (token or per-installation token), so one
//! octocrab instance without auth serves every installation.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use http::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{AppAuth, Auth, AuthError};
use crate::clock::Clock;
use crate::config::{GithubConfig, Permission};
use crate::events::PullRequest;
use crate::secret::Secret;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub rate limit: retry after {until}")]
    RateLimited { until: DateTime<Utc> },
    #[error("GitHub unavailable ({reason}): retry after {retry_at}")]
    Unavailable {
        reason: String,
        retry_at: DateTime<Utc>,
    },
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("bad request: {0}")]
    Request(String),
}

impl GithubError {
    /// When the request may be tried again; `None` for errors retrying cannot fix.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::RateLimited { until } => Some(*until),
            Self::Unavailable { retry_at, .. } => Some(*retry_at),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Token bucket for write requests. Burst `b` and refill `(n - b)` per window, so no window holds
/// more than `n` writes (`b` at start plus `n - b` refilled).
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Option<DateTime<Utc>>,
}

impl Bucket {
    fn new(limit: u32, window: std::time::Duration) -> Self {
        let n = limit.max(1);
        let burst = (n / 8).clamp(1, 10);
        Self {
            capacity: f64::from(burst),
            tokens: f64::from(burst),
            per_sec: f64::from((n - burst).max(1)) / window.as_secs_f64().max(1.0),
            last: None,
        }
    }

    fn refill(&mut self, now: DateTime<Utc>) {
        if let Some(last) = self.last {
            let elapsed = (now - last).num_milliseconds().max(0) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        }
        self.last = Some(now);
    }

    /// None when a token is there; otherwise when the next one will be.
    fn next_token_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.tokens < 1.0).then(|| {
            let wait = ((1.0 - self.tokens) / self.per_sec * 1000.0).ceil() as i64;
            now + Duration::milliseconds(wait.max(1))
        })
    }

    #[cfg(test)]
    fn take(&mut self, now: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        self.refill(now);
        match self.next_token_at(now) {
            Some(at) => Err(at),
            None => {
                self.tokens -= 1.0;
                Ok(())
            }
        }
    }
}

/// At most `limit` writes in any rolling `window` (GitHub's hourly limit): a sliding log of the
/// last `limit` write times. Unlike a bucket it does not slow a quiet installation down; it only
/// stops a sustained stream at the limit.
#[derive(Debug)]
struct WindowLog {
    limit: usize,
    window: Duration,
    times: std::collections::VecDeque<DateTime<Utc>>,
}

impl WindowLog {
    fn new(limit: u32, window: std::time::Duration) -> Self {
        Self {
            limit: limit.max(1) as usize,
            window: Duration::from_std(window).unwrap_or(Duration::hours(1)),
            times: std::collections::VecDeque::new(),
        }
    }

    /// None when a write may go now; otherwise when the oldest write leaves the window.
    fn next_slot_at(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        while self.times.front().is_some_and(|t| *t + self.window <= now) {
            self.times.pop_front();
        }
        if self.times.len() < self.limit {
            return None;
        }
        self.times.front().map(|t| *t + self.window)
    }

    fn record(&mut self, now: DateTime<Utc>) {
        self.times.push_back(now);
    }
}

/// One write against both limits: admitted by both (and counted in both) or by neither, with
/// the time both will admit it.
fn take_write(
    minute: &mut Bucket,
    hour: &mut WindowLog,
    now: DateTime<Utc>,
) -> Result<(), DateTime<Utc>> {
    minute.refill(now);
    let wait = [minute.next_token_at(now), hour.next_slot_at(now)]
        .into_iter()
        .flatten()
        .max();
    if let Some(at) = wait {
        return Err(at);
    }
    minute.tokens -= 1.0;
    hour.record(now);
    Ok(())
}

#[derive(Debug)]
struct Limits {
    per_minute: Bucket,
    per_hour: WindowLog,
    blocked_until: Option<DateTime<Utc>>,
    failures: u32,
}

/// Backoff after the n-th consecutive failure: 2 s × 2^(n-1), at most 5 min, ±20 % jitter so
/// many operators (or workflows) do not come back at the same instant.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let base = 2_000f64 * 2f64.powi(failures.saturating_sub(1).min(16) as i32);
    let capped = base.min(300_000.0);
    let factor = 1.0 + 0.2 * (jitter.clamp(0.0, 1.0) * 2.0 - 1.0);
    Duration::milliseconds((capped * factor) as i64)
}

/// Whether a request writes (paced) or only reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
}

pub struct GithubClient {
    octo: Octocrab,
    auth: Auth,
    clock: Arc<dyn Clock>,
    limits: Mutex<Limits>,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// A check run as `GET …/check-runs` lists it (the fields we use).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ListedCheckRun {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub external_id: Option<String>,
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub output: ListedOutput,
}

/// The part of a check run's `output` we read.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ListedOutput {
    /// Annotations the check run holds (GitHub appends each request's annotations): the truth
    /// about how many were sent, whatever our status says after a crash.
    #[serde(default)]
    pub annotations_count: u32,
}

impl GithubClient {
    pub fn new(cfg: &GithubConfig, clock: Arc<dyn Clock>) -> Result<Self, GithubError> {
        let octo = Octocrab::builder()
            .base_uri(cfg.api_base_url.as_str())
            .map_err(|e| GithubError::Request(format!("invalid API URL: {e}")))?
            .build()
            .map_err(|e| GithubError::Request(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            octo,
            auth: Auth::from_credentials(&cfg.credentials)?,
            clock,
            limits: Mutex::new(Limits {
                per_minute: Bucket::new(cfg.writes_per_minute, std::time::Duration::from_secs(60)),
                per_hour: WindowLog::new(cfg.writes_per_hour, std::time::Duration::from_secs(3600)),
                blocked_until: None,
                failures: 0,
            }),
        })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Until when requests are blocked (rate limit or backoff), if they are.
    pub fn blocked_until(&self) -> Option<DateTime<Utc>> {
        let now = self.now();
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blocked_until
            .filter(|t| *t > now)
    }

    fn admit(&self, kind: Kind) -> Result<(), GithubError> {
        let now = self.now();
        let mut l = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = l.blocked_until.filter(|t| *t > now) {
            return Err(GithubError::RateLimited { until });
        }
        if kind == Kind::Write {
            let Limits {
                per_minute,
                per_hour,
                ..
            } = &mut *l;
            take_write(per_minute, per_hour, now)
                .map_err(|until| GithubError::RateLimited { until })?;
        }
        Ok(())
    }

    fn record(
        &self,
        headers: Option<&HeaderMap>,
        status: Option<StatusCode>,
    ) -> Option<GithubError> {
        let now = self.now();
        let mut l = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let header = |name: &str| -> Option<i64> {
            headers?
                .get(name)?
                .to_str()
                .ok()?
                .trim()
                .parse::<i64>()
                .ok()
        };
        match status {
            Some(s) if s.is_success() || s.is_redirection() => {
                l.failures = 0;
                None
            }
            Some(s)
                if s == StatusCode::TOO_MANY_REQUESTS
                    || (s == StatusCode::FORBIDDEN
                        && (header("retry-after").is_some()
                            || header("x-ratelimit-remaining") == Some(0))) =>
            {
                // Retry-After (seconds) wins; else the primary limit's reset (epoch seconds);
                // else GitHub's advice for secondary limits: wait at least a minute.
                let until = header("retry-after")
                    .map(|s| now + Duration::seconds(s.max(1)))
                    .or_else(|| {
                        header("x-ratelimit-reset")
                            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
                            .filter(|t| *t > now)
                    })
                    .unwrap_or(now + Duration::seconds(60));
                l.blocked_until = Some(until);
                Some(GithubError::RateLimited { until })
            }
            Some(s) if s.is_server_error() => {
                l.failures += 1;
                let retry_at = now + backoff(l.failures, rand::random::<f64>());
                l.blocked_until = Some(retry_at);
                Some(GithubError::Unavailable {
                    reason: format!("HTTP {}", s.as_u16()),
                    retry_at,
                })
            }
            Some(_) => None,
            None => {
                l.failures += 1;
                let retry_at = now + backoff(l.failures, rand::random::<f64>());
                l.blocked_until = Some(retry_at);
                Some(GithubError::Unavailable {
                    reason: "connection failed".into(),
                    retry_at,
                })
            }
        }
    }

    /// One request. `path` is relative to the API base (`/repos/o/r/check-runs`).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        installation: Option<u64>,
        body: Option<&Value>,
        kind: Kind,
    ) -> Result<Value, GithubError> {
        self.admit(kind)?;
        let token = self.token(installation).await?;
        let (status, value) = self.send(method, path, token.as_ref(), body).await?;
        if status == StatusCode::UNAUTHORIZED
            && let (Auth::App(app), Some(i)) = (&self.auth, installation)
        {
            app.forget_token(i);
        }
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        Err(GithubError::Api {
            status: status.as_u16(),
            message,
        })
    }

    /// Sends with the given token, records limits, and returns status + JSON body (5xx and rate
    /// limits come back as errors).
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), GithubError> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(path)
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header(USER_AGENT, "qms-operator");
        if let Some(token) = token {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                // The message must not carry the token.
                .map_err(|_| {
                    GithubError::Request("the token is not a valid header value".into())
                })?;
            v.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, v);
        }
        let request = self
            .octo
            .build_request(builder, body)
            .map_err(|e| GithubError::Request(e.to_string()))?;
        let response = match self.octo.execute(request).await {
            Ok(r) => r,
            Err(_) => {
                return Err(self
                    .record(None, None)
                    .unwrap_or_else(|| GithubError::Request("transport error".into())));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(err) = self.record(Some(&headers), Some(status)) {
            return Err(err);
        }
        let text = self.octo.body_to_string(response).await.unwrap_or_default();
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.chars().take(300).collect()))
        };
        Ok((status, value))
    }

    /// The Authorization token for a request on behalf of `installation`.
    async fn token(&self, installation: Option<u64>) -> Result<Option<Secret>, GithubError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Token(t) => Ok(Some(t.clone())),
            Auth::App(app) => {
                let Some(id) = installation else {
                    return Err(AuthError::NoInstallation("this request".into()).into());
                };
                let now = self.now();
                if let Some(t) = app.cached_token(id, now) {
                    return Ok(Some(t));
                }
                self.fetch_installation_token(app, id).await.map(Some)
            }
        }
    }

    async fn fetch_installation_token(
        &self,
        app: &AppAuth,
        id: u64,
    ) -> Result<Secret, GithubError> {
        #[derive(Deserialize)]
        struct Token {
            token: String,
            expires_at: DateTime<Utc>,
        }
        let jwt = app.jwt(self.now())?;
        let path = format!("/app/installations/{id}/access_tokens");
        let (status, value) = self
            .send(
                Method::POST,
                &path,
                Some(&jwt),
                Some(&Value::Object(Default::default())),
            )
            .await?;
        if !status.is_success() {
            return Err(GithubError::Api {
                status: status.as_u16(),
                message: "cannot create an installation token".into(),
            });
        }
        let t: Token = serde_json::from_value(value).map_err(|_| GithubError::Api {
            status: status.as_u16(),
            message: "unexpected installation token response".into(),
        })?;
        let token = Secret::new(t.token);
        app.store_token(id, token.clone(), t.expires_at);
        Ok(token)
    }

    /// The installation of `repository` (App mode): from the cache or `GET /repos/{o}/{r}/installation`.
    pub async fn installation_for(&self, repository: &str) -> Result<Option<u64>, GithubError> {
        let Auth::App(app) = &self.auth else {
            return Ok(None);
        };
        if let Some(id) = app.known_installation(repository) {
            return Ok(Some(id));
        }
        self.admit(Kind::Read)?;
        let jwt = app.jwt(self.now())?;
        let (status, value) = self
            .send(
                Method::GET,
                &format!("/repos/{}/installation", repo_path(repository)?),
                Some(&jwt),
                None,
            )
            .await?;
        let id = value
            .get("id")
            .and_then(Value::as_u64)
            .filter(|_| status.is_success());
        match id {
            Some(id) => {
                app.remember_installation(repository, id);
                Ok(Some(id))
            }
            None => Err(AuthError::NoInstallation(repository.to_owned()).into()),
        }
    }

    pub fn remember_installation(&self, repository: &str, installation: u64) {
        if let Auth::App(app) = &self.auth {
            app.remember_installation(repository, installation);
        }
    }

    // --- The endpoints qms-github uses -------------------------------------------------------

    pub async fn create_check_run(
        &self,
        inst: Option<u64>,
        repo: &str,
        body: &Value,
    ) -> Result<i64, GithubError> {
        let v = self
            .request(
                Method::POST,
                &format!("/repos/{}/check-runs", repo_path(repo)?),
                inst,
                Some(body),
                Kind::Write,
            )
            .await?;
        v.get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| GithubError::Request("check run created without an id".into()))
    }

    pub async fn update_check_run(
        &self,
        inst: Option<u64>,
        repo: &str,
        id: i64,
        body: &Value,
    ) -> Result<(), GithubError> {
        self.request(
            Method::PATCH,
            &format!("/repos/{}/check-runs/{id}", repo_path(repo)?),
            inst,
            Some(body),
            Kind::Write,
        )
        .await
        .map(|_| ())
    }

    /// One check run (to learn how many annotations it already holds).
    pub async fn get_check_run(
        &self,
        inst: Option<u64>,
        repo: &str,
        id: i64,
    ) -> Result<ListedCheckRun, GithubError> {
        let v = self
            .request(
                Method::GET,
                &format!("/repos/{}/check-runs/{id}", repo_path(repo)?),
                inst,
                None,
                Kind::Read,
            )
            .await?;
        serde_json::from_value(v)
            .map_err(|e| GithubError::Request(format!("unexpected check run answer: {e}")))
    }

    /// Our check runs named `name` on `sha` (to adopt one created before a crash).
    pub async fn list_check_runs(
        &self,
        inst: Option<u64>,
        repo: &str,
        sha: &str,
        name: &str,
    ) -> Result<Vec<ListedCheckRun>, GithubError> {
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            check_runs: Vec<ListedCheckRun>,
        }
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("check_name", name)
            .append_pair("filter", "all")
            .append_pair("per_page", "100")
            .finish();
        let v = self
            .request(
                Method::GET,
                &format!(
                    "/repos/{}/commits/{}/check-runs?{q}",
                    repo_path(repo)?,
                    segment(sha)
                ),
                inst,
                None,
                Kind::Read,
            )
            .await?;
        Ok(serde_json::from_value::<List>(v)
            .map(|l| l.check_runs)
            .unwrap_or_default())
    }

    pub async fn create_comment(
        &self,
        inst: Option<u64>,
        repo: &str,
        issue: u64,
        body: &str,
    ) -> Result<(), GithubError> {
        self.request(
            Method::POST,
            &format!("/repos/{}/issues/{issue}/comments", repo_path(repo)?),
            inst,
            Some(&serde_json::json!({ "body": body })),
            Kind::Write,
        )
        .await
        .map(|_| ())
    }

    pub async fn permission(
        &self,
        inst: Option<u64>,
        repo: &str,
        login: &str,
    ) -> Result<Permission, GithubError> {
        let path = format!(
            "/repos/{}/collaborators/{}/permission",
            repo_path(repo)?,
            segment(login)
        );
        match self
            .request(Method::GET, &path, inst, None, Kind::Read)
            .await
        {
            Ok(v) => {
                // `role_name` knows triage/maintain; `permission` is the legacy 4-level field.
                let role = v
                    .get("role_name")
                    .and_then(Value::as_str)
                    .map(Permission::parse);
                let legacy = v
                    .get("permission")
                    .and_then(Value::as_str)
                    .map(Permission::parse);
                Ok(role
                    .into_iter()
                    .chain(legacy)
                    .max()
                    .unwrap_or(Permission::None))
            }
            // Not a collaborator.
            Err(GithubError::Api { status: 404, .. }) => Ok(Permission::None),
            Err(e) => Err(e),
        }
    }

    pub async fn is_team_member(
        &self,
        inst: Option<u64>,
        team: &str,
        login: &str,
    ) -> Result<bool, GithubError> {
        let Some((org, slug)) = team.split_once('/') else {
            return Ok(false);
        };
        let path = format!(
            "/orgs/{}/teams/{}/memberships/{}",
            segment(org),
            segment(slug),
            segment(login)
        );
        match self
            .request(Method::GET, &path, inst, None, Kind::Read)
            .await
        {
            Ok(v) => Ok(v.get("state").and_then(Value::as_str) == Some("active")),
            Err(GithubError::Api { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn pull_request(
        &self,
        inst: Option<u64>,
        repo: &str,
        number: u64,
    ) -> Result<PullRequest, GithubError> {
        let v = self
            .request(
                Method::GET,
                &format!("/repos/{}/pulls/{number}", repo_path(repo)?),
                inst,
                None,
                Kind::Read,
            )
            .await?;
        serde_json::from_value(v)
            .map_err(|e| GithubError::Request(format!("unexpected pull request: {e}")))
    }

    pub async fn repository_dispatch(
        &self,
        inst: Option<u64>,
        repo: &str,
        body: &Value,
    ) -> Result<(), GithubError> {
        self.request(
            Method::POST,
            &format!("/repos/{}/dispatches", repo_path(repo)?),
            inst,
            Some(body),
            Kind::Write,
        )
        .await
        .map(|_| ())
    }
}

/// `owner/name` as two path segments; anything else is refused (no path injection).
fn repo_path(repo: &str) -> Result<String, GithubError> {
    match repo.split_once('/') {
        Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => {
            Ok(format!("{}/{}", segment(o), segment(n)))
        }
        _ => Err(GithubError::Request(format!("{repo:?} is not owner/name"))),
    }
}

/// Percent-encodes everything but unreserved characters.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out == "." || out == ".." {
        return out.replace('.', "%2E");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_never_exceeds_the_limit_in_any_minute() {
        let start = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let mut b = Bucket::new(80, std::time::Duration::from_secs(60));
        let mut granted = Vec::new();
        // Try a write every 100 ms for 5 minutes.
        for i in 0..3000 {
            let now = start + Duration::milliseconds(i * 100);
            if b.take(now).is_ok() {
                granted.push(now);
            }
        }
        for (i, t) in granted.iter().enumerate() {
            let in_window = granted[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::seconds(60))
                .count();
            assert!(in_window <= 80, "{in_window} writes in the minute from {t}");
        }
        // And it is not needlessly slow: close to 80/min sustained.
        assert!(granted.len() >= 5 * 70, "{}", granted.len());
    }

    #[test]
    fn minute_and_hour_limits_hold_together() {
        let start = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let mut minute = Bucket::new(80, std::time::Duration::from_secs(60));
        let mut hour = WindowLog::new(500, std::time::Duration::from_secs(3600));
        let mut granted = Vec::new();
        // Try a write every 200 ms for 3 hours.
        for i in 0..(3 * 3600 * 5) {
            let now = start + Duration::milliseconds(i * 200);
            match take_write(&mut minute, &mut hour, now) {
                Ok(()) => granted.push(now),
                Err(at) => assert!(at > now, "a refusal names a later time"),
            }
        }
        for (window, limit) in [(60, 80), (3600, 500)] {
            for (i, t) in granted.iter().enumerate() {
                let n = granted[i..]
                    .iter()
                    .take_while(|u| **u < *t + Duration::seconds(window))
                    .count();
                assert!(n <= limit, "{n} writes in the {window} s from {t}");
            }
        }
        // 500 an hour sustained; and the hourly limit does not slow a burst: the first 500
        // writes go at the per-minute pace (about 7 minutes, not an hour).
        assert!(granted.len() >= 3 * 500 - 10, "{}", granted.len());
        assert!(
            granted[499] - start <= Duration::minutes(8),
            "{}",
            granted[499] - start
        );
        // A write refused by the hourly window takes no token from the minute bucket.
        let mut m = Bucket::new(80, std::time::Duration::from_secs(60));
        let mut h = WindowLog::new(1, std::time::Duration::from_secs(3600));
        assert!(take_write(&mut m, &mut h, start).is_ok());
        let before = m.tokens;
        let at = take_write(&mut m, &mut h, start).unwrap_err();
        assert_eq!(at, start + Duration::hours(1));
        assert_eq!(m.tokens, before);
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(1, 0.5), Duration::seconds(2));
        assert_eq!(backoff(3, 0.5), Duration::seconds(8));
        assert_eq!(backoff(30, 0.5), Duration::seconds(300));
        assert!(backoff(2, 0.0) < backoff(2, 1.0));
        assert!(backoff(2, 1.0) <= Duration::milliseconds(4800));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(repo_path("creo/app.rs").unwrap(), "creo/app.rs");
        assert!(repo_path("a/b/c").is_err());
        assert!(repo_path("noslash").is_err());
        assert_eq!(segment("a b/../"), "a%20b%2F..%2F");
        assert_eq!(segment(".."), "%2E%2E");
    }
}
