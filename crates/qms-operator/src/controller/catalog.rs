//! Status of the catalog kinds: WorkflowTemplate (Ready: every referenced agent, gate and
//! condition resolves; number of steps), QualityGate (Ready: the rule is usable) and Agent
//! (running tasks, recent failures and success rate from its live Jobs, Healthy).
//!
//! These statuses inform people (`kubectl get`); the workflow engine re-validates on its own.
//! The QualityGate controller is the one writer of QualityGate status (baselines are not in it:
//! they live in QualityBaseline objects written from merged pull requests, see `baselines`).
//! Each controller writes only when the computed status differs (no write → no extra event).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use qms_api::{
    Agent, AgentStatus, Condition, ConditionStatus, GateType, KubeDuration, QualityGate,
    QualityGateStatus, StepType, WorkflowTemplate, WorkflowTemplateSpec, WorkflowTemplateStatus,
};

use crate::context::{Scope, Shared, lock};
use crate::error::Error;
use crate::metrics::ControllerKind;
use crate::observe;
use crate::status::write_status;

pub struct Ctx {
    pub shared: Arc<Shared>,
    pub scope: Arc<Scope>,
}

fn cond(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// Validates a template against the agents and gates of its namespace: `(reason, message)` of the
/// first problem, or `None` when it is usable.
pub fn template_problem(
    spec: &WorkflowTemplateSpec,
    agents: &[Arc<Agent>],
    gates: &[Arc<QualityGate>],
) -> Option<(&'static str, String)> {
    for (i, step) in spec.steps.iter().enumerate() {
        for sel in &step.agents {
            match (&sel.name, &sel.capability) {
                (Some(name), None) => {
                    if !agents.iter().any(|a| a.name_any() == *name) {
                        return Some((
                            "UnknownAgent",
                            format!("step {}: Agent {name:?} does not exist", step.name),
                        ));
                    }
                }
                (None, Some(cap)) => {
                    if !agents.iter().any(|a| a.spec.capabilities.contains(cap)) {
                        return Some((
                            "UnknownAgent",
                            format!("step {}: no Agent has capability {cap:?}", step.name),
                        ));
                    }
                }
                _ => {
                    return Some((
                        "InvalidAgentSelector",
                        format!("step {}: set exactly one of name or capability", step.name),
                    ));
                }
            }
        }
        for gate in &step.quality_gates {
            if !gates.iter().any(|g| g.name_any() == *gate) {
                return Some((
                    "UnknownGate",
                    format!("step {}: QualityGate {gate:?} does not exist", step.name),
                ));
            }
        }
        if step.type_ == StepType::Conditional && step.condition.is_none() {
            return Some((
                "InvalidCondition",
                format!("step {}: a conditional step needs a condition", step.name),
            ));
        }
        if let Some(c) = step.condition.as_deref().filter(|c| *c != "always") {
            let ok = c.rsplit_once('.').is_some_and(|(name, outcome)| {
                matches!(outcome, "success" | "failure" | "skipped")
                    && spec.steps[..i].iter().any(|s| s.name == name)
            });
            if !ok {
                return Some((
                    "InvalidCondition",
                    format!(
                        "step {}: condition {c:?} must name an earlier step as <step>.success|failure|skipped",
                        step.name
                    ),
                ));
            }
        }
        let durations = [
            ("timeout", step.timeout.as_ref()),
            (
                "escalation.after",
                step.escalation.as_ref().and_then(|e| e.after.as_ref()),
            ),
        ];
        for (what, d) in durations {
            if let Some(Err(e)) = d.map(KubeDuration::to_std) {
                return Some((
                    "InvalidDuration",
                    format!("step {}: {what}: {e}", step.name),
                ));
            }
        }
    }
    None
}

pub fn template_status(
    t: &WorkflowTemplate,
    agents: &[Arc<Agent>],
    gates: &[Arc<QualityGate>],
) -> WorkflowTemplateStatus {
    let mut status = t.status.clone().unwrap_or_default();
    let generation = t.meta().generation;
    let ns = t.namespace();
    let agents: Vec<_> = agents
        .iter()
        .filter(|a| a.namespace() == ns)
        .cloned()
        .collect();
    let gates: Vec<_> = gates
        .iter()
        .filter(|g| g.namespace() == ns)
        .cloned()
        .collect();
    let c = match template_problem(&t.spec, &agents, &gates) {
        Some((reason, message)) => cond("Ready", false, reason, message, generation),
        None => cond(
            "Ready",
            true,
            "Valid",
            format!(
                "{} steps; every agent, gate and condition resolves",
                t.spec.steps.len()
            ),
            generation,
        ),
    };
    Condition::upsert(&mut status.conditions, c);
    status.steps = Some(t.spec.steps.len() as i64);
    status.observed_generation = generation;
    status
}

pub fn gate_status(g: &QualityGate) -> QualityGateStatus {
    let mut status = g.status.clone().unwrap_or_default();
    let generation = g.meta().generation;
    let s = &g.spec;
    let problem = match s.type_ {
        GateType::Threshold
            if s.metric.is_none() || s.operator.is_none() || s.threshold.is_none() =>
        {
            Some("a threshold gate needs metric, operator and threshold".to_owned())
        }
        _ => None,
    }
    .or_else(|| {
        [
            ("timeout", s.timeout.as_ref()),
            (
                "escalation.threshold",
                s.escalation.as_ref().and_then(|e| e.threshold.as_ref()),
            ),
        ]
        .into_iter()
        .find_map(|(what, d)| match d.map(KubeDuration::to_std) {
            Some(Err(e)) => Some(format!("{what}: {e}")),
            _ => None,
        })
    })
    .or_else(|| {
        s.gradual.as_ref().and_then(|gr| {
            let start = chrono::DateTime::parse_from_rfc3339(&gr.start);
            let end = chrono::DateTime::parse_from_rfc3339(&gr.end);
            match (start, end) {
                (Ok(a), Ok(b)) if a < b => None,
                (Ok(_), Ok(_)) => Some("gradual.start must be before gradual.end".to_owned()),
                _ => Some("gradual.start and gradual.end must be RFC 3339 times".to_owned()),
            }
        })
    });
    let c = match problem {
        Some(message) => cond("Ready", false, "InvalidSpec", message, generation),
        None => cond(
            "Ready",
            true,
            "Valid",
            match (&s.metric, s.operator, s.threshold) {
                (Some(m), Some(op), Some(t)) => format!(
                    "{m} {} {t} ({})",
                    op.symbol(),
                    if s.blocking { "blocking" } else { "advisory" }
                ),
                _ => "usable".to_owned(),
            },
            generation,
        ),
    };
    Condition::upsert(&mut status.conditions, c);
    status.observed_generation = generation;
    status
}

pub fn agent_status(a: &Agent, stats: &observe::AgentStats) -> AgentStatus {
    let mut status = a.status.clone().unwrap_or_default();
    let generation = a.meta().generation;
    status.running_tasks = stats.running;
    status.recent_failures = stats.recent_failures;
    status.recent_success_rate = stats.success_rate().map(|r| (r * 1000.0).round() / 1000.0);
    status.observed_generation = generation;
    let threshold = a.spec.health.failure_threshold;
    let c = if !a.spec.health.is_healthy(stats.recent_failures) {
        cond(
            "Healthy",
            false,
            "TooManyFailures",
            format!(
                "{} failed or timed-out tasks within {} (threshold {threshold}): no new tasks while another agent can take them",
                stats.recent_failures, a.spec.health.window
            ),
            generation,
        )
    } else {
        cond(
            "Healthy",
            true,
            "Healthy",
            format!(
                "{} running of {}; {} recent failures",
                stats.running, a.spec.load_capacity, stats.recent_failures
            ),
            generation,
        )
    };
    Condition::upsert(&mut status.conditions, c);
    status
}

/// The key of `obj`'s failure count under controller `kind`.
fn failure_key<K: ResourceExt>(obj: &K, kind: ControllerKind) -> String {
    super::failure_key(
        &format!("{kind:?}"),
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
    )
}

fn on_error<K: ResourceExt>(obj: &K, err: &Error, shared: &Shared, kind: ControllerKind) -> Action {
    let category = err.category();
    shared.metrics.error(kind, category);
    let key = failure_key(obj, kind);
    let delay = super::backoff_delay(shared, &key, category);
    tracing::warn!(object = %key, category = category.as_str(), error = %err, retry_in = ?delay, "status update failed");
    Action::requeue(delay)
}

fn succeeded<K: ResourceExt>(obj: &K, shared: &Shared, kind: ControllerKind, started: Instant) {
    let key = failure_key(obj, kind);
    lock(&shared.failures).remove(&key);
    shared.metrics.reconciled(kind, started.elapsed());
}

async fn reconcile_template(t: Arc<WorkflowTemplate>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.shared.wait_ready().await;
    let started = Instant::now();
    let status = template_status(
        &t,
        &ctx.scope.stores.agents.state(),
        &ctx.scope.stores.gates.state(),
    );
    if t.status.as_ref() != Some(&status) {
        write_status(&ctx.shared, &*t, &status).await?;
    }
    succeeded(&*t, &ctx.shared, ControllerKind::workflowtemplate, started);
    Ok(Action::await_change())
}

async fn reconcile_gate(g: Arc<QualityGate>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.shared.wait_ready().await;
    let started = Instant::now();
    let status = gate_status(&g);
    if g.status.as_ref() != Some(&status) {
        write_status(&ctx.shared, &*g, &status).await?;
    }
    succeeded(&*g, &ctx.shared, ControllerKind::qualitygate, started);
    Ok(Action::await_change())
}

async fn reconcile_agent(a: Arc<Agent>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.shared.wait_ready().await;
    let started = Instant::now();
    let ns = a.namespace().unwrap_or_default();
    let window = a
        .spec
        .health
        .window
        .to_std()
        .unwrap_or(Duration::from_secs(600));
    let stats = observe::agent_stats(
        &ns,
        &a.name_any(),
        window,
        &ctx.scope.stores.jobs.state(),
        Utc::now(),
    );
    let status = agent_status(&a, &stats);
    if a.status.as_ref() != Some(&status) {
        write_status(&ctx.shared, &*a, &status).await?;
    }
    succeeded(&*a, &ctx.shared, ControllerKind::agent, started);
    // Failures age out of the health window without any event: look again periodically.
    Ok(Action::requeue(ctx.shared.live().health_check_interval))
}

/// Runs the three catalog controllers of one scope.
pub async fn run(
    shared: Arc<Shared>,
    scope: Arc<Scope>,
    templates: UnboundedReceiver<ObjectRef<WorkflowTemplate>>,
    gates: UnboundedReceiver<ObjectRef<QualityGate>>,
    agents: UnboundedReceiver<ObjectRef<Agent>>,
) {
    let config = Config::default().concurrency(shared.settings.catalog_concurrency);
    let ctx = Arc::new(Ctx {
        shared,
        scope: scope.clone(),
    });
    let t = Controller::for_stream(
        futures::stream::pending::<Result<WorkflowTemplate, watcher::Error>>(),
        scope.stores.templates.clone(),
    )
    .reconcile_on(templates)
    .with_config(config.clone())
    .run(
        reconcile_template,
        |o, e, c: Arc<Ctx>| on_error(&*o, e, &c.shared, ControllerKind::workflowtemplate),
        ctx.clone(),
    )
    .for_each(|_| async {});
    let g = Controller::for_stream(
        futures::stream::pending::<Result<QualityGate, watcher::Error>>(),
        scope.stores.gates.clone(),
    )
    .reconcile_on(gates)
    .with_config(config.clone())
    .run(
        reconcile_gate,
        |o, e, c: Arc<Ctx>| on_error(&*o, e, &c.shared, ControllerKind::qualitygate),
        ctx.clone(),
    )
    .for_each(|_| async {});
    let a = Controller::for_stream(
        futures::stream::pending::<Result<Agent, watcher::Error>>(),
        scope.stores.agents.clone(),
    )
    .reconcile_on(agents)
    .with_config(config)
    .run(
        reconcile_agent,
        |o, e, c: Arc<Ctx>| on_error(&*o, e, &c.shared, ControllerKind::agent),
        ctx,
    )
    .for_each(|_| async {});
    futures::join!(t, g, a);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(yaml: &str) -> WorkflowTemplate {
        let mut t: WorkflowTemplate = serde_saphyr::from_str(yaml).unwrap();
        t.metadata.namespace = Some("ns".into());
        t.metadata.generation = Some(2);
        t
    }

    fn agent(name: &str, caps: &[&str]) -> Arc<Agent> {
        let mut a = Agent::new(
            name,
            serde_json::from_value(serde_json::json!({
                "capabilities": caps, "job": {"image": "busybox"}
            }))
            .unwrap(),
        );
        a.metadata.namespace = Some("ns".into());
        Arc::new(a)
    }

    fn gate(name: &str) -> Arc<QualityGate> {
        let mut g = QualityGate::new(
            name,
            serde_json::from_value(serde_json::json!({
                "type": "threshold", "metric": "m", "operator": "gte", "threshold": 1.0
            }))
            .unwrap(),
        );
        g.metadata.namespace = Some("ns".into());
        Arc::new(g)
    }

    const T: &str = r#"
apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata: {name: t}
spec:
  steps:
    - name: dor
      type: parallel
      agents: [{name: validator}]
      qualityGates: [basic]
    - name: review
      type: conditional
      condition: dor.success
      agents: [{capability: code-review}]
"#;

    #[test]
    fn template_ready_when_everything_resolves() {
        let t = template(T);
        let s = template_status(
            &t,
            &[agent("validator", &[]), agent("reviewer", &["code-review"])],
            &[gate("basic")],
        );
        assert_eq!(s.steps, Some(2));
        let ready = Condition::find(&s.conditions, "Ready").unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::True, "Valid")
        );
        assert_eq!(ready.observed_generation, Some(2));
    }

    #[test]
    fn template_not_ready_names_the_missing_reference() {
        let t = template(T);
        let s = template_status(&t, &[agent("validator", &[])], &[gate("basic")]);
        let ready = Condition::find(&s.conditions, "Ready").unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "UnknownAgent")
        );
        assert!(ready.message.contains("code-review"));
        let s = template_status(
            &t,
            &[agent("validator", &[]), agent("r", &["code-review"])],
            &[],
        );
        assert_eq!(
            Condition::find(&s.conditions, "Ready").unwrap().reason,
            "UnknownGate"
        );
        let bad = template(&T.replace("dor.success", "later.success"));
        let s = template_status(
            &bad,
            &[agent("validator", &[]), agent("r", &["code-review"])],
            &[gate("basic")],
        );
        assert_eq!(
            Condition::find(&s.conditions, "Ready").unwrap().reason,
            "InvalidCondition"
        );
    }

    #[test]
    fn agent_status_reports_load_and_health() {
        let a = agent("a", &["x"]);
        let stats = observe::AgentStats {
            running: 2,
            recent_failures: 3,
            recent_successes: 1,
        };
        let s = agent_status(&a, &stats);
        assert_eq!(s.running_tasks, 2);
        assert_eq!(s.recent_failures, 3);
        assert_eq!(s.recent_success_rate, Some(0.25));
        let h = Condition::find(&s.conditions, "Healthy").unwrap();
        assert_eq!(
            (h.status, h.reason.as_str()),
            (ConditionStatus::False, "TooManyFailures")
        );
        // recomputing the same facts gives the same status (no write)
        let mut again = (*a).clone();
        again.status = Some(s.clone());
        assert_eq!(agent_status(&again, &stats), s);
    }

    #[test]
    fn gate_status_ready() {
        let s = gate_status(&gate("g"));
        let r = Condition::find(&s.conditions, "Ready").unwrap();
        assert_eq!(r.status, ConditionStatus::True);
        assert!(r.message.contains("m >= 1"), "{}", r.message);
    }
}
