//! Shared helpers: fixtures, the standard template, workflows at given progress.
#![allow(dead_code)]

pub mod github;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use qms_api::{
    GateResult, GateVerdict, Operator, QmsWorkflow, QmsWorkflowStatus, StepPhase, StepStatus,
    TaskPhase, TaskResultSummary, TaskStatus, WorkflowState, WorkflowTemplate,
};
use qms_github::naming;
use serde_json::Value;

pub const SHA1: &str = "3f7c2a9d41e8b6c05d9a7e1f2b3c4d5e6f708192";
pub const SHA2: &str = "9a8b7c6d5e4f30211223344556677889900aabbc";
pub const REPO: &str = "creo/creo-roo-commander";
pub const PR: u64 = 12345;
pub const NS: &str = "qms";

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name)).unwrap()
}

pub fn template() -> WorkflowTemplate {
    let text = std::fs::read_to_string(fixture_path("template.standard-qms-review.yaml")).unwrap();
    let mut t: WorkflowTemplate = serde_saphyr::from_str(&text).unwrap();
    t.metadata.namespace = Some(NS.into());
    t
}

pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-08-17T06:10:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub fn wf_name() -> String {
    naming::workflow_name(REPO, PR)
}

/// A workflow as the webhook creates it (no status yet).
pub fn workflow(sha: &str) -> QmsWorkflow {
    qms_testkit::fixtures::workflow(&wf_name())
        .namespace(NS)
        .repository(REPO)
        .pull_request(PR)
        .head_sha(sha)
        .head_ref("feature/qms-integration")
        .resource_version("7")
        .annotation(naming::ANNOTATION_INSTALLATION, "4242")
        .build()
}

pub fn gate(
    name: &str,
    metric: &str,
    value: f64,
    op: Operator,
    threshold: f64,
    verdict: GateVerdict,
) -> GateResult {
    GateResult {
        name: name.into(),
        metric: metric.into(),
        value: Some(value),
        operator: Some(op),
        threshold: Some(threshold),
        unit: None,
        verdict,
        blocking: verdict != GateVerdict::Warning,
        message: String::new(),
        baseline: None,
        on_missing: None,
        carried: false,
    }
}

pub fn task(step: &str, agent: &str, phase: TaskPhase, summary: &str) -> TaskStatus {
    TaskStatus {
        job_name: format!("{step}-{agent}-1"),
        agent: agent.into(),
        selector: agent.into(),
        attempt: 1,
        phase,
        started_at: Some("2025-08-17T06:10:00Z".into()),
        finished_at: None,
        result: (!summary.is_empty()).then(|| TaskResultSummary {
            status: "success".into(),
            summary: summary.into(),
            ..TaskResultSummary::default()
        }),
        message: String::new(),
    }
}

pub fn step(name: &str, phase: StepPhase) -> StepStatus {
    StepStatus {
        name: name.into(),
        phase,
        attempt: if phase == StepPhase::Pending { 0 } else { 1 },
        ..StepStatus::default()
    }
}

/// Status of run `run` on `sha` in `state`, with the given steps.
pub fn status(
    run: u32,
    sha: &str,
    state: WorkflowState,
    current: Option<&str>,
    steps: Vec<StepStatus>,
) -> QmsWorkflowStatus {
    QmsWorkflowStatus {
        state,
        current_step: current.map(str::to_owned),
        head_sha: Some(sha.into()),
        run,
        steps,
        correlation_id: Some("corr-12345-001".into()),
        ..QmsWorkflowStatus::default()
    }
}

/// The standard template's four steps at a given progress (0 = DoR running … 5 = completed).
pub fn progress(run: u32, sha: &str, stage: u32) -> QmsWorkflowStatus {
    use StepPhase::*;
    let dor_gates = vec![
        gate(
            "basic-checks",
            "lint_errors",
            0.0,
            Operator::Lte,
            0.0,
            GateVerdict::Passed,
        ),
        gate(
            "security-scan",
            "critical_vulns",
            0.0,
            Operator::Eq,
            0.0,
            GateVerdict::Passed,
        ),
    ];
    let prog_gates = vec![
        gate(
            "code-coverage",
            "test_coverage",
            85.2,
            Operator::Gte,
            80.0,
            GateVerdict::Passed,
        ),
        gate(
            "performance-test",
            "p95_latency_ms",
            120.0,
            Operator::Lte,
            200.0,
            GateVerdict::Passed,
        ),
    ];
    let dod_gates = vec![
        gate(
            "final-checks",
            "open_todos",
            0.0,
            Operator::Eq,
            0.0,
            GateVerdict::Passed,
        ),
        gate(
            "compliance-audit",
            "compliance_score",
            97.0,
            Operator::Gte,
            95.0,
            GateVerdict::Passed,
        ),
    ];
    let mut dor = step(
        "dor-validation",
        if stage == 0 { Running } else { Succeeded },
    );
    dor.tasks = vec![task(
        "dor-validation",
        "qms-dor-validator",
        if stage == 0 {
            TaskPhase::Running
        } else {
            TaskPhase::Succeeded
        },
        if stage == 0 { "" } else { "DoR met" },
    )];
    if stage > 0 {
        dor.gates = dor_gates;
    }
    let mut prog = step(
        "progress-reviews",
        match stage {
            0 => Pending,
            1 => Running,
            _ => Succeeded,
        },
    );
    if stage > 1 {
        prog.gates = prog_gates;
        prog.tasks = vec![
            task(
                "progress-reviews",
                "qms-code-reviewer",
                TaskPhase::Succeeded,
                "2 minor findings",
            ),
            task(
                "progress-reviews",
                "qms-testing-specialist",
                TaskPhase::Succeeded,
                "coverage 85.2%",
            ),
        ];
    }
    let mut dod = step(
        "dod-validation",
        match stage {
            0 | 1 => Pending,
            2 => Running,
            _ => Succeeded,
        },
    );
    if stage > 2 {
        dod.gates = dod_gates;
    }
    let fin = step(
        "final-review",
        match stage {
            0..=2 => Pending,
            3 => Running,
            4 => WaitingForApproval,
            _ => Succeeded,
        },
    );
    let (state, current) = match stage {
        0 => (WorkflowState::DorPending, "dor-validation"),
        1 => (WorkflowState::ProgressPending, "progress-reviews"),
        2 => (WorkflowState::DodPending, "dod-validation"),
        3 | 4 => (WorkflowState::FinalPending, "final-review"),
        _ => (WorkflowState::Completed, "final-review"),
    };
    status(run, sha, state, Some(current), vec![dor, prog, dod, fin])
}
