//! Deterministic Job names and the labels on every task's Job.
//!
//! A Job name is a pure function of (workflow name, run, step, attempt, selector index), so a
//! restarted operator computes the same name, and creating it again answers AlreadyExists instead
//! of starting a second Job (tektoncd/pipeline #3656). Names are DNS-1123 labels of at most
//! [`MAX_JOB_NAME`] characters (the Job controller appends a 5+6 character suffix for Pod names,
//! which must stay ≤ 63). Every name ends with a short hash of the full tuple, so two different
//! tuples never collide even when the readable part had to be truncated or is ambiguous
//! (`wf "a-r1", step "x"` vs `wf "a", step "r1-x"`).

use crate::hash;

pub const MAX_JOB_NAME: usize = 52;
const MAX_LABEL_VALUE: usize = 63;

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "qms-operator";
pub const LABEL_WORKFLOW: &str = "qms.creo.dev/workflow";
pub const LABEL_RUN: &str = "qms.creo.dev/run";
pub const LABEL_STEP: &str = "qms.creo.dev/step";
pub const LABEL_ATTEMPT: &str = "qms.creo.dev/attempt";
pub const LABEL_AGENT: &str = "qms.creo.dev/agent";
pub const LABEL_HEAD_SHA: &str = "qms.creo.dev/head-sha";

/// The Job name of one task.
pub fn job_name(workflow: &str, run: u32, step: &str, attempt: u32, selector: usize) -> String {
    let (run_s, attempt_s, sel_s) = (run.to_string(), attempt.to_string(), selector.to_string());
    let digest = hash::short(&[workflow, &run_s, step, &attempt_s, &sel_s], 6);
    let tail = format!("r{run}-a{attempt}-{selector}-{digest}");
    let room = MAX_JOB_NAME.saturating_sub(tail.len() + 1);
    let head = dns_label(&format!("{workflow}-{step}"), room);
    if head.is_empty() {
        format!("qms-{tail}")
            .chars()
            .take(MAX_JOB_NAME)
            .collect::<String>()
    } else {
        format!("{head}-{tail}")
    }
}

/// The value of the workflow label: the name when it fits, else a truncated name plus a hash, so
/// selecting Jobs by this label never returns another workflow's Jobs.
pub fn workflow_label(workflow: &str) -> String {
    label_value(workflow)
}

/// A valid label value for any input: kept as is when valid, else sanitized and, when that
/// changed or truncated it, suffixed with a hash of the original (so distinct inputs stay distinct).
pub fn label_value(raw: &str) -> String {
    if is_valid_label_value(raw) {
        return raw.to_owned();
    }
    let digest = hash::short(&[raw], 8);
    let room = MAX_LABEL_VALUE - digest.len() - 1;
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = trim_non_alnum(&cleaned.chars().take(room).collect::<String>());
    if cleaned.is_empty() {
        digest
    } else {
        format!("{cleaned}-{digest}")
    }
}

/// Kubernetes label value rule: ≤ 63 chars, `[A-Za-z0-9._-]`, alphanumeric at both ends (or empty).
pub fn is_valid_label_value(v: &str) -> bool {
    v.len() <= MAX_LABEL_VALUE
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && (v.is_empty()
            || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric())))
}

pub use qms_api::names::is_dns_label;

fn dns_label(raw: &str, max: usize) -> String {
    let lowered: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    trim_non_alnum(&lowered.chars().take(max).collect::<String>())
}

fn trim_non_alnum(s: &str) -> String {
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_names_are_readable() {
        let n = job_name("pr-42", 1, "dor-validation", 2, 0);
        assert!(n.starts_with("pr-42-dor-validation-r1-a2-0-"), "{n}");
        assert!(is_dns_label(&n));
    }

    #[test]
    fn ambiguous_readable_parts_still_differ() {
        assert_ne!(
            job_name("a-r1", 1, "x", 1, 0),
            job_name("a", 1, "r1-x", 1, 0)
        );
    }

    #[test]
    fn label_values_are_sanitized_and_unique() {
        assert_eq!(label_value("pr-42"), "pr-42");
        let long = "x".repeat(100);
        let v = label_value(&long);
        assert!(is_valid_label_value(&v) && v.len() <= 63);
        assert_ne!(v, label_value(&"x".repeat(101)));
        assert!(is_valid_label_value(&label_value("-weird/value-")));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn job_names_are_valid_and_injective(
            wf in "[a-z0-9][-a-z0-9.]{0,120}", step in "[a-z0-9][-a-z0-9]{0,39}",
            run in 0u32..10_000, attempt in 0u32..30, sel in 0usize..16,
            other in 0u32..10_000,
        ) {
            let n = job_name(&wf, run, &step, attempt, sel);
            prop_assert!(n.len() <= MAX_JOB_NAME && is_dns_label(&n), "{}", n);
            prop_assert_eq!(&n, &job_name(&wf, run, &step, attempt, sel));
            if other != run {
                prop_assert_ne!(n, job_name(&wf, other, &step, attempt, sel));
            }
        }
    }
}
