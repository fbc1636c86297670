//! The state machine of spec §2.2 and the step semantics: [`decide`].
//!
//! One decision works on a copy of the status and repeats "advance the current step" until
//! nothing changes any more, so its output is a fixed point: deciding again on the written status
//! with the same world changes nothing and emits nothing. Every event is emitted by the code that
//! performs the transition causing it, which is why events are never repeated.

mod ctx;
mod finalize;
mod plan;
mod run;
mod step;
mod tasks;

use crate::action::Decision;
use crate::observe::Observed;

pub use plan::states_by_position;

use ctx::Ctx;

/// Poll interval while waiting for something outside the workflow that sends no notification
/// of its own: a free workflow slot or a free agent.
pub const WAIT_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a task's Job may be absent from the cache after the task started before it counts as
/// lost (right after CreateJob the informer may not have seen it yet).
pub const JOB_LOST_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Upper bound of advance rounds in one decision (each round moves at least one step or task;
/// the bound only guards against a bug turning into an endless loop).
const MAX_ROUNDS: usize = 1000;

/// Whether a workflow with this status holds one of the `maxConcurrentWorkflows` slots: its run
/// has automated work running or scheduled (the rule: [`crate::slots`]).
pub fn holds_slot(status: &qms_api::QmsWorkflowStatus) -> bool {
    crate::slots::holds_slot(status)
}

/// Decides the next status and actions for one workflow. Pure: same input, same output.
pub fn decide(observed: &Observed<'_>) -> Decision {
    let mut ctx = Ctx::new(observed);
    let template_name = observed.workflow.spec.template_ref.name.clone();
    let plan = plan::build(
        &template_name,
        observed.template,
        observed.agents,
        observed.config,
    );
    let remedied = run::remediate(&mut ctx, plan.as_ref().ok());
    match &plan {
        Err(e) => {
            // A template that broke after the run ended does not reopen the run.
            if !ctx.st.state.is_terminal() || remedied {
                if ctx.st.run == 0 {
                    run::new_run(&mut ctx, None, 0, "Started");
                }
                ctx.fatal = Some(("ConfigurationError".to_owned(), e.clone()));
            }
        }
        Ok(plan) => {
            if ctx.st.run == 0 {
                run::new_run(&mut ctx, Some(plan), 0, "Started");
            }
            let mut started = false;
            if ctx.st.state == qms_api::WorkflowState::Initialized || ctx.needs_start {
                started = run::start_or_queue(&mut ctx, plan);
            }
            if started || (!ctx.queued && !ctx.st.state.is_terminal()) {
                drive(&mut ctx, plan);
            }
        }
    }
    if let Some((reason, message)) = ctx.fatal.take() {
        run::enter_error(&mut ctx, plan.as_ref().ok(), &reason, &message);
    }
    finalize::sweep_jobs(&mut ctx);
    finalize::bookkeeping(&mut ctx, plan.as_ref().ok());
    let requeue_after = finalize::requeue_after(&ctx, plan.as_ref().ok());
    Decision {
        status: ctx.st,
        actions: ctx.actions,
        requeue_after,
    }
}

/// Advances the current step until nothing changes (or the run ends or a fault is found).
fn drive(ctx: &mut Ctx<'_, '_>, plan: &plan::Plan<'_>) {
    for _ in 0..MAX_ROUNDS {
        let before = ctx.st.clone();
        match run::current_step(ctx, plan) {
            Some(i) => step::advance(ctx, plan, i),
            None => run::finish(ctx, plan),
        }
        if ctx.fatal.is_some() || ctx.st.state.is_terminal() || ctx.st == before {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
