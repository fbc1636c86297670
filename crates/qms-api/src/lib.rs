//! The Kubernetes API of qms-operator: the four custom resources of group `qms.creo.dev/v1` and the
//! manifests generated from them.
//!
//! Field names follow Kubernetes API conventions (camelCase). Everything Kubernetes can validate
//! (enums, required fields, patterns, CEL rules) is expressed here so that a bad object is refused by
//! the API server with the field named, before any controller sees it.
#![forbid(unsafe_code)]

pub mod agent;
pub mod baseline;
pub mod common;
pub mod crds;
pub mod duration;
pub mod gate;
pub mod names;
pub mod template;
pub mod workflow;

pub use agent::{Agent, AgentJob, AgentSpec, AgentStatus, HealthPolicy, Priority};
pub use baseline::{BaselineValue, QualityBaseline, QualityBaselineSpec, baseline_name};
pub use common::{Condition, ConditionStatus, WorkflowState};
pub use duration::{DurationError, KubeDuration};
pub use gate::{
    Baseline, CarryForward, GateEscalation, GateType, GradualEnforcement, MetricUnit, OnMissing,
    Operator, QualityGate, QualityGateSpec, QualityGateStatus,
};
pub use template::{
    AgentSelector, Escalation, MergeGroups, Pushes, RepositoryDispatch, RetryPolicy, StepStates,
    StepType, TemplateStep, WorkflowTemplate, WorkflowTemplateSpec, WorkflowTemplateStatus,
};
pub use workflow::{
    Approval, BaselineUse, CheckRunRef, Decision, GateResult, GateVerdict, MergeGroupRef, Override,
    PushRef, QmsWorkflow, QmsWorkflowSpec, QmsWorkflowStatus, RetryRequest, StepPhase, StepStatus,
    TaskPhase, TaskResultSummary, TaskStatus, TemplateRef, Transition,
};

/// API group of every qms-operator resource.
pub const GROUP: &str = "qms.creo.dev";
/// API version of every qms-operator resource.
pub const VERSION: &str = "v1";
/// The category `kubectl get qms` lists.
pub const CATEGORY: &str = "qms";

pub mod structural;
