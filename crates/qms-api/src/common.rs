//! Types shared by several resources: the workflow states of the spec (§2.2) and Kubernetes-style
//! conditions.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The eleven states of the QMS orchestration state machine (spec §2.2), spelled as the spec
/// spells them so that dashboards and people read the same words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowState {
    /// PR received, initial setup complete (also: waiting for a free slot).
    #[default]
    Initialized,
    DorPending,
    DorFailed,
    ProgressPending,
    ProgressBlocked,
    DodPending,
    DodFailed,
    FinalPending,
    FinalRejected,
    Completed,
    /// System error, requires manual intervention (an explicit retry).
    Error,
}

impl WorkflowState {
    pub const ALL: [WorkflowState; 11] = [
        Self::Initialized,
        Self::DorPending,
        Self::DorFailed,
        Self::ProgressPending,
        Self::ProgressBlocked,
        Self::DodPending,
        Self::DodFailed,
        Self::FinalPending,
        Self::FinalRejected,
        Self::Completed,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initialized => "INITIALIZED",
            Self::DorPending => "DOR_PENDING",
            Self::DorFailed => "DOR_FAILED",
            Self::ProgressPending => "PROGRESS_PENDING",
            Self::ProgressBlocked => "PROGRESS_BLOCKED",
            Self::DodPending => "DOD_PENDING",
            Self::DodFailed => "DOD_FAILED",
            Self::FinalPending => "FINAL_PENDING",
            Self::FinalRejected => "FINAL_REJECTED",
            Self::Completed => "COMPLETED",
            Self::Error => "ERROR",
        }
    }

    /// States a workflow stays in until something from outside happens: a new head SHA or an
    /// explicit retry (or, for COMPLETED, nothing at all).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::DorFailed
                | Self::ProgressBlocked
                | Self::DodFailed
                | Self::FinalRejected
                | Self::Completed
                | Self::Error
        )
    }

    /// Terminal states that mean "this run did not pass".
    pub fn is_failure(self) -> bool {
        self.is_terminal() && self != Self::Completed
    }
}

impl fmt::Display for WorkflowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A condition as Kubernetes API conventions define it (metav1.Condition), kept in a list-map keyed
/// by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// CamelCase condition type, e.g. `Ready`, `Queued`, `Escalated`.
    #[schemars(length(min = 1, max = 316))]
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
}

impl Condition {
    /// Sets `cond` in `conditions`, keeping `lastTransitionTime` when the status did not change
    /// (so repeating a write is a no-op and does not trigger another reconcile).
    pub fn upsert(conditions: &mut Vec<Condition>, cond: Condition) {
        match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
            Some(existing) => {
                let keep_time = existing.status == cond.status;
                let time = existing.last_transition_time.clone();
                *existing = cond;
                if keep_time {
                    existing.last_transition_time = time;
                }
            }
            None => conditions.push(cond),
        }
    }

    pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
        conditions.iter().find(|c| c.type_ == type_)
    }

    pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
        Self::find(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: ConditionStatus, reason: &str, at: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status,
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: at.into(),
        }
    }

    #[test]
    fn upsert_keeps_transition_time_when_status_is_unchanged() {
        let mut list = vec![cond(ConditionStatus::True, "A", "t1")];
        Condition::upsert(&mut list, cond(ConditionStatus::True, "B", "t2"));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].reason, "B");
        assert_eq!(list[0].last_transition_time, "t1");
        Condition::upsert(&mut list, cond(ConditionStatus::False, "C", "t3"));
        assert_eq!(list[0].last_transition_time, "t3");
    }

    #[test]
    fn states_serialize_as_the_spec_spells_them() {
        for s in WorkflowState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!(WorkflowState::Completed.is_terminal() && !WorkflowState::Completed.is_failure());
        assert!(WorkflowState::Error.is_failure());
        assert!(!WorkflowState::FinalPending.is_terminal());
    }
}
