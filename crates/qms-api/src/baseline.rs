//! `QualityBaseline`: the values of a repository's base branch that gates ratchet against and carry
//! forward (spec §4.2 "historical analysis"). One object per repository and branch, with a
//! deterministic name ([`baseline_name`]); each value names the commit it came from and when.
//!
//! A value is recorded only from code that is on the branch: the last COMPLETED run of a pull
//! request, for its head SHA, when that pull request is merged, or the COMPLETED run of a push to
//! the branch (templates with `pushes`). Unmerged pull requests never change it. Values are
//! ordered by when their code landed on the branch (the merge's `merged_at`, the push's time),
//! not by when they arrive: a late webhook or a slow run of an older commit never replaces a
//! newer value ([`QualityBaselineSpec::merge`]).

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::WorkflowState;
use crate::gate::MetricUnit;
use crate::workflow::QmsWorkflow;

/// At most this many gate values per object (one per gate; a namespace has far fewer gates).
pub const MAX_VALUES: usize = 256;

#[derive(CustomResource, Clone, Debug, PartialEq, Default, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "qms.creo.dev",
    version = "v1",
    kind = "QualityBaseline",
    namespaced,
    shortname = "qb",
    category = "qms",
    printcolumn = r#"{"name":"Repository","type":"string","jsonPath":".spec.repository"}"#,
    printcolumn = r#"{"name":"Branch","type":"string","jsonPath":".spec.branch"}"#,
    printcolumn = r#"{"name":"SHA","type":"string","jsonPath":".spec.sha"}"#,
    printcolumn = r#"{"name":"PR","type":"integer","jsonPath":".spec.pullRequest"}"#,
    printcolumn = r#"{"name":"Updated","type":"date","jsonPath":".spec.updatedAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct QualityBaselineSpec {
    /// `owner/name` on GitHub.
    #[schemars(length(min = 1, max = 200))]
    pub repository: String,
    /// The base branch, e.g. `main`.
    #[schemars(length(min = 1, max = 255))]
    pub branch: String,
    /// Commit of the latest update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// Pull request of the latest update (merged); unset when it came from a push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    /// RFC 3339 time of the latest update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The last value per gate.
    #[serde(default)]
    #[schemars(length(max = 256))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["gate"]))]
    pub values: Vec<BaselineValue>,
}

/// One gate's value on the base branch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaselineValue {
    /// The QualityGate.
    pub gate: String,
    #[serde(default)]
    pub metric: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<MetricUnit>,
    /// The commit the value was measured on (the merged pull request's head SHA, or the pushed
    /// commit).
    pub sha: String,
    /// RFC 3339 time the value's code landed on the branch (the merge, or the push): values are
    /// ordered by it.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
}

/// Whether `new` may replace `old`: its code landed on the branch later. At the same time, a new
/// measurement of the same commit (a re-run) wins, and so does a push's value over a merged pull
/// request's (the push's run measured the branch's own commit); otherwise the first one stays.
pub fn supersedes(new: &BaselineValue, old: &BaselineValue) -> bool {
    match compare_times(&new.at, &old.at) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => {
            new.sha == old.sha || (new.pull_request.is_none() && old.pull_request.is_some())
        }
    }
}

/// Orders RFC 3339 times by the instant they name (`Z` and offsets alike); a time that does not
/// parse sorts before every one that does (it can never displace a real one), two such by text.
fn compare_times(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Greater,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

/// FNV-1a 64: a stable hash without a dependency (names only, not security).
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `qb-<16 hex>`: the deterministic name of the baseline of `repository@branch` (repository
/// case-insensitive like GitHub's names, branch case-sensitive like git's).
pub fn baseline_name(repository: &str, branch: &str) -> String {
    let key = format!("{}@{branch}", repository.to_ascii_lowercase());
    format!("qb-{:016x}", fnv64(key.as_bytes()))
}

/// The values a merged pull request makes the baseline: the gates of its current run when that
/// run is COMPLETED and reviewed `merged_sha` (its head at the merge). `None`: nothing to record
/// (the run did not complete for that commit), with the reason.
pub fn values_from_merged(
    wf: &QmsWorkflow,
    merged_sha: &str,
    at: &str,
) -> Result<Vec<BaselineValue>, String> {
    values_from_completed(wf, merged_sha, at, Some(wf.spec.pull_request))
}

/// The values a push's run makes the baseline of its branch: its gates once it is COMPLETED for
/// the pushed commit, at the push's time.
pub fn values_from_push(wf: &QmsWorkflow) -> Result<Vec<BaselineValue>, String> {
    let Some(push) = &wf.spec.push else {
        return Err("the review is not of a push".into());
    };
    values_from_completed(wf, &wf.spec.head_sha, &push.pushed_at, None)
}

/// The gate values of `wf`'s run when it is COMPLETED and reviewed `sha`, each recorded with
/// `sha`, `at` and `pull_request` (`None` for a push).
fn values_from_completed(
    wf: &QmsWorkflow,
    merged_sha: &str,
    at: &str,
    pull_request: Option<u64>,
) -> Result<Vec<BaselineValue>, String> {
    let Some(status) = &wf.status else {
        return Err("the review has no status yet".into());
    };
    if status.state != WorkflowState::Completed {
        return Err(format!(
            "the review is {}, not COMPLETED: the baseline is unchanged",
            status.state.as_str()
        ));
    }
    if status.head_sha.as_deref() != Some(merged_sha) || wf.spec.head_sha != merged_sha {
        return Err(format!(
            "the completed review is not for the commit {merged_sha}: the baseline is unchanged"
        ));
    }
    let mut out: BTreeMap<String, BaselineValue> = BTreeMap::new();
    for step in &status.steps {
        for g in &step.gates {
            let Some(value) = g.value.filter(|v| v.is_finite()) else {
                continue;
            };
            // A carried value is the old baseline, not a measurement of this commit.
            if g.carried {
                continue;
            }
            out.insert(
                g.name.clone(),
                BaselineValue {
                    gate: g.name.clone(),
                    metric: g.metric.clone(),
                    value,
                    unit: g.unit,
                    sha: merged_sha.to_owned(),
                    at: at.to_owned(),
                    pull_request,
                },
            );
        }
    }
    Ok(out.into_values().collect())
}

impl QualityBaselineSpec {
    /// Merges `values` into the object: one value per gate, the one that landed on the branch
    /// last wins ([`supersedes`]), so updates applied out of order end as if applied in order;
    /// the object's `sha`/`pullRequest`/`updatedAt` name the newest update. Bounded by
    /// [`MAX_VALUES`] (the oldest values go first). Returns whether anything changed, so applying
    /// the same merge twice writes nothing the second time.
    pub fn merge(
        &mut self,
        values: &[BaselineValue],
        sha: &str,
        pull_request: Option<u64>,
        at: &str,
    ) -> bool {
        let before = self.clone();
        let mut applied = false;
        for v in values {
            match self.values.iter_mut().find(|x| x.gate == v.gate) {
                Some(x) if supersedes(v, x) => {
                    applied |= x != v;
                    *x = v.clone();
                }
                Some(_) => {}
                None => {
                    applied = true;
                    self.values.push(v.clone());
                }
            }
        }
        let newest = self
            .updated_at
            .as_deref()
            .is_none_or(|u| compare_times(at, u) != std::cmp::Ordering::Less);
        if applied && newest {
            self.sha = Some(sha.to_owned());
            self.pull_request = pull_request;
            self.updated_at = Some(at.to_owned());
        }
        self.values.sort_by(|a, b| a.gate.cmp(&b.gate));
        while self.values.len() > MAX_VALUES {
            let oldest = self
                .values
                .iter()
                .enumerate()
                .min_by(|a, b| compare_times(&a.1.at, &b.1.at))
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.values.remove(oldest);
        }
        *self != before
    }

    /// The value of `gate`, if recorded.
    pub fn value(&self, gate: &str) -> Option<&BaselineValue> {
        self.values.iter().find(|v| v.gate == gate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(gate: &str, value: f64, sha: &str, at: &str) -> BaselineValue {
        BaselineValue {
            gate: gate.into(),
            metric: "m".into(),
            value,
            unit: None,
            sha: sha.into(),
            at: at.into(),
            pull_request: Some(1),
        }
    }

    #[test]
    fn names_are_deterministic_dns_labels_and_distinct() {
        let a = baseline_name("Acme/App", "main");
        assert_eq!(a, baseline_name("acme/app", "main"));
        assert_ne!(a, baseline_name("acme/app", "Main"));
        assert_ne!(a, baseline_name("acme/app2", "main"));
        assert!(crate::names::is_dns_label(&a), "{a}");
    }

    #[test]
    fn merge_replaces_per_gate_and_is_idempotent() {
        let mut s = QualityBaselineSpec {
            repository: "a/b".into(),
            branch: "main".into(),
            ..Default::default()
        };
        let first = [v("cov", 80.0, "s1", "2026-01-01T00:00:00Z")];
        assert!(s.merge(&first, "s1", Some(1), "2026-01-01T00:00:00Z"));
        assert!(!s.merge(&first, "s1", Some(1), "2026-01-01T00:00:00Z"));
        let second = [v("cov", 70.0, "s2", "2026-01-02T00:00:00Z")];
        assert!(s.merge(&second, "s2", Some(2), "2026-01-02T00:00:00Z"));
        assert_eq!(s.values.len(), 1);
        assert_eq!(s.value("cov").map(|x| x.value), Some(70.0));
        assert_eq!(s.sha.as_deref(), Some("s2"));
    }

    #[test]
    fn updates_applied_out_of_order_end_as_in_order() {
        let older = [v("cov", 70.0, "s1", "2026-01-01T10:00:00Z")];
        let newer = [v("cov", 90.0, "s2", "2026-01-01T11:00:00+01:00")];
        let newer_later = [v("cov", 91.0, "s3", "2026-01-01T10:00:01Z")];
        let mut s = QualityBaselineSpec::default();
        assert!(s.merge(&newer_later, "s3", Some(3), "2026-01-01T10:00:01Z"));
        // An update that landed earlier, delivered later, changes nothing.
        assert!(!s.merge(&older, "s1", Some(1), "2026-01-01T10:00:00Z"));
        // Same instant with an offset: still earlier than 10:00:01Z.
        assert!(!s.merge(&newer, "s2", Some(2), "2026-01-01T11:00:00+01:00"));
        assert_eq!(
            s.value("cov").map(|x| (x.value, x.sha.as_str())),
            Some((91.0, "s3"))
        );
        assert_eq!((s.sha.as_deref(), s.pull_request), (Some("s3"), Some(3)));
        // A gate only the older update has is still recorded, without renaming the newest update.
        let other_gate = [v("lint", 1.0, "s1", "2026-01-01T10:00:00Z")];
        assert!(s.merge(&other_gate, "s1", Some(1), "2026-01-01T10:00:00Z"));
        assert_eq!(s.sha.as_deref(), Some("s3"));
        assert_eq!(s.values.len(), 2);
    }

    #[test]
    fn at_the_same_time_a_rerun_or_a_push_wins() {
        let pr = v("cov", 80.0, "s1", "2026-01-01T10:00:00Z");
        let mut push = v("cov", 82.0, "s9", "2026-01-01T10:00:00Z");
        push.pull_request = None;
        assert!(supersedes(&push, &pr), "the branch's own commit wins a tie");
        assert!(!supersedes(&pr, &push));
        let mut rerun = pr.clone();
        rerun.value = 81.0;
        assert!(supersedes(&rerun, &pr), "a re-run of the same commit wins");
        let mut other = pr.clone();
        other.sha = "s2".into();
        assert!(!supersedes(&other, &pr), "otherwise the first stays");
        let mut bad = pr.clone();
        bad.at = "yesterday".into();
        assert!(!supersedes(&bad, &pr) && supersedes(&pr, &bad));
    }

    #[test]
    fn merge_is_bounded() {
        let mut s = QualityBaselineSpec::default();
        let many: Vec<_> = (0..MAX_VALUES + 5)
            .map(|i| {
                v(
                    &format!("g{i:04}"),
                    1.0,
                    "s",
                    &format!("2026-01-01T00:{:02}:{:02}Z", i / 60 % 60, i % 60),
                )
            })
            .collect();
        s.merge(&many, "s", None, "2026-01-01T00:00:00Z");
        assert_eq!(s.values.len(), MAX_VALUES);
        assert!(s.value("g0000").is_none(), "the oldest value goes first");
    }
}
