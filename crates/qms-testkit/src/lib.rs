//! Test helpers shared by the workspace's test suites, in one home:
//!
//! - [`poll`]: the one poll-until helper ([`eventually`], [`poll()`], [`poll_for`], [`until`]) for
//!   tests that wait for a server, a controller or a process.
//! - [`fixtures`]: builders of the QMS resources (a [`QmsWorkflow`](qms_api::QmsWorkflow) by
//!   [`workflow()`], template steps, the seed's standard template, gates, agents, agent result
//!   documents) with the values the examples and the spec use.
//!
//! A **dev-dependency only**: `qms-testkit = { path = "../qms-testkit" }` under
//! `[dev-dependencies]`. It must never become a normal dependency of `qms-operator` (the image
//! test, `tests/tests/it/image.rs`, checks the operator's normal dependency tree). It depends on
//! `qms-api` and tokio's timer only, so any crate's tests can use it, including qms-engine's
//! unit tests (no cycle), kube-sim's (no QMS types needed for polling) and the operator's and
//! qms-github's integration tests:
//!
//! ```no_run
//! # async fn demo(client: impl Fn() -> Option<u32>) {
//! use qms_testkit::{eventually, fixtures};
//! let wf = fixtures::workflow("pr-7").namespace("qms").pull_request(7).build();
//! assert_eq!(wf.spec.pull_request, 7);
//! let n = eventually("the count to appear", || async { client() }).await;
//! # let _ = n;
//! # }
//! ```
//!
//! Users: kube-sim's, qms-engine's, qms-operator's (`tests/it/common`: `poll`/`eventually`/`until`
//! are [`poll_for`] with the harness's 90 s deadline), qms-github's (`workflow()` is
//! [`fixtures::workflow`]), kubectl-qms' and kube-real's integration tests. Left for a later step:
//! the poll loops still written out in single operator test modules and the `QmsWorkflow`
//! literals of the operator's unit tests.
#![forbid(unsafe_code)]

pub mod fixtures;
pub mod poll;

pub use poll::{INTERVAL, PATIENCE, eventually, poll, poll_for, until};
