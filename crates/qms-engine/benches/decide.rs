//! How much one decision costs: `cargo bench -p qms-engine --bench decide`.
//! Prints numbers (no assertions): the cost of `decide` on a workflow in the middle of a step,
//! on an idle (fixed-point) workflow, and of a whole standard review from start to COMPLETED.

#[path = "../tests/it/support.rs"]
mod support;

use std::hint::black_box;
use std::time::Instant;

use qms_api::WorkflowState;
use support::World;

fn per_call(label: &str, iterations: u32, mut f: impl FnMut()) {
    f(); // warm-up
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let each = start.elapsed() / iterations;
    println!(
        "{label:<48} {:>10.1} µs/op  ({iterations} iterations)",
        each.as_secs_f64() * 1e6
    );
}

/// A whole review: every step's Jobs succeed, the final step is approved.
fn full_review() -> (World, u32) {
    let mut w = World::standard();
    let mut decisions = 0;
    for step in [
        "dor-validation",
        "progress-reviews",
        "dod-validation",
        "final-review",
    ] {
        w.settle();
        decisions += 1;
        w.advance(5);
        w.pass_step(step);
        w.settle();
        decisions += 1;
    }
    w.approve("final-review", qms_api::Decision::Approve, "bench");
    w.settle();
    decisions += 1;
    (w, decisions)
}

fn main() {
    let iterations: u32 = std::env::var("QMS_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);

    // Mid-step: progress-reviews has two running Jobs.
    let mut mid = World::standard();
    mid.settle();
    mid.pass_step("dor-validation");
    mid.settle();
    assert_eq!(
        mid.state(),
        WorkflowState::ProgressPending,
        "bench fixture drifted"
    );
    per_call("decide, two tasks running (no change)", iterations, || {
        black_box(mid.decide());
    });

    // A completed review: the cost every resync pays for finished workflows.
    let (done, decisions) = full_review();
    assert_eq!(
        done.state(),
        WorkflowState::Completed,
        "bench fixture drifted"
    );
    per_call(
        "decide, COMPLETED workflow (fixed point)",
        iterations,
        || {
            black_box(done.decide());
        },
    );

    let runs = (iterations / 10).max(1);
    per_call("whole standard review, start to COMPLETED", runs, || {
        black_box(full_review());
    });
    println!("decisions per whole review (settled rounds): {decisions}");
}
