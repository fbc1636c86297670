//! The repository's `examples/*.yaml` (seed template, gates, agents, a workflow) driven through
//! the engine end to end, with each agent's result taken from the command its manifest runs.
//! Core behaviour is tested with in-code fixtures; this checks the shipped examples fit together
//! (metric names agree between agents and gates, selectors resolve, the template is valid).

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use qms_api::{Agent, QmsWorkflow, QualityGate, StepPhase, WorkflowState, WorkflowTemplate};
use qms_engine::{AgentView, JobPhase};
use serde_json::Value;
use support::*;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn load(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(examples_dir().join(file)).expect("example file");
    serde_saphyr::from_multiple::<Value>(&text).expect("valid YAML")
}

/// The JSON an example agent writes: the `printf '%s' '<json>'` in its script.
fn scripted_result(agent: &Agent) -> Option<String> {
    let script = agent.spec.job.args.join("\n");
    let start = script.find("printf '%s' '")? + "printf '%s' '".len();
    let end = script[start..].find('\'')? + start;
    Some(script[start..end].to_owned())
}

#[test]
fn shipped_examples_complete_the_standard_review() {
    if !examples_dir().join("standard-qms-review.yaml").exists() {
        eprintln!("examples/ not present; nothing to check");
        return;
    }
    let mut w = World::standard();
    let template: WorkflowTemplate =
        serde_json::from_value(load("standard-qms-review.yaml").remove(0)).expect("template");
    w.template = Some(template.spec);
    w.gates = load("quality-gates.yaml")
        .into_iter()
        .map(|v| serde_json::from_value::<QualityGate>(v).expect("gate"))
        .map(|g| (g.metadata.name.clone().unwrap_or_default(), g.spec))
        .collect();
    let agents: Vec<Agent> = load("agents.yaml")
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("agent"))
        .collect();
    let results: BTreeMap<String, Option<String>> = agents
        .iter()
        .map(|a| {
            (
                a.metadata.name.clone().unwrap_or_default(),
                scripted_result(a),
            )
        })
        .collect();
    w.agents = agents
        .into_iter()
        .map(|a| {
            let view = AgentView {
                spec: a.spec,
                running: 0,
                healthy: true,
            };
            (a.metadata.name.unwrap_or_default(), view)
        })
        .collect();
    let wf: QmsWorkflow =
        serde_json::from_value(load("qmsworkflow-pr-12345.yaml").remove(0)).expect("workflow");
    w.wf.spec = wf.spec;

    w.step_once();
    for _ in 0..10 {
        if w.state().is_terminal() {
            break;
        }
        w.advance(5);
        let live: Vec<String> = w
            .jobs
            .values()
            .filter(|j| j.phase == JobPhase::Active)
            .map(|j| j.name.clone())
            .collect();
        for name in live {
            let agent = w.jobs[&name].labels["qms.creo.dev/agent"].clone();
            let result = results.get(&agent).cloned().flatten();
            w.finish_job(&name, JobPhase::Succeeded, result);
        }
        if w.step("final-review").phase == StepPhase::WaitingForApproval {
            w.approve("final-review", qms_api::Decision::Approve, "qa-lead");
        }
        let d = w.step_once();
        assert_fixed_point(&w, &d);
    }
    let failing: Vec<String> = w
        .status()
        .steps
        .iter()
        .flat_map(|s| {
            s.gates
                .iter()
                .filter(|g| !g.verdict.passes())
                .map(|g| g.message.clone())
        })
        .collect();
    assert_eq!(
        w.state(),
        WorkflowState::Completed,
        "gates not passing: {failing:?}"
    );
    let gates = w.status().gates.unwrap_or_default();
    assert_eq!(gates, "6/6");
}
