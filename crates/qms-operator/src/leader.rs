//! Lease-based leader election (`coordination.k8s.io/v1` Lease), in the manner of client-go's
//! `leaderelection`: kube-runtime 5 has none.
//!
//! - One Lease (`--leader-election-lease-name`, default `qms-operator`) in
//!   `--leader-election-namespace` (default: the pod's namespace). Its `holderIdentity` is the
//!   replica acting as the operator; every other replica is a *standby*.
//! - A candidate takes the Lease only when it is **free** (no holder: released on shutdown) or
//!   **expired**: `renewTime + leaseDurationSeconds < now` *and* the candidate itself has seen
//!   the Lease unchanged (same resourceVersion) for `leaseDurationSeconds` on its own monotonic
//!   clock — the second rule keeps a candidate whose wall clock runs ahead of the leader's from
//!   taking over a lease that is still being renewed. Every write is an update carrying the
//!   resourceVersion that was read (or a create), so of two candidates at most one wins; the
//!   other gets 409 and stays a standby.
//! - The leader renews every `renew_interval`; a failed renew is retried every `retry_period`.
//!   When no renew succeeded for `renew_deadline` (< lease duration, so before any standby may
//!   take over), or the Lease shows another holder, the leader stops acting at once: its
//!   controllers are aborted and [`run`] returns [`Outcome::Lost`]; `qms-operator run` then exits
//!   so that Kubernetes restarts the container as a fresh candidate.
//! - On graceful shutdown the controllers are stopped first, then the Lease is released
//!   (`holderIdentity` cleared, `leaseDurationSeconds: 1`) so a standby takes over at its next
//!   retry instead of waiting for expiry.
//!
//! Only the controllers (engine, catalog, GitHub check-run sync) and their watches run on the
//! leader. The HTTP server (`/healthz`, `/readyz`, `/metrics`, the GitHub webhook) runs on every
//! replica: see `http.rs` for why a standby is Ready and answers webhooks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use qms_api::names::{is_dns_label, is_dns_subdomain};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Default name of the Lease.
pub const DEFAULT_LEASE_NAME: &str = "qms-operator";
/// Where Kubernetes mounts the pod's namespace.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Validated leader-election settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's identity: pod name + random suffix (a restarted container is a new
    /// candidate, never mistaken for the holder it was before).
    pub identity: String,
    /// `leaseDurationSeconds` written to the Lease: how long standbys wait after the last renew.
    pub lease_duration: Duration,
    /// The leader gives up when no renew succeeded for this long (< `lease_duration`).
    pub renew_deadline: Duration,
    /// How often the leader renews.
    pub renew_interval: Duration,
    /// How often a standby tries to acquire, and a failed renew is retried.
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Defaults derived from a lease duration: renew deadline ⅔ of it, renew interval ⅓, retry
    /// period ⅓ but at most 2 s (15 s → 10 s, 5 s, 2 s, as client-go's defaults).
    pub fn with_lease_duration(
        namespace: impl Into<String>,
        identity: impl Into<String>,
        lease_duration: Duration,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            identity: identity.into(),
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            renew_interval: lease_duration / 3,
            retry_period: (lease_duration / 3).min(Duration::from_secs(2)),
        }
    }

    /// Checks the relations that make the election safe; the message names the setting.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let secs = |d: Duration| format!("{:.3}s", d.as_secs_f64());
        if self.lease_duration.subsec_nanos() != 0
            || self.lease_duration.is_zero()
            || self.lease_duration.as_secs() > i32::MAX as u64
        {
            return Err((
                "--leader-election-lease-duration",
                format!(
                    "must be a whole number of seconds (≥ 1s; the Lease stores seconds), got {}",
                    secs(self.lease_duration)
                ),
            ));
        }
        if self.renew_deadline.is_zero() || self.renew_deadline >= self.lease_duration {
            return Err((
                "--leader-election-renew-deadline",
                format!(
                    "must be greater than 0 and less than the lease duration ({}), got {}: the \
                     leader must stop acting before a standby may take over",
                    secs(self.lease_duration),
                    secs(self.renew_deadline)
                ),
            ));
        }
        if self.renew_interval.is_zero() || self.renew_interval >= self.renew_deadline {
            return Err((
                "--leader-election-renew-interval",
                format!(
                    "must be greater than 0 and less than the renew deadline ({}), got {}",
                    secs(self.renew_deadline),
                    secs(self.renew_interval)
                ),
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err((
                "--leader-election-retry-period",
                format!(
                    "must be greater than 0 and less than the renew deadline ({}), got {}",
                    secs(self.renew_deadline),
                    secs(self.retry_period)
                ),
            ));
        }
        if !is_dns_label(&self.namespace) {
            return Err((
                "--leader-election-namespace",
                format!("{:?} is not a valid namespace name", self.namespace),
            ));
        }
        if !is_dns_subdomain(&self.lease_name) {
            return Err((
                "--leader-election-lease-name",
                format!("{:?} is not a valid object name", self.lease_name),
            ));
        }
        if self.identity.is_empty() {
            return Err(("POD_NAME", "the identity must not be empty".to_owned()));
        }
        Ok(())
    }
}

/// The pod's namespace: `$POD_NAMESPACE` (downward API), else the service account's namespace
/// file, else `default`.
pub fn default_namespace(pod_namespace: Option<String>) -> String {
    pod_namespace
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE_FILE)
                .ok()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| "default".to_owned())
}

/// `<pod name or hostname>_<8 random hex digits>`.
pub fn default_identity(pod_name: Option<String>) -> String {
    let base = pod_name
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "qms-operator".to_owned());
    let suffix: u32 = rand::rng().random();
    format!("{base}_{suffix:08x}")
}

/// A `MicroTime` of `t` (k8s-openapi's times are jiff timestamps).
pub fn micro(t: DateTime<Utc>) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

fn from_micro(t: &MicroTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// What a Lease says, judged at `now` by `identity` (pure: wall clock only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No holder (never held, or released).
    Free,
    /// Held by us.
    Mine,
    /// Held by someone else whose last renew is older than the lease duration.
    Expired { holder: String },
    /// Held by someone else, valid until `until`.
    Held {
        holder: String,
        until: DateTime<Utc>,
    },
}

impl Verdict {
    /// May `identity` write itself into the Lease (given the wall-clock rule only)?
    pub fn may_acquire(&self) -> bool {
        !matches!(self, Verdict::Held { .. })
    }
}

/// The lease duration a Lease declares (`fallback` when it declares none or nonsense).
pub fn lease_duration_of(lease: &Lease, fallback: Duration) -> Duration {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(fallback)
}

/// Judges `lease` at `now`: free, ours, expired (`renewTime` — or `acquireTime` when never
/// renewed — plus `leaseDurationSeconds` before `now`), or held. A holder without any time is
/// treated as expired (the lease was written by something that does not renew).
pub fn judge(lease: &Lease, identity: &str, now: DateTime<Utc>, fallback: Duration) -> Verdict {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder.is_empty() {
        return Verdict::Free;
    }
    if holder == identity {
        return Verdict::Mine;
    }
    let last = spec
        .renew_time
        .or(spec.acquire_time)
        .map(|t| from_micro(&t));
    let Some(last) = last else {
        return Verdict::Expired { holder };
    };
    let duration = lease_duration_of(lease, fallback);
    let until = last + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
    if until < now {
        Verdict::Expired { holder }
    } else {
        Verdict::Held { holder, until }
    }
}

/// The Lease spec with `identity` as holder, renewed at `now`. Keeps `acquireTime` and
/// `leaseTransitions` when we already hold it; otherwise counts a transition.
pub fn claimed_spec(
    current: Option<&LeaseSpec>,
    identity: &str,
    lease_duration: Duration,
    now: DateTime<Utc>,
) -> LeaseSpec {
    let mut spec = current.cloned().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(identity);
    if !ours {
        spec.acquire_time = Some(micro(now));
        // A first acquisition of a new Lease is not a transition.
        spec.lease_transitions = Some(match spec.lease_transitions {
            Some(n) => n.saturating_add(1),
            None if current.is_some_and(|c| c.holder_identity.is_some()) => 1,
            None => 0,
        });
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(lease_duration.as_secs().min(i32::MAX as u64) as i32);
    spec.renew_time = Some(micro(now));
    spec
}

/// Result of one try to acquire or renew.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease (acquired or renewed by this write).
    Leading,
    /// Someone else holds it (`holder`), or won the race for it.
    Standby { holder: Option<String> },
}

/// One candidate: the Lease API, the config, and what it last observed of the Lease.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaderElectionConfig,
    /// resourceVersion last seen and when (monotonic) it was first seen.
    observed: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(client: Client, cfg: LeaderElectionConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
        }
    }

    pub fn config(&self) -> &LeaderElectionConfig {
        &self.cfg
    }

    /// client-go's `tryAcquireOrRenew`: read the Lease; create it when missing; write ourselves
    /// into it when it is ours, free or expired — always with the resourceVersion just read.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = Utc::now();
        let lease = match self.api.get_opt(&self.cfg.lease_name).await? {
            Some(l) => l,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.lease_name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(claimed_spec(
                        None,
                        &self.cfg.identity,
                        self.cfg.lease_duration,
                        now,
                    )),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(l) => {
                        self.observe(&l);
                        Ok(Attempt::Leading)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        Ok(Attempt::Standby { holder: None })
                    }
                    Err(e) => Err(e),
                };
            }
        };
        let first_seen = self.observe(&lease);
        let verdict = judge(&lease, &self.cfg.identity, now, self.cfg.lease_duration);
        let may = match &verdict {
            Verdict::Free | Verdict::Mine => true,
            // Wall clock says expired; our own clock must agree (see the module docs).
            Verdict::Expired { .. } => {
                first_seen.elapsed() >= lease_duration_of(&lease, self.cfg.lease_duration)
            }
            Verdict::Held { .. } => false,
        };
        if !may {
            return Ok(Attempt::Standby {
                holder: lease.spec.and_then(|s| s.holder_identity),
            });
        }
        let mut updated = lease.clone();
        updated.spec = Some(claimed_spec(
            lease.spec.as_ref(),
            &self.cfg.identity,
            self.cfg.lease_duration,
            now,
        ));
        // `replace` sends metadata.resourceVersion as read: a concurrent writer makes this 409.
        match self
            .api
            .replace(&self.cfg.lease_name, &PostParams::default(), &updated)
            .await
        {
            Ok(l) => {
                self.observe(&l);
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Standby {
                holder: lease.spec.and_then(|s| s.holder_identity),
            }),
            Err(e) => Err(e),
        }
    }

    /// Records the Lease's resourceVersion; returns when this version was first seen.
    fn observe(&mut self, lease: &Lease) -> Instant {
        let rv = lease.resource_version().unwrap_or_default();
        match &self.observed {
            Some((seen, at)) if *seen == rv => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((rv, at));
                at
            }
        }
    }

    /// Gives the Lease up if we hold it: holder cleared, duration 1 s (client-go's
    /// `ReleaseOnCancel`). Best effort: a failure only means standbys wait for expiry.
    pub async fn release(&mut self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.lease_name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(micro(Utc::now()));
        self.api
            .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
            .await?;
        Ok(true)
    }
}

/// How [`run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Shutdown was asked for; the Lease was released if it was held.
    Shutdown,
    /// Leadership was lost (renew deadline passed, or another holder): the controllers were
    /// stopped. The reason is for the log.
    Lost(String),
    /// A controller task ended by itself (a bug or a panic): controllers stopped, Lease released.
    TaskEnded,
}

/// A sleep of `d` plus up to 20 % jitter, so that candidates started together spread out.
fn jittered(d: Duration) -> Duration {
    d + d.mul_f64(rand::rng().random_range(0.0..0.2))
}

/// Campaigns for the Lease; once held, calls `start` (which spawns the controllers into the set
/// it is given) and renews until shutdown or loss. `leading` reflects the state at every moment.
pub async fn run(
    mut elector: Elector,
    leading: &watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
    start: impl FnOnce(&mut JoinSet<()>),
) -> Outcome {
    if !campaign(&mut elector, &mut shutdown).await {
        return Outcome::Shutdown;
    }
    let cfg = elector.config().clone();
    // `last_renew` is the start of the last successful write: the Lease is valid for others
    // from its renewTime, which is later.
    let last_renew = Instant::now();
    tracing::info!(
        lease = %cfg.lease_name,
        namespace = %cfg.namespace,
        identity = %cfg.identity,
        "became leader: starting the controllers"
    );
    leading.send_replace(true);
    let mut controllers = JoinSet::new();
    start(&mut controllers);
    let outcome = lead(&mut elector, &mut shutdown, &mut controllers, last_renew).await;
    // Stop acting first, then tell the others.
    controllers.abort_all();
    while controllers.join_next().await.is_some() {}
    leading.send_replace(false);
    step_down(&mut elector, &outcome).await;
    outcome
}

/// Candidate: tries to acquire the Lease every retry period. True once held, false on shutdown.
async fn campaign(elector: &mut Elector, shutdown: &mut watch::Receiver<bool>) -> bool {
    let cfg = elector.config().clone();
    let mut last_holder: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            return false;
        }
        match elector.try_acquire_or_renew().await {
            Ok(Attempt::Leading) => return true,
            Ok(Attempt::Standby { holder }) => {
                if holder != last_holder {
                    tracing::info!(
                        lease = %cfg.lease_name,
                        namespace = %cfg.namespace,
                        holder = holder.as_deref().unwrap_or("-"),
                        identity = %cfg.identity,
                        "standby: another replica holds the lease"
                    );
                    last_holder = holder;
                }
            }
            Err(e) => {
                tracing::warn!(lease = %cfg.lease_name, error = %e, "cannot read or write the lease; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(cfg.retry_period)) => {}
            _ = shutdown.wait_for(|s| *s) => return false,
        }
    }
}

/// Leader: renews every renew interval until shutdown, a controller task ending, or no renew
/// succeeding within the renew deadline (or another holder).
async fn lead(
    elector: &mut Elector,
    shutdown: &mut watch::Receiver<bool>,
    controllers: &mut JoinSet<()>,
    mut last_renew: Instant,
) -> Outcome {
    let cfg = elector.config().clone();
    let mut next = last_renew + cfg.renew_interval;
    let missed = || {
        Outcome::Lost(format!(
            "no renew succeeded for {:?} (renew deadline)",
            cfg.renew_deadline
        ))
    };
    loop {
        let deadline = last_renew + cfg.renew_deadline;
        tokio::select! {
            _ = tokio::time::sleep_until(next.min(deadline)) => {}
            _ = shutdown.wait_for(|s| *s) => return Outcome::Shutdown,
            _ = controllers.join_next(), if !controllers.is_empty() => return Outcome::TaskEnded,
        }
        if Instant::now() >= deadline {
            return missed();
        }
        let attempt_start = Instant::now();
        let attempt = tokio::select! {
            r = tokio::time::timeout_at(deadline, elector.try_acquire_or_renew()) => r,
            _ = shutdown.wait_for(|s| *s) => return Outcome::Shutdown,
        };
        match attempt {
            Ok(Ok(Attempt::Leading)) => {
                last_renew = attempt_start;
                next = last_renew + cfg.renew_interval;
            }
            Ok(Ok(Attempt::Standby {
                holder: Some(holder),
            })) if holder != cfg.identity => {
                return Outcome::Lost(format!("the lease is now held by {holder}"));
            }
            Ok(Ok(Attempt::Standby { .. })) => {
                // A write conflict: the next try reads the Lease again.
                next = Instant::now() + cfg.retry_period;
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %cfg.lease_name, error = %e, "cannot renew the lease; retrying");
                next = Instant::now() + cfg.retry_period;
            }
            Err(_) => return missed(),
        }
    }
}

/// After the controllers stopped: a lost Lease is logged; on shutdown (or a task ending) the held
/// Lease is released so a standby takes over at once.
async fn step_down(elector: &mut Elector, outcome: &Outcome) {
    let cfg = elector.config().clone();
    match outcome {
        Outcome::Lost(reason) => {
            tracing::error!(
                lease = %cfg.lease_name,
                identity = %cfg.identity,
                reason = %reason,
                "lost leadership: stopped the controllers"
            );
        }
        Outcome::Shutdown | Outcome::TaskEnded => match elector.release().await {
            Ok(true) => tracing::info!(lease = %cfg.lease_name, "released the lease"),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                lease = %cfg.lease_name,
                error = %e,
                "could not release the lease; standbys take over once it expires"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const D: Duration = Duration::from_secs(15);

    fn lease(holder: Option<&str>, renew: Option<DateTime<Utc>>, secs: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: renew.map(micro),
                lease_duration_seconds: secs,
                ..LeaseSpec::default()
            }),
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn free_lease_may_be_acquired() {
        let l = lease(None, Some(t(0)), Some(15));
        assert_eq!(judge(&l, "me", t(1), D), Verdict::Free);
        let l = lease(Some(""), Some(t(0)), Some(15));
        assert_eq!(judge(&l, "me", t(1), D), Verdict::Free);
        assert!(Verdict::Free.may_acquire());
        let empty = Lease::default();
        assert_eq!(judge(&empty, "me", t(0), D), Verdict::Free);
    }

    #[test]
    fn held_lease_is_respected_until_renew_time_plus_duration() {
        let l = lease(Some("other"), Some(t(0)), Some(15));
        let v = judge(&l, "me", t(10), D);
        assert_eq!(
            v,
            Verdict::Held {
                holder: "other".into(),
                until: t(15)
            }
        );
        assert!(!v.may_acquire());
        // Exactly at the end: still held (strictly after is expired).
        assert!(!judge(&l, "me", t(15), D).may_acquire());
        let v = judge(&l, "me", t(16), D);
        assert_eq!(
            v,
            Verdict::Expired {
                holder: "other".into()
            }
        );
        assert!(v.may_acquire());
    }

    #[test]
    fn the_leases_own_duration_wins_over_ours() {
        // The holder declared 60 s: our 15 s do not make it expire early.
        let l = lease(Some("other"), Some(t(0)), Some(60));
        assert!(!judge(&l, "me", t(30), D).may_acquire());
        assert!(judge(&l, "me", t(61), D).may_acquire());
        // No duration declared: ours.
        let l = lease(Some("other"), Some(t(0)), None);
        assert!(judge(&l, "me", t(16), D).may_acquire());
        assert!(!judge(&l, "me", t(14), D).may_acquire());
    }

    #[test]
    fn our_own_lease_is_mine_even_when_expired() {
        let l = lease(Some("me"), Some(t(0)), Some(15));
        assert_eq!(judge(&l, "me", t(100), D), Verdict::Mine);
    }

    #[test]
    fn a_holder_without_times_is_expired() {
        let l = lease(Some("other"), None, Some(15));
        assert!(judge(&l, "me", t(0), D).may_acquire());
    }

    #[test]
    fn claiming_counts_transitions_and_keeps_acquire_time_on_renew() {
        let fresh = claimed_spec(None, "me", D, t(0));
        assert_eq!(fresh.holder_identity.as_deref(), Some("me"));
        assert_eq!(fresh.lease_duration_seconds, Some(15));
        assert_eq!(fresh.lease_transitions, Some(0));
        assert_eq!(fresh.acquire_time, Some(micro(t(0))));
        let renewed = claimed_spec(Some(&fresh), "me", D, t(5));
        assert_eq!(renewed.acquire_time, Some(micro(t(0))));
        assert_eq!(renewed.renew_time, Some(micro(t(5))));
        assert_eq!(renewed.lease_transitions, Some(0));
        let taken = claimed_spec(Some(&renewed), "other", D, t(30));
        assert_eq!(taken.holder_identity.as_deref(), Some("other"));
        assert_eq!(taken.acquire_time, Some(micro(t(30))));
        assert_eq!(taken.lease_transitions, Some(1));
    }

    #[test]
    fn config_defaults_and_validation() {
        let c = LeaderElectionConfig::with_lease_duration("qms", "pod_1", D);
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.renew_interval, Duration::from_secs(5));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        assert_eq!(c.validate(), Ok(()));
        let key = |c: LeaderElectionConfig| c.validate().unwrap_err().0;
        let bad = LeaderElectionConfig {
            lease_duration: Duration::from_millis(1500),
            ..c.clone()
        };
        assert_eq!(key(bad), "--leader-election-lease-duration");
        let bad = LeaderElectionConfig {
            renew_deadline: D,
            ..c.clone()
        };
        assert_eq!(key(bad), "--leader-election-renew-deadline");
        let bad = LeaderElectionConfig {
            renew_interval: Duration::from_secs(10),
            ..c.clone()
        };
        assert_eq!(key(bad), "--leader-election-renew-interval");
        let bad = LeaderElectionConfig {
            retry_period: Duration::ZERO,
            ..c.clone()
        };
        assert_eq!(key(bad), "--leader-election-retry-period");
        let bad = LeaderElectionConfig {
            namespace: "Not_OK".into(),
            ..c.clone()
        };
        assert_eq!(key(bad), "--leader-election-namespace");
        let bad = LeaderElectionConfig {
            lease_name: "a/b".into(),
            ..c
        };
        assert_eq!(key(bad), "--leader-election-lease-name");
    }

    #[test]
    fn identity_has_a_random_suffix() {
        let a = default_identity(Some("qms-7d9f".into()));
        let b = default_identity(Some("qms-7d9f".into()));
        assert!(
            a.starts_with("qms-7d9f_") && a.len() == "qms-7d9f_".len() + 8,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(default_namespace(Some(" qms ".into())), "qms");
    }
}
