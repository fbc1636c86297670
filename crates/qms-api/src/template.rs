//! `WorkflowTemplate`: the ordered steps of a review (spec §2.3).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{Condition, WorkflowState};
use crate::duration::KubeDuration;

/// How a step runs its agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepType {
    /// All agents at once.
    Parallel,
    /// Agents one after the other, in the listed order; the first failure stops the step.
    Sequential,
    /// Runs only when `condition` holds (agents in parallel when `parallelReviews`, else in order);
    /// skipped otherwise.
    Conditional,
    /// Agents run (in order), then the step waits for a person's approval for the current head SHA.
    Manual,
}

/// Names an agent directly or asks for any healthy agent with a capability. Exactly one is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.name) != has(self.capability)").message("exactly one of name or capability must be set"))]
pub struct AgentSelector {
    /// Name of an `Agent` in the workflow's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A capability; the operator picks an agent that has it (free capacity, then priority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
}

impl AgentSelector {
    pub fn by_name(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            capability: None,
        }
    }

    pub fn by_capability(capability: impl Into<String>) -> Self {
        Self {
            name: None,
            capability: Some(capability.into()),
        }
    }

    /// Stable key of this selector inside a step (used in task names and status).
    pub fn key(&self) -> &str {
        self.name
            .as_deref()
            .or(self.capability.as_deref())
            .unwrap_or("")
    }
}

/// Exponential backoff: delay(n) = min(maxDelay, initialDelay × base^(n-1)) ± jitter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Growth factor between attempts.
    #[serde(default = "default_base")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub base: f64,
    #[serde(default = "default_initial_delay")]
    pub initial_delay: KubeDuration,
    #[serde(default = "default_max_delay")]
    pub max_delay: KubeDuration,
    /// Attempts in total, the first one included.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 20))]
    pub max_attempts: u32,
    /// Fraction of the delay added or removed at random (0 = none, 0.2 = ±20%), so that many
    /// workflows failing together do not retry together.
    #[serde(default = "default_jitter")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub jitter: f64,
}

fn default_base() -> f64 {
    2.0
}
fn default_initial_delay() -> KubeDuration {
    KubeDuration::from_secs(10)
}
fn default_max_delay() -> KubeDuration {
    KubeDuration::from_secs(300)
}
fn default_max_attempts() -> u32 {
    3
}
fn default_jitter() -> f64 {
    0.2
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: default_base(),
            initial_delay: default_initial_delay(),
            max_delay: default_max_delay(),
            max_attempts: default_max_attempts(),
            jitter: default_jitter(),
        }
    }
}

/// What happens when a step times out, exhausts its retries or (manual) waits too long.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Escalation {
    #[serde(default)]
    pub enabled: bool,
    /// For manual steps: escalate when no decision arrived after this long. Other steps escalate
    /// when the timeout or the retry limit is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<KubeDuration>,
}

/// The workflow states a step stands for while it runs and when it fails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStates {
    pub pending: WorkflowState,
    pub failed: WorkflowState,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'conditional' || has(self.condition)").message("a conditional step needs a condition"))]
#[x_kube(validation = Rule::new("self.type == 'manual' || size(self.agents) > 0").message("a step that is not manual needs at least one agent"))]
pub struct TemplateStep {
    /// Unique within the template; also the check run name `QMS / <name>`.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    #[serde(rename = "type")]
    pub type_: StepType,
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub agents: Vec<AgentSelector>,
    /// Names of `QualityGate`s evaluated on the step's agent results.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub quality_gates: Vec<String>,
    /// Limit for one attempt of the step (all its agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<KubeDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// `<step>.success`, `<step>.failure`, `<step>.skipped` or `always`; an earlier step only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(always|[a-z0-9]([-a-z0-9]*[a-z0-9])?\.(success|failure|skipped))$"
    ))]
    pub condition: Option<String>,
    /// Run the agents of a conditional or manual step in parallel instead of in order.
    #[serde(default)]
    pub parallel_reviews: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    /// The workflow states shown while this step runs and when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<StepStates>,
}

/// Which events a template reviews besides pull requests: see [`WorkflowTemplateSpec::merge_groups`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum MergeGroups {
    /// Pull requests and the merge groups of its repositories (a merge group then gets the same
    /// check names as its pull requests).
    #[default]
    Include,
    /// Merge groups only, never pull requests: a dedicated merge-queue template, chosen for a
    /// merge group over the `include` templates (same `repositories`/`default` rules).
    Only,
}

impl MergeGroups {
    pub fn is_include(&self) -> bool {
        *self == Self::Include
    }
}

/// Pushes to branches a template reviews (`pushes.branches`): each push to a matching branch runs
/// the template on the pushed commit, and that run's COMPLETED gate values become the baseline of
/// `<repository>@<branch>` (like a merged pull request's).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.branches.all(b, !b.startsWith('refs/'))").message("pushes.branches are branch names such as main or release/*, not refs"))]
pub struct Pushes {
    /// Branch names (`main`) or patterns with `*` standing for any characters (`release/*`);
    /// not refs (`refs/heads/main` is refused) and never tags.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(inner(length(min = 1, max = 255), regex(pattern = r"^[^\s~^:?\[\\]+$")))]
    pub branches: Vec<String>,
}

impl Pushes {
    /// Whether `branch` (a branch name, not a ref) is one of `branches`.
    pub fn matches_branch(&self, branch: &str) -> bool {
        self.branches.iter().any(|p| glob_match(p, branch))
    }
}

/// `*` matches any run of characters (slashes included); everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: an exact match
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Optional `repository_dispatch` events (spec §5.2) so GitHub Actions can trigger on QMS progress.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryDispatch {
    #[serde(default)]
    pub enabled: bool,
    /// Subset of step_completed, quality_gate_passed, workflow_failed; empty = all three.
    #[serde(default)]
    pub types: Vec<String>,
}

/// A WorkflowTemplate lists the steps of a quality review. Workflows reference one by name; the
/// webhook picks the template whose `repositories` match the PR's repository, else the default.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "qms.creo.dev",
    version = "v1",
    kind = "WorkflowTemplate",
    namespaced,
    status = "WorkflowTemplateStatus",
    shortname = "qwt",
    category = "qms",
    printcolumn = r#"{"name":"Steps","type":"integer","jsonPath":".status.steps"}"#,
    printcolumn = r#"{"name":"Default","type":"boolean","jsonPath":".spec.default"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.steps.all(s, self.steps.exists_one(t, t.name == s.name))").message("step names must be unique"))]
pub struct WorkflowTemplateSpec {
    /// Human-readable version of the template (the seed's `metadata.version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Repositories (`owner/name`, `owner/*` or `*`) this template applies to.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Used for repositories no template's `repositories` match.
    #[serde(default)]
    pub default: bool,
    /// Whether this template reviews merge groups (GitHub merge queue) besides pull requests.
    #[serde(default, skip_serializing_if = "MergeGroups::is_include")]
    pub merge_groups: MergeGroups,
    /// Also review pushes to these branches; their completed runs set the branch's baseline.
    /// Unset: pushes are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushes: Option<Pushes>,
    /// Limit for the whole run; each step also has its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<KubeDuration>,
    #[schemars(length(min = 1, max = 20))]
    pub steps: Vec<TemplateStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_dispatch: Option<RepositoryDispatch>,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTemplateStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<i64>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl WorkflowTemplateSpec {
    /// Does this template review pushes to `branch`?
    pub fn reviews_pushes_to(&self, branch: &str) -> bool {
        self.pushes
            .as_ref()
            .is_some_and(|p| p.matches_branch(branch))
    }

    pub fn step(&self, name: &str) -> Option<&TemplateStep> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Does this template claim `repository` (`owner/name`)?
    pub fn matches_repository(&self, repository: &str) -> bool {
        self.repositories.iter().any(|pattern| {
            pattern == "*"
                || pattern == repository
                || pattern.strip_suffix("/*").is_some_and(|owner| {
                    repository
                        .split_once('/')
                        .is_some_and(|(o, _)| o.eq_ignore_ascii_case(owner))
                })
                || pattern.eq_ignore_ascii_case(repository)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_branch_patterns_match_names_and_globs_only() {
        let p = Pushes {
            branches: vec!["main".into(), "release/*".into(), "hotfix-*-x".into()],
        };
        for yes in ["main", "release/1.2", "release/a/b", "hotfix-12-x"] {
            assert!(p.matches_branch(yes), "{yes}");
        }
        for no in [
            "mainline",
            "xmain",
            "release",
            "releases/1",
            "hotfix-12-y",
            "",
        ] {
            assert!(!p.matches_branch(no), "{no}");
        }
        assert!(glob_match("*", "anything/at/all"));
        assert!(!glob_match("a*a", "a"));
    }
}
