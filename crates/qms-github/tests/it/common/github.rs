//! A fake of the GitHub REST endpoints qms-github uses, served by wiremock. It keeps state (check
//! runs, comments, dispatches) and enforces GitHub's documented rules, so a test fails if we
//! break one: ≤ 50 annotations per request, outputs ≤ 65,535 bytes, a completed check run never
//! goes back to in_progress.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Clone, Debug, Default)]
pub struct FakeCheck {
    pub id: i64,
    pub name: String,
    pub head_sha: String,
    pub external_id: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: String,
    pub summary: String,
    pub annotations: usize,
    pub actions: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub auth: Option<String>,
    pub status: u16,
}

impl Call {
    /// `POST QMS / dor-validation in_progress`, `PATCH #2 completed success`, …
    pub fn short(&self) -> String {
        let b = &self.body;
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("");
        let last = self.path.rsplit('/').next().unwrap_or("");
        if self.method == "POST" && self.path.ends_with("/check-runs") {
            format!("POST {} {}{}", s("name"), s("status"), opt(s("conclusion")))
        } else if self.method == "PATCH" && self.path.contains("/check-runs/") {
            if b.get("status").is_none() {
                let n = b["output"]["annotations"]
                    .as_array()
                    .map(Vec::len)
                    .unwrap_or(0);
                format!("PATCH #{last} +{n} annotations")
            } else {
                format!("PATCH #{last} {}{}", s("status"), opt(s("conclusion")))
            }
        } else if self.method == "GET" && self.path.contains("/check-runs") {
            "GET check-runs".to_owned()
        } else {
            format!("{} {}", self.method, self.path)
        }
    }
}

fn opt(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(" {s}")
    }
}

#[derive(Default)]
pub struct State {
    pub checks: BTreeMap<i64, FakeCheck>,
    pub comments: Vec<(u64, String)>,
    pub dispatches: Vec<Value>,
    pub calls: Vec<Call>,
    /// Login → `role_name`.
    pub permissions: HashMap<String, String>,
    pub pulls: HashMap<u64, Value>,
    /// Answer every request with this status (an outage), with these headers.
    pub down: Option<(u16, Vec<(String, String)>)>,
    /// Answer the next requests with these (status, headers), then behave.
    pub fail_next: VecDeque<(u16, Vec<(String, String)>)>,
    pub tokens_issued: u32,
    pub violations: Vec<String>,
}

#[derive(Clone)]
pub struct FakeGithub {
    pub server: Arc<MockServer>,
    pub state: Arc<Mutex<State>>,
}

struct Responder(Arc<Mutex<State>>);

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let path = req.url.path().to_owned();
        let method = req.method.to_string();
        let failure = st.fail_next.pop_front().or_else(|| st.down.clone());
        let (status, resp) = match failure {
            Some((code, headers)) => {
                let mut r = ResponseTemplate::new(code)
                    .set_body_json(json!({"message": "failure injected by the test"}));
                for (k, v) in headers {
                    r = r.insert_header(k.as_str(), v.as_str());
                }
                (code, r)
            }
            None => route(&mut st, &method, &path, &body),
        };
        st.calls.push(Call {
            method,
            path,
            body,
            auth,
            status,
        });
        resp
    }
}

fn route(st: &mut State, method: &str, path: &str, body: &Value) -> (u16, ResponseTemplate) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ok = |code: u16, v: Value| (code, ResponseTemplate::new(code).set_body_json(v));
    let invalid = |st: &mut State, msg: String| {
        st.violations.push(msg.clone());
        (
            422,
            ResponseTemplate::new(422).set_body_json(json!({"message": msg})),
        )
    };
    // Output limits apply to create and update.
    if let Some(out) = body.get("output") {
        for k in ["summary", "text"] {
            if out
                .get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| s.len() > 65_535)
            {
                return invalid(st, format!("output.{k} is longer than 65535 bytes"));
            }
        }
        if out
            .get("annotations")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 50)
        {
            return invalid(st, "more than 50 annotations in one request".into());
        }
        if out.get("annotations").is_some()
            && (out.get("title").is_none() || out.get("summary").is_none())
        {
            return invalid(
                st,
                "annotations need output.title and output.summary".into(),
            );
        }
    }
    let anns = |b: &Value| {
        b["output"]["annotations"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    };
    let actions = |b: &Value| -> Option<Vec<String>> {
        b.get("actions").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|x| x["identifier"].as_str().map(str::to_owned))
                .collect()
        })
    };
    match (method, parts.as_slice()) {
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            st.tokens_issued += 1;
            let n = st.tokens_issued;
            // Token n is valid until 07:10 + (n-1) h (the tests' clock starts at 06:10).
            let expires = format!("2025-08-17T{:02}:10:00Z", 6 + n);
            ok(
                201,
                json!({"token": format!("ghs_installation{id}token{n}"), "expires_at": expires}),
            )
        }
        ("GET", ["repos", _, _, "installation"]) => ok(200, json!({"id": 4242})),
        ("POST", ["repos", _, _, "check-runs"]) => {
            let id = st.checks.len() as i64 + 1;
            let c = FakeCheck {
                id,
                name: body["name"].as_str().unwrap_or("").into(),
                head_sha: body["head_sha"].as_str().unwrap_or("").into(),
                external_id: body["external_id"].as_str().unwrap_or("").into(),
                status: body["status"].as_str().unwrap_or("queued").into(),
                conclusion: body["conclusion"].as_str().map(str::to_owned),
                title: body["output"]["title"].as_str().unwrap_or("").into(),
                summary: body["output"]["summary"].as_str().unwrap_or("").into(),
                annotations: anns(body),
                actions: actions(body).unwrap_or_default(),
            };
            st.checks.insert(id, c);
            ok(201, json!({"id": id, "status": body["status"]}))
        }
        ("PATCH", ["repos", _, _, "check-runs", id]) => {
            let id: i64 = id.parse().unwrap_or(0);
            let Some(c) = st.checks.get(&id).cloned() else {
                return ok(404, json!({"message": "Not Found"}));
            };
            let new_status = body.get("status").and_then(Value::as_str);
            if c.status == "completed" && matches!(new_status, Some("in_progress") | Some("queued"))
            {
                return invalid(
                    st,
                    format!("check run {id} moved back from completed to {new_status:?}"),
                );
            }
            let c = st.checks.get_mut(&id).unwrap();
            if let Some(s) = new_status {
                c.status = s.into();
            }
            if let Some(s) = body.get("conclusion").and_then(Value::as_str) {
                c.conclusion = Some(s.into());
            }
            if let Some(t) = body["output"]["title"].as_str() {
                c.title = t.into();
            }
            if let Some(t) = body["output"]["summary"].as_str() {
                c.summary = t.into();
            }
            c.annotations += anns(body);
            if let Some(a) = actions(body) {
                c.actions = a;
            }
            ok(200, json!({"id": id}))
        }
        ("GET", ["repos", _, _, "check-runs", id]) => {
            match st.checks.get(&id.parse().unwrap_or(0)) {
                Some(c) => ok(200, listed(c)),
                None => ok(404, json!({"message": "Not Found"})),
            }
        }
        ("GET", ["repos", _, _, "commits", sha, "check-runs"]) => {
            let runs: Vec<Value> = st
                .checks
                .values()
                .filter(|c| c.head_sha == *sha)
                .map(listed)
                .collect();
            ok(200, json!({"total_count": runs.len(), "check_runs": runs}))
        }
        ("POST", ["repos", _, _, "issues", n, "comments"]) => {
            st.comments.push((
                n.parse().unwrap_or(0),
                body["body"].as_str().unwrap_or("").into(),
            ));
            ok(201, json!({"id": 1}))
        }
        ("GET", ["repos", _, _, "collaborators", login, "permission"]) => {
            match st.permissions.get(*login) {
                Some(role) => {
                    let legacy = match role.as_str() {
                        "maintain" => "write",
                        "triage" => "read",
                        r => r,
                    };
                    ok(
                        200,
                        json!({"permission": legacy, "role_name": role, "user": {"login": login}}),
                    )
                }
                None => ok(404, json!({"message": "Not Found"})),
            }
        }
        ("GET", ["orgs", _, "teams", _, "memberships", _]) => {
            ok(404, json!({"message": "Not Found"}))
        }
        ("GET", ["repos", _, _, "pulls", n]) => match st.pulls.get(&n.parse().unwrap_or(0)) {
            Some(pr) => ok(200, pr.clone()),
            None => ok(404, json!({"message": "Not Found"})),
        },
        ("POST", ["repos", _, _, "dispatches"]) => {
            st.dispatches.push(body.clone());
            (204, ResponseTemplate::new(204))
        }
        _ => ok(
            404,
            json!({"message": format!("fake GitHub has no route {method} {path}")}),
        ),
    }
}

/// A check run as GitHub lists it (the fields qms-github reads).
fn listed(c: &FakeCheck) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "head_sha": c.head_sha,
        "external_id": c.external_id,
        "status": c.status,
        "conclusion": c.conclusion,
        "output": {"title": c.title, "summary": c.summary, "annotations_count": c.annotations},
    })
}

impl FakeGithub {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any())
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        Self {
            server: Arc::new(server),
            state,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Polls until `pred` holds; after `deadline` panics with the check runs and calls seen.
    pub async fn until(
        &self,
        what: &str,
        deadline: std::time::Duration,
        pred: impl Fn(&State) -> bool,
    ) {
        let start = tokio::time::Instant::now();
        loop {
            if pred(&self.lock()) {
                return;
            }
            if start.elapsed() > deadline {
                let st = self.lock();
                panic!(
                    "gave up waiting for GitHub: {what}; check runs: {:#?}; calls: {:?}",
                    st.checks,
                    st.calls.iter().map(Call::short).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Polls until the check run `name` on `sha` has `status`/`conclusion`.
    pub async fn check_until(
        &self,
        name: &str,
        sha: &str,
        status: &str,
        conclusion: Option<&str>,
        deadline: std::time::Duration,
    ) {
        let what = format!("{name} on {sha} {status} {conclusion:?}");
        self.until(&what, deadline, |st| {
            st.checks.values().any(|c| {
                c.name == name
                    && c.head_sha == sha
                    && c.status == status
                    && c.conclusion.as_deref() == conclusion
            })
        })
        .await;
    }

    /// The calls since the last `take_calls`, in the `Call::short` form.
    pub fn take_calls(&self) -> Vec<String> {
        let mut st = self.lock();
        std::mem::take(&mut st.calls)
            .iter()
            .map(Call::short)
            .collect()
    }

    pub fn take_raw_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    pub fn check(&self, name: &str, sha: &str) -> Option<FakeCheck> {
        self.lock()
            .checks
            .values()
            .rfind(|c| c.name == name && c.head_sha == sha)
            .cloned()
    }

    pub fn assert_no_violations(&self) {
        let v = self.lock().violations.clone();
        assert!(v.is_empty(), "GitHub rules broken: {v:?}");
    }
}
