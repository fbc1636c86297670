//! Builders of the QMS resources with the values the examples and the spec (§2.3) use. Each
//! returns a plain API value that a test can change further; nothing here talks to a server.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use qms_api::*;

/// The head SHA [`workflow()`] starts with.
pub const SHA: &str = "abc1234";

/// A fixed instant (2025-08-17T06:00:00Z) for tests that pass `now` explicitly.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-08-17T06:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("valid literal")
}

/// A Kubernetes-style duration (`"300s"`, `"15m"`); panics on a malformed literal.
pub fn dur(s: &str) -> KubeDuration {
    KubeDuration::parse(s).expect("valid duration literal")
}

/// Builds a [`QmsWorkflow`]; start with [`workflow()`].
#[derive(Clone, Debug)]
pub struct WorkflowBuilder {
    wf: QmsWorkflow,
}

/// A workflow named `name` for pull request 1 of `creo/app` at [`SHA`] (`feature` into `main`),
/// on the template `standard-qms-review`, without namespace or status.
pub fn workflow(name: &str) -> WorkflowBuilder {
    WorkflowBuilder {
        wf: QmsWorkflow {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: QmsWorkflowSpec {
                repository: "creo/app".into(),
                pull_request: 1,
                head_sha: SHA.into(),
                base_ref: "main".into(),
                head_ref: "feature".into(),
                template_ref: TemplateRef {
                    name: "standard-qms-review".into(),
                },
                approvals: vec![],
                overrides: vec![],
                retry: None,
                merge_group: None,
                push: None,
            },
            status: None,
        },
    }
}

impl WorkflowBuilder {
    pub fn namespace(mut self, ns: &str) -> Self {
        self.wf.metadata.namespace = Some(ns.into());
        self
    }
    pub fn uid(mut self, uid: &str) -> Self {
        self.wf.metadata.uid = Some(uid.into());
        self
    }
    pub fn generation(mut self, generation: i64) -> Self {
        self.wf.metadata.generation = Some(generation);
        self
    }
    pub fn repository(mut self, repository: &str) -> Self {
        self.wf.spec.repository = repository.into();
        self
    }
    pub fn pull_request(mut self, number: u64) -> Self {
        self.wf.spec.pull_request = number;
        self
    }
    pub fn head_sha(mut self, sha: &str) -> Self {
        self.wf.spec.head_sha = sha.into();
        self
    }
    pub fn base_ref(mut self, base: &str) -> Self {
        self.wf.spec.base_ref = base.into();
        self
    }
    pub fn head_ref(mut self, head: &str) -> Self {
        self.wf.spec.head_ref = head.into();
        self
    }
    pub fn template(mut self, name: &str) -> Self {
        self.wf.spec.template_ref.name = name.into();
        self
    }
    pub fn resource_version(mut self, rv: &str) -> Self {
        self.wf.metadata.resource_version = Some(rv.into());
        self
    }
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.wf
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }
    pub fn approval(mut self, approval: Approval) -> Self {
        self.wf.spec.approvals.push(approval);
        self
    }
    pub fn status(mut self, status: QmsWorkflowStatus) -> Self {
        self.wf.status = Some(status);
        self
    }
    pub fn build(self) -> QmsWorkflow {
        self.wf
    }
}

/// A template step without timeout, retry policy, condition or escalation; agents by name.
pub fn step(name: &str, type_: StepType, agents: &[&str], gates: &[&str]) -> TemplateStep {
    TemplateStep {
        name: name.into(),
        type_,
        agents: agents.iter().map(|a| AgentSelector::by_name(*a)).collect(),
        quality_gates: gates.iter().map(|g| g.to_string()).collect(),
        timeout: None,
        retry_policy: None,
        condition: None,
        parallel_reviews: false,
        escalation: None,
        states: None,
    }
}

/// The seed's standard-qms-review (spec §2.3) as a WorkflowTemplate spec: dor-validation,
/// progress-reviews, dod-validation, final-review with the gates of [`standard_gates`] and the
/// agents of [`standard_agents`].
pub fn standard_template() -> WorkflowTemplateSpec {
    let mut dor = step(
        "dor-validation",
        StepType::Parallel,
        &["qms-dor-validator"],
        &["basic-checks", "security-scan"],
    );
    dor.timeout = Some(dur("300s"));
    dor.retry_policy = Some(RetryPolicy::default());
    let mut progress = step(
        "progress-reviews",
        StepType::Conditional,
        &["qms-code-reviewer", "qms-testing-specialist"],
        &["code-coverage", "performance-test"],
    );
    progress.condition = Some("dor-validation.success".into());
    progress.timeout = Some(dur("900s"));
    progress.parallel_reviews = true;
    let mut dod = step(
        "dod-validation",
        StepType::Sequential,
        &["qms-dod-validator"],
        &["final-checks", "compliance-audit"],
    );
    dod.condition = Some("progress-reviews.success".into());
    dod.timeout = Some(dur("600s"));
    let mut fin = step(
        "final-review",
        StepType::Manual,
        &["qms-quality-coordinator"],
        &[],
    );
    fin.condition = Some("dod-validation.success".into());
    fin.timeout = Some(dur("3600s"));
    fin.escalation = Some(Escalation {
        enabled: true,
        after: Some(dur("1800s")),
    });
    WorkflowTemplateSpec {
        version: Some("2.3".into()),
        repositories: vec![],
        default: true,
        merge_groups: Default::default(),
        pushes: None,
        timeout: None,
        steps: vec![dor, progress, dod, fin],
        repository_dispatch: None,
    }
}

/// A blocking threshold gate on `metric`.
pub fn gate(
    metric: &str,
    op: Operator,
    threshold: f64,
    unit: Option<MetricUnit>,
) -> QualityGateSpec {
    QualityGateSpec {
        step: None,
        type_: GateType::Threshold,
        metric: Some(metric.into()),
        operator: Some(op),
        threshold: Some(threshold),
        unit,
        blocking: true,
        timeout: None,
        retry: 0,
        escalation: None,
        baseline: None,
        gradual: None,
        on_missing: qms_api::OnMissing::Fail,
        carry_forward: None,
    }
}

/// The six gates [`standard_template`] names, by name.
pub fn standard_gates() -> BTreeMap<String, QualityGateSpec> {
    use MetricUnit::*;
    BTreeMap::from([
        (
            "basic-checks".into(),
            gate("basic_checks_passed", Operator::Eq, 1.0, Some(Boolean)),
        ),
        (
            "security-scan".into(),
            gate("critical_vulnerabilities", Operator::Lte, 0.0, Some(Count)),
        ),
        (
            "code-coverage".into(),
            gate("test_coverage", Operator::Gte, 80.0, Some(Percentage)),
        ),
        (
            "performance-test".into(),
            gate("p95_latency", Operator::Lte, 500.0, Some(Milliseconds)),
        ),
        (
            "final-checks".into(),
            gate("final_checks_passed", Operator::Eq, 1.0, Some(Boolean)),
        ),
        (
            "compliance-audit".into(),
            gate("compliance_score", Operator::Gte, 90.0, Some(Score)),
        ),
    ])
}

/// An agent with `caps` and room for `capacity` concurrent tasks, running a placeholder image.
pub fn agent(caps: &[&str], capacity: u32) -> AgentSpec {
    AgentSpec {
        specialization: None,
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
        load_capacity: capacity,
        priority: Priority::Medium,
        default_timeout: None,
        health: HealthPolicy::default(),
        job: AgentJob {
            image: "ghcr.io/example/agent:1".into(),
            command: vec![],
            args: vec![],
            env: vec![],
            resources: None,
            service_account_name: None,
        },
    }
}

/// The five agents [`standard_template`] names, by name (capacity 10 each).
pub fn standard_agents() -> BTreeMap<String, AgentSpec> {
    BTreeMap::from([
        (
            "qms-dor-validator".into(),
            agent(&["dor-validation", "basic-checks"], 10),
        ),
        ("qms-code-reviewer".into(), agent(&["code-review"], 10)),
        ("qms-testing-specialist".into(), agent(&["testing"], 10)),
        ("qms-dod-validator".into(), agent(&["dod-validation"], 10)),
        (
            "qms-quality-coordinator".into(),
            agent(&["final-review"], 10),
        ),
    ])
}

/// An agent's result document (what it writes as its termination message) with `metrics`.
pub fn result_json(success: bool, metrics: &[(&str, f64)]) -> String {
    let m: serde_json::Map<String, serde_json::Value> = metrics
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    serde_json::json!({
        "status": if success { "success" } else { "failure" },
        "metrics": m,
        "summary": "done",
    })
    .to_string()
}

/// Metrics that pass every gate of [`standard_gates`], by the standard agent that reports them.
pub fn good_metrics(agent: &str) -> Vec<(&'static str, f64)> {
    match agent {
        "qms-dor-validator" => vec![
            ("basic_checks_passed", 1.0),
            ("critical_vulnerabilities", 0.0),
        ],
        "qms-code-reviewer" => vec![("test_coverage", 85.0)],
        "qms-testing-specialist" => vec![("p95_latency", 120.0), ("test_coverage", 90.0)],
        "qms-dod-validator" => vec![("final_checks_passed", 1.0), ("compliance_score", 95.0)],
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_template_names_only_standard_gates_and_agents() {
        let gates = standard_gates();
        let agents = standard_agents();
        for s in &standard_template().steps {
            for g in &s.quality_gates {
                assert!(gates.contains_key(g), "{}: unknown gate {g}", s.name);
            }
            for a in &s.agents {
                let name = a.name.as_deref().expect("agents by name");
                assert!(
                    agents.contains_key(name),
                    "{}: unknown agent {name}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn good_metrics_name_every_standard_gate_metric() {
        let reported: Vec<&str> = standard_agents()
            .keys()
            .flat_map(|a| good_metrics(a).into_iter().map(|(m, _)| m))
            .collect();
        for (name, g) in standard_gates() {
            let metric = g.metric.expect("threshold gates name a metric");
            assert!(
                reported.contains(&metric.as_str()),
                "{name}: {metric} never reported"
            );
        }
    }

    #[test]
    fn workflow_builder_sets_what_it_is_told() {
        let wf = workflow("pr-9")
            .namespace("qms")
            .pull_request(9)
            .head_sha("def5678")
            .template("t")
            .annotation("a", "1")
            .annotation("b", "2")
            .build();
        assert_eq!(wf.metadata.name.as_deref(), Some("pr-9"));
        assert_eq!(wf.metadata.namespace.as_deref(), Some("qms"));
        assert_eq!(
            (wf.spec.pull_request, wf.spec.head_sha.as_str()),
            (9, "def5678")
        );
        assert_eq!(wf.spec.template_ref.name, "t");
        let annotations = wf.metadata.annotations.expect("annotations");
        assert_eq!(
            annotations.into_iter().collect::<Vec<_>>(),
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert!(wf.status.is_none());
    }
}
