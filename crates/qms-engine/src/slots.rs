//! The `maxConcurrentWorkflows` slots: which workflows hold one, which wait for one, and how a
//! waiting workflow's place in the queue is shown. Pure; the operator counts slots from the live
//! workflows in its cache with these rules (never from a counter, so a restart loses nothing).
//!
//! A slot bounds the **automated** work in progress — Jobs running, or about to be created — not
//! the number of open pull requests. So:
//!
//! | status | slot |
//! | --- | --- |
//! | never decided, or `INITIALIZED` (queued before its run starts) | waits |
//! | current step `Pending` (not begun: the run resumed after an approval, no slot was free) | waits |
//! | current step `Running` (its agents run, or wait for an agent's capacity) | holds |
//! | current step `Backoff` (the next attempt is due at a known time) | holds |
//! | current step `WaitingForApproval` (agents done, gates evaluated, waiting for a person) | none |
//! | terminal (`COMPLETED`, a failure state, `ERROR`) | none |
//!
//! Backoff holds its slot: the next attempt is automated work already scheduled (at most the
//! step's `maxDelay` away). Releasing it would put a transient failure's retry behind every queued
//! pull request, so at saturation a retry could wait indefinitely and the step's retry policy (and
//! its timeouts) would no longer mean what they say; it would also churn the queue on every attempt.
//!
//! Waiting for a person holds none: what can still happen there (the approval, a rejection, the
//! approval timeout, escalation, an override expiring) is decided without any Job. When the
//! workflow needs Jobs again it takes a slot like any waiting one: a new head SHA or a retry queues
//! in `INITIALIZED`; an approval followed by another step with agents leaves that step `Pending`
//! until a slot is free. An approval (or a rejection) that ends the run needs none.

use qms_api::{QmsWorkflowStatus, StepPhase, WorkflowState};

/// What a workflow with a given status needs of the slots (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotUse {
    /// Automated work is running or scheduled: counts against `maxConcurrentWorkflows`.
    Holds,
    /// Needs a slot before its automated work can start.
    Waits,
    /// Needs none: finished, or waiting only for a person.
    None,
}

/// The rule of the module docs. `None` status: never decided yet (waits).
pub fn slot_use(status: Option<&QmsWorkflowStatus>) -> SlotUse {
    let Some(st) = status else {
        return SlotUse::Waits;
    };
    if st.state.is_terminal() {
        return SlotUse::None;
    }
    if st.state == WorkflowState::Initialized {
        return SlotUse::Waits;
    }
    let current = st.steps.iter().find(|s| {
        !matches!(
            s.phase,
            StepPhase::Succeeded | StepPhase::Failed | StepPhase::Skipped
        )
    });
    match current.map(|s| s.phase) {
        Some(StepPhase::WaitingForApproval) => SlotUse::None,
        Some(StepPhase::Pending) => SlotUse::Waits,
        // Running, Backoff — and, conservatively, a started state with no unfinished step (the
        // next decision ends the run) or no steps recorded: counted, so the limit is never
        // exceeded.
        _ => SlotUse::Holds,
    }
}

/// Whether a workflow with this status holds a slot.
pub fn holds_slot(status: &QmsWorkflowStatus) -> bool {
    slot_use(Some(status)) == SlotUse::Holds
}

/// A waiting workflow's place in the slot queue (oldest first), as the operator counted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePlace {
    /// 1-based: 1 is the next workflow to get a slot.
    pub position: u64,
    /// Workflows waiting for a slot, this one included.
    pub waiting: u64,
    /// `maxConcurrentWorkflows`.
    pub limit: u32,
}

/// Numbers up to this are shown exactly; larger ones rounded to one significant digit.
pub const EXACT_UP_TO: u64 = 10;

/// `n` as the `Queued` condition shows it: exact up to [`EXACT_UP_TO`], else rounded to one
/// significant digit with a `~` (`~300`).
///
/// Why rounded: every freed slot moves every waiting workflow up by one. Showing the exact place
/// would rewrite the status of every waiting workflow on every freed slot (1,000 waiting, 1,000
/// writes per slot). Rounded, a workflow's message changes only when its place crosses a band —
/// about ten times per factor of ten it moves up — so one freed slot rewrites a few dozen statuses
/// at most, and a whole drain costs each workflow a few dozen writes instead of one per place.
/// Deterministic, so the same queue always gives the same message (the decision stays a fixed
/// point and an unchanged queue writes nothing, on the periodic requeue too).
pub fn shown(n: u64) -> String {
    if n <= EXACT_UP_TO {
        return n.to_string();
    }
    let mut unit = 1u64;
    while n / unit >= 10 {
        unit *= 10;
    }
    // Half up: 250 → 300, 249 → 200.
    let rounded = (n + unit / 2) / unit * unit;
    format!("~{rounded}")
}

/// The message of the `Queued=True` condition.
pub fn queued_message(place: Option<&QueuePlace>) -> String {
    match place {
        Some(p) => format!(
            "position {} of {} waiting for one of the {} workflow slots (maxConcurrentWorkflows)",
            shown(p.position),
            shown(p.waiting),
            p.limit
        ),
        None => "waiting for a free workflow slot".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qms_api::StepStatus;

    fn status(state: WorkflowState, phases: &[StepPhase]) -> QmsWorkflowStatus {
        QmsWorkflowStatus {
            state,
            run: 1,
            steps: phases
                .iter()
                .enumerate()
                .map(|(i, p)| StepStatus {
                    name: format!("s{i}"),
                    phase: *p,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_automated_work_holds_a_slot() {
        use StepPhase::*;
        use WorkflowState::*;
        assert_eq!(slot_use(None), SlotUse::Waits, "never decided");
        let fresh = QmsWorkflowStatus::default();
        assert_eq!(slot_use(Some(&fresh)), SlotUse::Waits, "INITIALIZED, run 0");
        let queued = status(Initialized, &[Pending, Pending]);
        assert_eq!(slot_use(Some(&queued)), SlotUse::Waits);
        let running = status(DorPending, &[Running, Pending]);
        assert_eq!(slot_use(Some(&running)), SlotUse::Holds);
        let backoff = status(DorPending, &[Backoff, Pending]);
        assert_eq!(slot_use(Some(&backoff)), SlotUse::Holds, "a retry is due");
        let waiting = status(FinalPending, &[Succeeded, WaitingForApproval]);
        assert_eq!(
            slot_use(Some(&waiting)),
            SlotUse::None,
            "waits for a person"
        );
        let mid = status(ProgressPending, &[Succeeded, WaitingForApproval, Pending]);
        assert_eq!(
            slot_use(Some(&mid)),
            SlotUse::None,
            "later steps do not count"
        );
        let resumed = status(ProgressPending, &[Succeeded, Succeeded, Pending]);
        assert_eq!(
            slot_use(Some(&resumed)),
            SlotUse::Waits,
            "approved, next step not begun"
        );
        let skipped_then_running = status(DodPending, &[Skipped, Failed, Running]);
        assert_eq!(slot_use(Some(&skipped_then_running)), SlotUse::Holds);
        for terminal in [Completed, FinalRejected, DorFailed, Error] {
            let st = status(terminal, &[Succeeded, Failed]);
            assert_eq!(slot_use(Some(&st)), SlotUse::None, "{terminal}");
        }
        let ending = status(FinalPending, &[Succeeded, Succeeded]);
        assert_eq!(slot_use(Some(&ending)), SlotUse::Holds, "conservative");
        assert!(holds_slot(&running) && !holds_slot(&waiting) && !holds_slot(&queued));
    }

    #[test]
    fn places_are_exact_when_near_and_rounded_when_far() {
        let cases = [
            (1, "1"),
            (10, "10"),
            (11, "~10"),
            (14, "~10"),
            (15, "~20"),
            (95, "~100"),
            (249, "~200"),
            (250, "~300"),
            (950, "~1000"),
            (12_345, "~10000"),
        ];
        for (n, want) in cases {
            assert_eq!(shown(n), want, "{n}");
        }
        let msg = queued_message(Some(&QueuePlace {
            position: 3,
            waiting: 950,
            limit: 50,
        }));
        assert_eq!(
            msg,
            "position 3 of ~1000 waiting for one of the 50 workflow slots (maxConcurrentWorkflows)"
        );
    }

    #[test]
    fn a_freed_slot_rewrites_few_messages() {
        // 1,000 waiting; one slot frees: everyone moves up one place. Count the messages that
        // change (each is one status write).
        let msg = |position, waiting| {
            queued_message(Some(&QueuePlace {
                position,
                waiting,
                limit: 50,
            }))
        };
        let changed = (2..=1000u64)
            .filter(|&p| msg(p, 1000) != msg(p - 1, 999))
            .count();
        // Exact places 2..=11 (10), then one band edge per ten places up to 100 (9) and per
        // hundred up to 1,000 (9), and the total did not cross a band: ~28, not 999.
        assert!(changed <= 30, "{changed} of 999 messages changed");
        assert!(changed >= 10, "the first ten are exact: {changed}");
        // Deciding again on an unchanged queue changes nothing.
        assert_eq!(msg(500, 1000), msg(500, 1000));
    }
}
