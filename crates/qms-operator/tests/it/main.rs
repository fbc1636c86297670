//! qms-operator's integration tests, one binary (one link of kube, kube-sim and the operator
//! instead of one per file). The harness in [`common`] starts a kube-sim (or a namespace on the
//! real control plane) per test and the operator in-process; [`fake_github`] is qms-github's fake
//! GitHub API (shared with the benches through `#[path]`).
//!
//! - `e2e`, `e2e_real`, `leader`, `leader_real`: the scenarios of `common/scenarios.rs` and
//!   `common/leader_scenarios.rs` on kube-sim and (`*_real`, needs `QMS_KUBE_BIN`) on a real
//!   Kubernetes 1.20.2 control plane; the real ones share one control plane per run.
//! - `github_e2e`, `github_queue`, `baselines_e2e`, `results_endpoint`: signed webhooks in, Check
//!   Runs out, against the fake GitHub.
//! - `agent_health`, `dashboard`, `live_config`, `tracing`: metrics, the Grafana dashboard's
//!   queries, config reload, OTLP trace export (its subscriber is scoped to its own runtime).
//!
//! Run one module with `cargo test -p qms-operator --test it -- e2e::`. A new test file
//! `tests/it/<name>.rs` becomes a module here (`mod <name>;`) and imports the harness with
//! `use crate::common::*;`.

mod common;
#[path = "../../../qms-github/tests/it/common/github.rs"]
mod fake_github;

mod agent_health;
mod baselines_e2e;
mod dashboard;
mod e2e;
mod e2e_real;
mod github_e2e;
mod github_e2e_real;
mod github_queue;
mod leader;
mod leader_real;
mod live_config;
mod results_endpoint;
mod tracing;
