//! `QualityGate`: a threshold rule on a metric that agents report (spec §4).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::Condition;
use crate::duration::KubeDuration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GateType {
    Threshold,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    Gte,
    Gt,
    Lte,
    Lt,
    Eq,
    Ne,
}

impl Operator {
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Gte => ">=",
            Self::Gt => ">",
            Self::Lte => "<=",
            Self::Lt => "<",
            Self::Eq => "==",
            Self::Ne => "!=",
        }
    }

    /// Whether a larger value is the better one (used by the baseline ratchet).
    pub fn higher_is_better(self) -> Option<bool> {
        match self {
            Self::Gte | Self::Gt => Some(true),
            Self::Lte | Self::Lt => Some(false),
            Self::Eq | Self::Ne => None,
        }
    }
}

/// The unit a gate's threshold is expressed in. Agents may report a metric in a convertible unit
/// (`ratio` ↔ `percentage`, `milliseconds` ↔ `seconds`, `bytes` ↔ `kilobytes`/`megabytes`); any other
/// mismatch fails the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricUnit {
    Percentage,
    Ratio,
    Count,
    Seconds,
    Milliseconds,
    Bytes,
    Kilobytes,
    Megabytes,
    Score,
    Boolean,
}

/// Escalation of a gate that cannot be decided in time.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateEscalation {
    #[serde(default)]
    pub enabled: bool,
    /// The seed's `escalation.threshold`: escalate when the gate is still undecided after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<KubeDuration>,
}

/// Baseline ratchet (§4.2 "historical analysis"): compare against the value of the last completed
/// run on the base branch and refuse a regression larger than `tolerance` (in the gate's unit).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub tolerance: f64,
    /// A baseline older than this is not used (the check run says so); none: any age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<KubeDuration>,
}

/// What a gate does when no successful agent reported its metric (after its retries).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum OnMissing {
    /// Fail closed: the gate errors and blocks (the default).
    #[default]
    Fail,
    /// An advisory result (verdict `Warning`, never `Passed`), saying the metric is missing.
    Neutral,
    /// Use the base branch's last value (the QualityBaseline), if younger than
    /// `carryForward.maxAge`, named as carried; else fail closed.
    CarryForward,
}

impl OnMissing {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Neutral => "neutral",
            Self::CarryForward => "carryForward",
        }
    }

    fn is_fail(&self) -> bool {
        *self == Self::Fail
    }
}

/// Settings of `onMissing: carryForward`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CarryForward {
    /// The oldest base-branch value that may be carried.
    pub max_age: KubeDuration,
}

/// Gradual enforcement (§4.2): the threshold moves linearly from `from` (at `start`) to the gate's
/// `threshold` (at `end`), so a team can raise the bar without breaking every open PR at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GradualEnforcement {
    pub from: f64,
    /// RFC 3339 start of the ramp.
    pub start: String,
    /// RFC 3339 end of the ramp; from then on the full threshold applies.
    pub end: String,
}

#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "qms.creo.dev",
    version = "v1",
    kind = "QualityGate",
    namespaced,
    status = "QualityGateStatus",
    shortname = "qg",
    category = "qms",
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".spec.step"}"#,
    printcolumn = r#"{"name":"Metric","type":"string","jsonPath":".spec.metric"}"#,
    printcolumn = r#"{"name":"Operator","type":"string","jsonPath":".spec.operator"}"#,
    printcolumn = r#"{"name":"Threshold","type":"number","jsonPath":".spec.threshold"}"#,
    printcolumn = r#"{"name":"Blocking","type":"boolean","jsonPath":".spec.blocking"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'threshold' || (has(self.metric) && has(self.operator) && has(self.threshold))").message("a threshold gate needs metric, operator and threshold"))]
#[x_kube(validation = Rule::new("!has(self.onMissing) || self.onMissing != 'carryForward' || has(self.carryForward)").message("onMissing: carryForward needs carryForward.maxAge"))]
#[x_kube(validation = Rule::new("!has(self.carryForward) || (has(self.onMissing) && self.onMissing == 'carryForward')").message("carryForward is only used with onMissing: carryForward"))]
#[x_kube(validation = Rule::new("!has(self.baseline) || !has(self.baseline.maxAge) || (has(self.baseline.enabled) && self.baseline.enabled)").message("baseline.maxAge needs baseline.enabled: true"))]
#[x_kube(validation = Rule::new("!has(self.baseline) || !has(self.baseline.enabled) || !self.baseline.enabled || !has(self.operator) || self.operator in ['gte', 'gt', 'lte', 'lt']").message("baseline.enabled needs operator gte, gt, lte or lt (eq/ne have no direction to ratchet)"))]
pub struct QualityGateSpec {
    /// The step this gate belongs to (informational; templates list the gates each step evaluates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(rename = "type")]
    pub type_: GateType,
    /// Name of the metric in the agents' results, e.g. `test_coverage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_.\-]*$"))]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<MetricUnit>,
    /// A failing blocking gate fails the step; a failing advisory gate passes with a warning.
    #[serde(default = "default_true")]
    pub blocking: bool,
    /// How long the step may wait for this gate's metric after its agents finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<KubeDuration>,
    /// How many times the step's agents are re-run to obtain a missing metric before failing.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub retry: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<GateEscalation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradual: Option<GradualEnforcement>,
    /// What happens when the metric is missing: `fail` (default), `neutral` or `carryForward`.
    #[serde(default, skip_serializing_if = "OnMissing::is_fail")]
    pub on_missing: OnMissing,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carry_forward: Option<CarryForward>,
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualityGateStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
