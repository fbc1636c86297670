//! Property tests of the invariants, over random sequences of observations: Jobs appearing,
//! succeeding, failing, disappearing; time advancing; approvals; new SHAs; retries; restarts
//! (re-deciding from the last written status) and lost status writes.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use qms_api::{Decision as Verdict, Escalation, RetryPolicy, RetryRequest, WorkflowState};
use qms_engine::{Action, JobPhase};
use support::*;

#[derive(Clone, Debug)]
enum Op {
    /// Advance the clock by this many seconds.
    Advance(u16),
    /// Advance the clock to the engine's requested requeue time.
    AdvanceToRequeue,
    /// Finish the n-th live Job with an outcome.
    Finish(usize, Outcome),
    /// The n-th live Job disappears (deleted by someone, TTL, node loss).
    Vanish(usize),
    Approve(bool),
    NewSha,
    Retry,
    /// The operator restarted and the last status write was lost (Jobs it created remain).
    LoseLastWrite,
    ToggleSlot,
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Good,
    BadGate,
    Fail,
    NoResult,
    Malformed,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        12 => Just(Outcome::Good),
        1 => Just(Outcome::BadGate),
        1 => Just(Outcome::Fail),
        1 => Just(Outcome::NoResult),
        1 => Just(Outcome::Malformed),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u16..400).prop_map(Op::Advance),
        3 => Just(Op::AdvanceToRequeue),
        8 => (0usize..4, outcome()).prop_map(|(i, o)| Op::Finish(i, o)),
        1 => (0usize..4).prop_map(Op::Vanish),
        2 => any::<bool>().prop_map(Op::Approve),
        1 => Just(Op::NewSha),
        1 => Just(Op::Retry),
        1 => Just(Op::LoseLastWrite),
        1 => Just(Op::ToggleSlot),
    ]
}

/// Random variations of the standard template: timeouts, retry policies, escalation, capacity.
#[derive(Clone, Debug)]
struct Shape {
    timeouts: [u16; 4],
    attempts: [u32; 4],
    escalate_after: Option<u16>,
    capacity: u32,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop::array::uniform4(30u16..900),
        prop::array::uniform4(1u32..4),
        prop::option::of(10u16..600),
        1u32..3,
    )
        .prop_map(|(timeouts, attempts, escalate_after, capacity)| Shape {
            timeouts,
            attempts,
            escalate_after,
            capacity,
        })
}

fn world(shape: &Shape) -> World {
    let mut w = World::standard();
    let t = w.template.as_mut().expect("standard template");
    for (i, s) in t.steps.iter_mut().enumerate() {
        s.timeout = Some(dur(&format!("{}s", shape.timeouts[i])));
        s.retry_policy = Some(RetryPolicy {
            max_attempts: shape.attempts[i],
            initial_delay: dur("5s"),
            max_delay: dur("60s"),
            ..RetryPolicy::default()
        });
    }
    t.steps[3].escalation = Some(Escalation {
        enabled: shape.escalate_after.is_some(),
        after: shape.escalate_after.map(|s| dur(&format!("{s}s"))),
    });
    for a in w.agents.values_mut() {
        a.spec.load_capacity = shape.capacity;
    }
    w
}

fn live_jobs(w: &World) -> Vec<String> {
    w.jobs
        .values()
        .filter(|j| j.phase == JobPhase::Active)
        .map(|j| j.name.clone())
        .collect()
}

fn finish(w: &mut World, name: &str, o: Outcome) {
    let agent = w.jobs[name]
        .labels
        .get("qms.creo.dev/agent")
        .cloned()
        .unwrap_or_default();
    match o {
        Outcome::Good => w.finish_job(
            name,
            JobPhase::Succeeded,
            Some(result_json(true, &good_metrics(&agent))),
        ),
        Outcome::BadGate => {
            let bad: Vec<_> = good_metrics(&agent)
                .into_iter()
                .map(|(k, v)| (k, v - 1000.0))
                .collect();
            w.finish_job(name, JobPhase::Succeeded, Some(result_json(true, &bad)))
        }
        Outcome::Fail => w.finish_job(name, JobPhase::Failed, None),
        Outcome::NoResult => w.finish_job(name, JobPhase::Succeeded, None),
        Outcome::Malformed => {
            w.finish_job(name, JobPhase::Succeeded, Some("{\"status\":1}".into()))
        }
    }
}

/// Keeps each agent's live load in sync with the simulated Jobs (what the operator derives).
fn sync_load(w: &mut World) {
    let mut load: BTreeMap<String, u32> = BTreeMap::new();
    for j in w.jobs.values().filter(|j| j.phase == JobPhase::Active) {
        if let Some(a) = j.labels.get("qms.creo.dev/agent") {
            *load.entry(a.clone()).or_default() += 1;
        }
    }
    for (name, a) in w.agents.iter_mut() {
        a.running = load.get(name).copied().unwrap_or(0);
    }
}

fn check_invariants(
    w: &World,
    d: &qms_engine::Decision,
    tuples: &mut BTreeMap<(u32, String, u32, String), BTreeSet<String>>,
) -> Result<(), TestCaseError> {
    // Fixed point: deciding again on the result changes nothing and emits nothing.
    let mut again_wf = w.wf.clone();
    again_wf.status = Some(d.status.clone());
    let mut probe = World::standard();
    probe.wf = again_wf;
    probe.template = w.template.clone();
    probe.gates = w.gates.clone();
    probe.agents = w.agents.clone();
    probe.jobs = w.jobs.clone();
    probe.now = w.now;
    probe.slot_available = w.slot_available;
    let again = probe.decide();
    prop_assert_eq!(&again.status, &d.status);
    prop_assert!(
        again
            .actions
            .iter()
            .all(|a| !matches!(a, Action::CreateJob(_) | Action::Emit(_))),
        "second decision acted: {:?}",
        again.actions
    );
    // One Job name per (run, step, attempt, selector).
    for a in &d.actions {
        if let Action::CreateJob(spec) = a {
            let sel = spec.job_name.rsplit('-').nth(1).unwrap_or("").to_owned();
            let names = tuples
                .entry((spec.run, spec.step.clone(), spec.attempt, sel))
                .or_default();
            names.insert(spec.job_name.clone());
            prop_assert_eq!(names.len(), 1, "two Jobs for one task: {:?}", names);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// Terminal states are left only on a new SHA or an explicit retry; decide is a fixed point;
    /// no task gets two Jobs; no task is started twice; agents never exceed their capacity.
    #[test]
    fn invariants_hold_over_random_observations(shape in shape(), ops in prop::collection::vec(op(), 1..120)) {
        let mut w = world(&shape);
        let mut tuples = BTreeMap::new();
        let mut retry_n = 0;
        let mut sha_n = 0;
        let mut last_status = None;
        let mut ever_created: BTreeSet<String> = BTreeSet::new();
        let mut d = w.step_once();
        check_invariants(&w, &d, &mut tuples)?;
        for op in ops {
            let before = w.state();
            let mut remedy = false;
            let mut lost_write = false;
            match op {
                Op::Advance(s) => w.advance(i64::from(s)),
                Op::AdvanceToRequeue => {
                    if let Some(r) = d.requeue_after {
                        w.now += chrono::Duration::from_std(r).unwrap_or_default();
                    }
                }
                Op::Finish(i, o) => {
                    let live = live_jobs(&w);
                    if !live.is_empty() {
                        let name = live[i % live.len()].clone();
                        finish(&mut w, &name, o);
                    }
                }
                Op::Vanish(i) => {
                    let live = live_jobs(&w);
                    if !live.is_empty() {
                        let name = live[i % live.len()].clone();
                        w.jobs.remove(&name);
                    }
                }
                Op::Approve(yes) => {
                    let v = if yes { Verdict::Approve } else { Verdict::Reject };
                    w.approve("final-review", v, "reviewer");
                }
                Op::NewSha => {
                    sha_n += 1;
                    w.wf.spec.head_sha = format!("{:07x}", 0xabc0000 + sha_n);
                    remedy = true;
                }
                Op::Retry => {
                    retry_n += 1;
                    w.wf.spec.retry = Some(RetryRequest { id: format!("r{retry_n}"), step: None, by: None });
                    remedy = true;
                }
                Op::LoseLastWrite => {
                    if let Some(s) = last_status.clone() {
                        w.wf.status = Some(s);
                        lost_write = true;
                    }
                }
                Op::ToggleSlot => w.slot_available = !w.slot_available,
            }
            sync_load(&mut w);
            let reverted = w.state();
            last_status = w.wf.status.clone();
            d = w.decide();
            for a in &d.actions {
                if let Action::CreateJob(spec) = a {
                    // Re-creating a name is only possible after the status that recorded it was
                    // lost, and then it is the same Job (AlreadyExists), never a second one.
                    prop_assert!(
                        lost_write || !ever_created.contains(&spec.job_name),
                        "{} started twice", spec.job_name
                    );
                    ever_created.insert(spec.job_name.clone());
                }
            }
            w.apply(&d);
            check_invariants(&w, &d, &mut tuples)?;
            if reverted.is_terminal() && w.state() != reverted {
                prop_assert!(remedy || lost_write && before != reverted,
                    "left {:?} for {:?} without a new SHA or retry", reverted, w.state());
            }
            sync_load(&mut w);
            for (name, a) in &w.agents {
                prop_assert!(a.running <= a.spec.load_capacity, "{} over capacity", name);
            }
        }
    }

    /// Without outside help beyond Jobs finishing (or never finishing) and time passing, every
    /// run reaches a terminal state within its timeouts × attempts plus backoffs, and the engine
    /// always says when to look again while it waits for time (it never hangs).
    #[test]
    fn every_run_terminates_within_its_time_bounds(
        shape in shape(),
        outcomes in prop::collection::vec(
            prop_oneof![1 => Just(None), 6 => outcome().prop_map(Some)], 64),
        approve in prop::option::of(any::<bool>()),
        jumps in prop::collection::vec(1u16..120, 64),
    ) {
        let mut w = world(&shape);
        let start = w.now;
        // Bound: each attempt of each step may take its whole timeout, each backoff at most
        // maxDelay × (1 + jitter); plus the lost-Job grace per attempt.
        let mut bound = Duration::ZERO;
        for i in 0..4 {
            let n = shape.attempts[i];
            bound += Duration::from_secs(u64::from(shape.timeouts[i]) + 30) * n;
            bound += Duration::from_secs(72) * (n - 1);
        }
        let mut next_outcome = outcomes.iter().cycle();
        let mut jump = jumps.iter().cycle();
        let mut handled: BTreeSet<String> = BTreeSet::new();
        let mut d = w.step_once();
        for _ in 0..3000 {
            if w.state().is_terminal() {
                break;
            }
            // Jobs finish as chosen (None: the Job runs forever).
            for name in live_jobs(&w) {
                if handled.insert(name.clone())
                    && let Some(Some(o)) = next_outcome.next()
                {
                    finish(&mut w, &name, *o);
                }
            }
            if let Some(yes) = approve
                && w.step("final-review").phase == qms_api::StepPhase::WaitingForApproval
                && w.wf.spec.approvals.is_empty()
            {
                let v = if yes { Verdict::Approve } else { Verdict::Reject };
                w.approve("final-review", v, "reviewer");
            }
            let changed_by_jobs = w.decide();
            let progress = changed_by_jobs.status != d.status;
            w.apply(&changed_by_jobs);
            d = changed_by_jobs;
            if progress {
                continue;
            }
            match d.requeue_after {
                Some(r) => {
                    let j = Duration::from_secs(u64::from(*jump.next().unwrap_or(&1)));
                    w.now += chrono::Duration::from_std(r.min(j)).unwrap_or_default();
                }
                None => prop_assert!(
                    !live_jobs(&w).is_empty() && w.jobs.values().any(|j| j.phase == JobPhase::Active),
                    "hang: nothing due and nothing running in {:?}", w.state()
                ),
            }
        }
        prop_assert!(w.state().is_terminal(), "not terminal: {:?}", w.state());
        let took = (w.now - start).to_std().unwrap_or_default();
        prop_assert!(took <= bound, "took {:?} > bound {:?}", took, bound);
        prop_assert!(w.state() != WorkflowState::Error);
    }
}
