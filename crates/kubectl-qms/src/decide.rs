//! Pure decisions of `kubectl qms`: which step, gate and SHA a command means, and the patch that
//! records it. The writes are exactly the spec entries the README documents as raw kubectl patches
//! (`spec.approvals[]`, `spec.overrides[]`, `spec.retry`); nothing here talks to the API server.

use chrono::{DateTime, SecondsFormat, Utc};
use qms_api::{
    Approval, Decision, KubeDuration, Override, QmsWorkflow, StepPhase, StepType, WorkflowTemplate,
};
use serde_json::{Value, json};

use crate::error::Error;

/// The shortest SHA prefix `--sha` accepts (the API's pattern allows 7 to 64 hex digits).
pub const MIN_SHA_PREFIX: usize = 7;

pub fn short(sha: &str) -> &str {
    sha.get(..MIN_SHA_PREFIX).unwrap_or(sha)
}

/// The head SHA a decision is recorded for. `given` (from `--sha`) must name the current head
/// (in full or by a prefix of at least 7 digits): a decision about an older push never counts, so
/// recording it would only mislead.
pub fn head_sha(wf: &QmsWorkflow, given: Option<&str>) -> Result<String, Error> {
    let head = wf.spec.head_sha.clone();
    if let Some(given) = given {
        let given = given.trim().to_ascii_lowercase();
        if given.len() < MIN_SHA_PREFIX || !head.starts_with(&given) {
            return Err(Error::StaleSha {
                workflow: name_of(wf),
                given,
                head,
            });
        }
    }
    Ok(head)
}

pub fn name_of(wf: &QmsWorkflow) -> String {
    wf.metadata.name.clone().unwrap_or_default()
}

/// The step names of the workflow: from its template when known, else from its status.
pub fn step_names(wf: &QmsWorkflow, template: Option<&WorkflowTemplate>) -> Vec<String> {
    match template {
        Some(t) => t.spec.steps.iter().map(|s| s.name.clone()).collect(),
        None => wf
            .status
            .iter()
            .flat_map(|s| s.steps.iter().map(|st| st.name.clone()))
            .collect(),
    }
}

pub fn check_step(
    wf: &QmsWorkflow,
    template: Option<&WorkflowTemplate>,
    step: &str,
) -> Result<(), Error> {
    let known = step_names(wf, template);
    if known.iter().any(|s| s == step) {
        Ok(())
    } else {
        Err(Error::NoSuchStep {
            workflow: name_of(wf),
            step: step.to_owned(),
            known,
        })
    }
}

/// The step an approval is for: `--step`, else the step waiting for approval, else the template's
/// manual step (the same choice `/qms approve` makes).
pub fn approval_step(
    wf: &QmsWorkflow,
    template: Option<&WorkflowTemplate>,
    given: Option<&str>,
) -> Result<String, Error> {
    if let Some(step) = given {
        check_step(wf, template, step)?;
        return Ok(step.to_owned());
    }
    if let Some(status) = &wf.status
        && let Some(current) = &status.current_step
        && status
            .step(current)
            .is_some_and(|s| s.phase == StepPhase::WaitingForApproval)
    {
        return Ok(current.clone());
    }
    template
        .and_then(|t| t.spec.steps.iter().find(|s| s.type_ == StepType::Manual))
        .map(|s| s.name.clone())
        .ok_or_else(|| Error::NoManualStep {
            workflow: name_of(wf),
        })
}

/// The gate names a workflow evaluates: from its template's steps, else from its status.
pub fn gate_names(wf: &QmsWorkflow, template: Option<&WorkflowTemplate>) -> Vec<String> {
    let mut names: Vec<String> = match template {
        Some(t) => t
            .spec
            .steps
            .iter()
            .flat_map(|s| s.quality_gates.iter().cloned())
            .collect(),
        None => wf
            .status
            .iter()
            .flat_map(|s| s.steps.iter())
            .flat_map(|s| s.gates.iter().map(|g| g.name.clone()))
            .collect(),
    };
    names.sort();
    names.dedup();
    names
}

pub fn check_gate(
    wf: &QmsWorkflow,
    template: Option<&WorkflowTemplate>,
    gate: &str,
) -> Result<(), Error> {
    let known = gate_names(wf, template);
    if known.iter().any(|g| g == gate) {
        Ok(())
    } else {
        Err(Error::NoSuchGate {
            workflow: name_of(wf),
            gate: gate.to_owned(),
            known,
        })
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `--expires`: an RFC 3339 time, or a duration from now (`24h`, `90m`). Must lie in the future.
pub fn parse_expires(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    let bad = |reason: String| Error::BadExpiry {
        input: input.to_owned(),
        reason,
    };
    let at = match DateTime::parse_from_rfc3339(input) {
        Ok(t) => t.to_utc(),
        Err(_) => {
            let d = KubeDuration::parse(input)
                .and_then(|d| d.to_std())
                .map_err(|e| bad(e.to_string()))?;
            let d = chrono::Duration::from_std(d).map_err(|e| bad(e.to_string()))?;
            now.checked_add_signed(d)
                .ok_or_else(|| bad("too far in the future".into()))?
        }
    };
    if at <= now {
        return Err(bad(format!("{} is not in the future", rfc3339(at))));
    }
    Ok(at)
}

pub fn approval(
    step: String,
    decision: Decision,
    by: &str,
    reason: &str,
    sha: &str,
    now: DateTime<Utc>,
) -> Approval {
    Approval {
        step,
        decision,
        by: by.to_owned(),
        reason: reason.to_owned(),
        sha: sha.to_owned(),
        at: Some(rfc3339(now)),
    }
}

/// The same decision by the same person on the same SHA is already recorded: writing it again
/// would only grow the bounded list.
pub fn already_decided(wf: &QmsWorkflow, a: &Approval) -> bool {
    wf.spec
        .approvals
        .iter()
        .any(|x| x.step == a.step && x.sha == a.sha && x.by == a.by && x.decision == a.decision)
}

pub fn override_entry(
    gate: &str,
    by: &str,
    reason: &str,
    expires: DateTime<Utc>,
    sha: &str,
) -> Override {
    Override {
        gate: gate.to_owned(),
        by: by.to_owned(),
        reason: reason.to_owned(),
        expires: rfc3339(expires),
        sha: sha.to_owned(),
    }
}

/// A JSON patch appending `entry` to the list at `list` (`/spec/approvals`), applied only while
/// the head SHA is still `head` (the `test` op: a push in between refuses the patch instead of
/// attaching the decision to a commit nobody looked at). `list_present` says whether the stored
/// object has the list at all: RFC 6902 cannot append to a missing array, and `test` with value
/// null passes only when the path is absent, so two writers cannot both create it.
pub fn append_patch(list: &str, list_present: bool, head: &str, entry: Value) -> Value {
    let mut ops = vec![json!({"op": "test", "path": "/spec/headSha", "value": head})];
    if list_present {
        ops.push(json!({"op": "add", "path": format!("{list}/-"), "value": entry}));
    } else {
        ops.push(json!({"op": "test", "path": list, "value": null}));
        ops.push(json!({"op": "add", "path": list, "value": [entry]}));
    }
    Value::Array(ops)
}

/// A fresh `spec.retry.id` (each new id is acted on once): time and a random suffix, never equal
/// to the id the operator last acted on.
pub fn retry_id(wf: &QmsWorkflow, now: DateTime<Utc>, random: u32) -> String {
    let last = wf.status.as_ref().and_then(|s| s.last_retry_id.as_deref());
    let pending = wf.spec.retry.as_ref().map(|r| r.id.as_str());
    let mut n = random;
    loop {
        let id = format!("kubectl-{}-{:08x}", now.format("%Y%m%dT%H%M%SZ"), n);
        if Some(id.as_str()) != last && Some(id.as_str()) != pending {
            return id;
        }
        n = n.wrapping_add(1);
    }
}

/// The merge patch of `spec.retry`. Without a step it sets `step: null`: a merge patch keeps
/// the fields it does not name, so an earlier retry's step would otherwise run again.
pub fn retry_patch(id: &str, step: Option<&str>, by: &str) -> Value {
    json!({"spec": {"retry": {"id": id, "by": by, "step": step}}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use qms_api::{QmsWorkflowSpec, QmsWorkflowStatus, StepStatus, TemplateRef};

    const SHA: &str = "3f7c2a9d41e8b6c05d9a7e1f2b3c4d5e6f708192";

    fn wf() -> QmsWorkflow {
        let mut wf = QmsWorkflow::new(
            "wf",
            QmsWorkflowSpec {
                repository: "o/r".into(),
                pull_request: 7,
                head_sha: SHA.into(),
                base_ref: "main".into(),
                head_ref: "f".into(),
                merge_group: None,
                push: None,
                template_ref: TemplateRef { name: "t".into() },
                approvals: vec![],
                overrides: vec![],
                retry: None,
            },
        );
        wf.status = Some(QmsWorkflowStatus {
            current_step: Some("final-review".into()),
            steps: vec![
                StepStatus {
                    name: "dor".into(),
                    phase: StepPhase::Succeeded,
                    ..StepStatus::default()
                },
                StepStatus {
                    name: "final-review".into(),
                    phase: StepPhase::WaitingForApproval,
                    ..StepStatus::default()
                },
            ],
            ..QmsWorkflowStatus::default()
        });
        wf
    }

    #[test]
    fn sha_must_be_the_current_head() {
        let wf = wf();
        assert_eq!(head_sha(&wf, None).unwrap(), SHA);
        assert_eq!(head_sha(&wf, Some("3F7C2A9")).unwrap(), SHA);
        for stale in [
            "3f7c2a",
            "9a8b7c6d5e4f",
            "3f7c2a9d41e8b6c05d9a7e1f2b3c4d5e6f708193",
        ] {
            let e = head_sha(&wf, Some(stale)).unwrap_err().to_string();
            assert!(e.contains(stale) && e.contains(SHA), "{e}");
        }
    }

    #[test]
    fn approval_step_is_the_waiting_step_or_a_named_known_one() {
        let wf = wf();
        assert_eq!(approval_step(&wf, None, None).unwrap(), "final-review");
        assert_eq!(approval_step(&wf, None, Some("dor")).unwrap(), "dor");
        let e = approval_step(&wf, None, Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"nope\"") && e.contains("dor, final-review"),
            "{e}"
        );
        let mut idle = wf.clone();
        idle.status.as_mut().unwrap().current_step = Some("dor".into());
        assert!(matches!(
            approval_step(&idle, None, None),
            Err(Error::NoManualStep { .. })
        ));
    }

    #[test]
    fn expiry_is_a_future_time_or_a_duration() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            rfc3339(parse_expires("24h", now).unwrap()),
            "2026-12-02T10:00:00Z"
        );
        assert_eq!(
            rfc3339(parse_expires("2026-12-01T12:30:00+02:00", now).unwrap()),
            "2026-12-01T10:30:00Z"
        );
        for bad in ["2026-11-30T00:00:00Z", "tomorrow", "0s", ""] {
            assert!(parse_expires(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn append_patch_tests_the_head_and_creates_a_missing_list_once() {
        let p = append_patch("/spec/approvals", true, SHA, json!({"x": 1}));
        assert_eq!(
            p,
            json!([
                {"op": "test", "path": "/spec/headSha", "value": SHA},
                {"op": "add", "path": "/spec/approvals/-", "value": {"x": 1}}
            ])
        );
        let p = append_patch("/spec/overrides", false, SHA, json!({"x": 1}));
        assert_eq!(
            p[1],
            json!({"op": "test", "path": "/spec/overrides", "value": null})
        );
        assert_eq!(
            p[2],
            json!({"op": "add", "path": "/spec/overrides", "value": [{"x": 1}]})
        );
    }

    #[test]
    fn retry_ids_are_new() {
        let now = Utc::now();
        let mut wf = wf();
        let id = retry_id(&wf, now, 5);
        assert!(id.len() <= 63, "{id}");
        wf.status.as_mut().unwrap().last_retry_id = Some(id.clone());
        assert_ne!(retry_id(&wf, now, 5), id);
        assert_eq!(
            retry_patch("i", Some("dor"), "bob"),
            json!({"spec": {"retry": {"id": "i", "by": "bob", "step": "dor"}}})
        );
        assert_eq!(
            retry_patch("i", None, "bob"),
            json!({"spec": {"retry": {"id": "i", "by": "bob", "step": null}}})
        );
    }

    #[test]
    fn the_same_decision_is_not_recorded_twice() {
        let mut wf = wf();
        let a = approval(
            "final-review".into(),
            Decision::Approve,
            "bob",
            "ok",
            SHA,
            Utc::now(),
        );
        assert!(!already_decided(&wf, &a));
        wf.spec.approvals.push(a.clone());
        assert!(already_decided(&wf, &a));
        let reject = Approval {
            decision: Decision::Reject,
            ..a
        };
        assert!(!already_decided(&wf, &reject));
    }
}
