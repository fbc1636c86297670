//! The pure decision logic of qms-operator.
//!
//! Given a workflow (spec + status), its template, the gates and agents it uses and what has been
//! observed in the cluster (the workflow's Jobs and their results, the agents' live load, the time),
//! [`decide`] returns the next status and the actions to take. No kube client, no GitHub client, no
//! tokio, no clock, no randomness: the same input always gives the same output, which is what makes
//! the operator restart-safe (it re-derives everything from `.status` and live Jobs) and lets every
//! transition be tested without a cluster.
//!
//! Crate layout (one home per component of the spec):
//! - `observe`: the input types ([`Observed`], [`JobObservation`], [`AgentView`]).
//! - `action`: the output types ([`Decision`], [`Action`], [`TaskSpec`], [`EngineEvent`]).
//! - `machine`: the state machine of spec §2.2 and the step semantics ([`decide`]).
//! - `gates`: the quality gate processor of spec §4 (operators, units, overrides, fail closed).
//! - `selection`: the agent coordinator's choice of agent (capability, capacity, priority, health).
//! - `payload`: the task payload of spec §3.2; `result`: parsing of agents' results.
//! - `backoff`: exponential backoff with deterministic jitter.
//! - `slots`: which workflows hold a `maxConcurrentWorkflows` slot, and the queue's message.
//! - `naming`: deterministic Job names and task labels.
//!
//! The semantic choices are described in the crate's README.md.
#![forbid(unsafe_code)]

// Lets the shared test fixtures (tests/it/support.rs) name this crate the same way from unit tests.
#[cfg(test)]
extern crate self as qms_engine;

pub mod action;
pub mod backoff;
pub mod gates;
mod hash;
pub mod machine;
pub mod naming;
pub mod observe;
pub mod payload;
pub mod result;
pub mod selection;
pub mod slots;
mod time;
pub mod units;

pub use action::{Action, Decision, EngineEvent, EventType, TaskSpec};
pub use machine::decide;
pub use observe::{AgentView, EngineConfig, JobObservation, JobPhase, Observed};
