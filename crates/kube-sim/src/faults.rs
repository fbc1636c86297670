//! Fault injection and request counters for reliability tests and benchmarks.
//!
//! Faults are decided with a seeded RNG so a test run is reproducible. Rules match on verb and
//! resource (`pods`, `pods/status`, `qmsworkflows`...); the first matching rule that fires wins.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::ApiError;

/// What a firing fault answers.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// An error `Status` with this code (500, 503, 504, ...).
    Error(u16),
    /// 429 TooManyRequests with `Retry-After: secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// 409 Conflict, as if the object had been modified concurrently.
    Conflict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    pub verb: Option<String>,
    pub resource: Option<String>,
    /// Only for clients whose `User-Agent` starts with this (one client's view of an outage,
    /// while the built-in kubelet and the others are unaffected).
    pub user_agent: Option<String>,
    pub action: FaultAction,
    /// Chance in [0, 1] that a matching request fails.
    pub probability: f64,
    /// Fire at most this many times (then the rule is spent).
    pub remaining: Option<u64>,
}

impl FaultRule {
    fn new(action: FaultAction) -> Self {
        FaultRule {
            verb: None,
            resource: None,
            user_agent: None,
            action,
            probability: 1.0,
            remaining: None,
        }
    }
    pub fn error(code: u16) -> Self {
        Self::new(FaultAction::Error(code))
    }
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::new(FaultAction::TooManyRequests { retry_after_secs })
    }
    pub fn conflict() -> Self {
        Self::new(FaultAction::Conflict)
    }
    /// Only for this verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`).
    pub fn verb(mut self, verb: &str) -> Self {
        self.verb = Some(verb.to_owned());
        self
    }
    /// Only for this resource (plural, optionally `/subresource`).
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.to_owned());
        self
    }
    /// Only for clients whose `User-Agent` header starts with `prefix`.
    pub fn user_agent(mut self, prefix: &str) -> Self {
        self.user_agent = Some(prefix.to_owned());
        self
    }
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p.clamp(0.0, 1.0);
        self
    }
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, verb: &str, resource: &str, user_agent: &str) -> bool {
        self.verb.as_deref().is_none_or(|v| v == verb)
            && self.resource.as_deref().is_none_or(|r| r == resource)
            && self
                .user_agent
                .as_deref()
                .is_none_or(|p| user_agent.starts_with(p))
    }

    fn to_error(&self, resource: &str) -> ApiError {
        match self.action {
            FaultAction::Error(code) => {
                let reason = match code {
                    503 => "ServiceUnavailable",
                    504 => "Timeout",
                    _ => "InternalError",
                };
                ApiError::new(code, reason, format!("injected fault: {code} for {resource}"))
            }
            FaultAction::TooManyRequests { retry_after_secs } => {
                ApiError::new(429, "TooManyRequests", "injected fault: the server has received too many requests and has asked us to try again later")
                    .with_header("Retry-After", retry_after_secs.to_string())
            }
            FaultAction::Conflict => ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {resource}: injected fault: the object has been modified; please apply your changes to the latest version and try again"),
            ),
        }
    }
}

/// `code=500,verb=get,resource=pods,user-agent=qms-operator,probability=0.5,times=3` (CLI
/// `--fault`). `code=429`
/// takes `retry-after=SECS`; `code=409` is a conflict.
impl FromStr for FaultRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut code: Option<u16> = None;
        let mut retry_after = 1;
        let mut rule = FaultRule::error(500);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {part:?}"))?;
            match k {
                "code" => code = Some(v.parse().map_err(|e| format!("code: {e}"))?),
                "verb" => rule.verb = Some(v.to_owned()),
                "resource" => rule.resource = Some(v.to_owned()),
                "user-agent" => rule.user_agent = Some(v.to_owned()),
                "probability" | "rate" => {
                    rule.probability = v
                        .parse::<f64>()
                        .map_err(|e| format!("{k}: {e}"))?
                        .clamp(0.0, 1.0)
                }
                "times" => rule.remaining = Some(v.parse().map_err(|e| format!("times: {e}"))?),
                "retry-after" => {
                    retry_after = v.parse().map_err(|e| format!("retry-after: {e}"))?
                }
                other => return Err(format!("unknown fault key {other:?}")),
            }
        }
        rule.action = match code.unwrap_or(500) {
            429 => FaultAction::TooManyRequests {
                retry_after_secs: retry_after,
            },
            409 => FaultAction::Conflict,
            c if (400..600).contains(&c) => FaultAction::Error(c),
            c => return Err(format!("code {c} is not an HTTP error code")),
        };
        Ok(rule)
    }
}

#[derive(Debug, Clone)]
struct Latency {
    verb: Option<String>,
    resource: Option<String>,
    delay: Duration,
}

struct FaultState {
    rng: StdRng,
    rules: Vec<FaultRule>,
    latency: Vec<Latency>,
    watch_drop_after: Option<u64>,
    expire_next_watch: bool,
}

/// Run-time fault injection handle (cheap to clone; shared with the server).
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
    drop_tx: Arc<tokio::sync::watch::Sender<u64>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        let (drop_tx, _) = tokio::sync::watch::channel(0);
        Faults {
            state: Arc::new(Mutex::new(FaultState {
                rng: StdRng::seed_from_u64(seed),
                rules: Vec::new(),
                latency: Vec::new(),
                watch_drop_after: None,
                expire_next_watch: false,
            })),
            drop_tx: Arc::new(drop_tx),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-seeds the RNG (reproducible sequences of probabilistic faults).
    pub fn seed(&self, seed: u64) {
        self.lock().rng = StdRng::seed_from_u64(seed);
    }

    pub fn add(&self, rule: FaultRule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule and latency, and stops dropping watches.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.latency.clear();
        s.watch_drop_after = None;
        s.expire_next_watch = false;
    }

    /// Adds `delay` before answering matching requests (`None` matches everything).
    pub fn set_latency(&self, verb: Option<&str>, resource: Option<&str>, delay: Duration) {
        self.lock().latency.push(Latency {
            verb: verb.map(str::to_owned),
            resource: resource.map(str::to_owned),
            delay,
        });
    }

    /// Ends every open watch stream now (clients see the stream close and re-watch).
    pub fn drop_watches(&self) {
        self.drop_tx.send_modify(|g| *g += 1);
    }

    /// Ends each watch stream after it has sent `n` events (`None` turns this off).
    pub fn drop_watches_after(&self, n: Option<u64>) {
        self.lock().watch_drop_after = n;
    }

    /// The next watch request gets `410 Gone` (an ERROR event with reason Expired).
    pub fn expire_next_watch(&self) {
        self.lock().expire_next_watch = true;
    }

    pub(crate) fn check(&self, verb: &str, resource: &str, user_agent: &str) -> Option<ApiError> {
        let mut s = self.lock();
        let FaultState { rng, rules, .. } = &mut *s;
        let mut fired = None;
        for (i, rule) in rules.iter_mut().enumerate() {
            if !rule.matches(verb, resource, user_agent) || rule.remaining == Some(0) {
                continue;
            }
            if rule.probability >= 1.0 || rng.random_bool(rule.probability) {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                fired = Some((i, rule.to_error(resource)));
                break;
            }
        }
        fired.map(|(_, e)| e)
    }

    pub(crate) fn latency(&self, verb: &str, resource: &str) -> Option<Duration> {
        let s = self.lock();
        s.latency
            .iter()
            .filter(|l| {
                l.verb.as_deref().is_none_or(|v| v == verb)
                    && l.resource.as_deref().is_none_or(|r| r == resource)
            })
            .map(|l| l.delay)
            .max()
    }

    pub(crate) fn take_expire(&self) -> bool {
        std::mem::take(&mut self.lock().expire_next_watch)
    }

    pub(crate) fn watch_drop_after(&self) -> Option<u64> {
        self.lock().watch_drop_after
    }

    pub(crate) fn drop_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.drop_tx.subscribe()
    }
}

/// (User-Agent product, verb, resource).
pub type ClientKey = (String, String, String);

/// Requests served, per (verb, resource). Resource is the plural, with `/subresource` when one
/// was addressed; discovery and OpenAPI requests count under verb `get`, resource `discovery`/`openapi`.
#[derive(Clone, Default, Debug)]
pub struct Counters {
    inner: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    /// The same per client: (User-Agent product, i.e. the part before `/`, verb, resource).
    by_client: Arc<Mutex<BTreeMap<ClientKey, u64>>>,
}

impl Counters {
    pub(crate) fn incr_for(&self, verb: &str, resource: &str, user_agent: &str) {
        self.incr(verb, resource);
        let product: String = user_agent
            .split('/')
            .next()
            .unwrap_or_default()
            .chars()
            .take(40)
            .collect();
        *self
            .by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((product, verb.to_owned(), resource.to_owned()))
            .or_default() += 1;
    }
    /// Requests per (User-Agent product, verb, resource), e.g. `("qms-operator", "patch",
    /// "qmsworkflows/status")`.
    pub fn snapshot_by_client(&self) -> BTreeMap<ClientKey, u64> {
        self.by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String), u64>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn incr(&self, verb: &str, resource: &str) {
        *self
            .lock()
            .entry((verb.to_owned(), resource.to_owned()))
            .or_default() += 1;
    }
    pub fn get(&self, verb: &str, resource: &str) -> u64 {
        self.lock()
            .get(&(verb.to_owned(), resource.to_owned()))
            .copied()
            .unwrap_or(0)
    }
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.lock().clone()
    }
    pub fn total(&self) -> u64 {
        self.lock().values().sum()
    }
    pub fn reset(&self) {
        self.lock().clear();
        self.by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rule() {
        let r: FaultRule = "code=429,verb=get,resource=pods,retry-after=3,times=2"
            .parse()
            .unwrap();
        assert_eq!(
            r.action,
            FaultAction::TooManyRequests {
                retry_after_secs: 3
            }
        );
        assert_eq!(r.remaining, Some(2));
        assert!("code=200".parse::<FaultRule>().is_err());
    }

    #[test]
    fn a_rule_for_one_client_spares_the_others() {
        let f = Faults::new(1);
        f.add(
            "code=500,verb=watch,user-agent=qms-operator"
                .parse()
                .unwrap(),
        );
        assert!(f.check("watch", "pods", "qms-operator/0.1.0").is_some());
        assert!(f.check("watch", "pods", "kubectl/v1.35.0").is_none());
        assert!(f.check("watch", "pods", "").is_none());
        assert!(f.check("list", "pods", "qms-operator/0.1.0").is_none());
    }

    #[test]
    fn seeded_probability_is_reproducible() {
        let run = || {
            let f = Faults::new(7);
            f.add(FaultRule::error(500).probability(0.5));
            (0..64)
                .map(|_| f.check("get", "pods", "").is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
    }
}
