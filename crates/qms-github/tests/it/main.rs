//! qms-github's integration tests, one binary (one link of kube, kube-sim and wiremock instead of
//! one per file). Helpers in [`common`]: payload fixtures (`tests/fixtures`), workflows at a given
//! progress, and the fake GitHub API (`common/github.rs`, also used by qms-operator's tests and
//! benches through `#[path]`).
//!
//! - `intent`, `render`, `never_panics`: the pure parts (payload → decision, check-run text,
//!   property tests of the parsers facing the network).
//! - `sync`, `webhook`, `webhook_cache`: the check-run sync against the fake GitHub and the
//!   webhook router against kube-sim.
//!
//! Run one module with `cargo test -p qms-github --test it -- webhook::`. A new test file
//! `tests/it/<name>.rs` becomes a module here (`mod <name>;`) and imports the helpers with
//! `use crate::common::*;`.

mod common;

mod intent;
mod never_panics;
mod render;
mod sync;
mod webhook;
mod webhook_cache;
