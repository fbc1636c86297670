//! GitHub integration of qms-operator (spec §5.1, §5.2, §6): the Event Dispatcher (signed webhooks
//! in → QmsWorkflow changes) and the Integration Manager (workflow status → Check Runs and
//! `repository_dispatch` events out).
//!
//! Pure core, I/O at the edges:
//! - [`signature`], [`events`], [`commands`], [`intent`], [`checks::render`], [`checks::dispatch`]:
//!   no I/O, no clock.
//! - [`client`] + [`auth`]: GitHub REST via octocrab, with pacing, rate limits and backoff.
//! - [`checks::sync`]: desired vs. synced check runs → API calls (level-triggered).
//! - [`store`] + [`dedup`]: the Kubernetes side (QmsWorkflow create/patch, templates, delivery ids).
//! - [`server`]: the axum router for `POST /webhooks/github`.
//!
//! What the operator calls: [`GithubConfig::from_lookup`] (with the process environment, from its
//! own configuration loading), [`server::router`] (merged into its HTTP server),
//! [`checks::CheckSyncer::reconcile`] (from its GitHub check-run controller, for every workflow
//! change). See README.md.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cache;
pub mod checks;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config;
pub mod dedup;
pub mod events;
pub mod explain;
pub mod intent;
pub mod naming;
pub mod secret;
pub mod server;
pub mod signature;
pub mod store;
pub mod trace_context;

pub use checks::CheckSyncer;
pub use client::GithubClient;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Credentials, GithubConfig, Permission};
pub use secret::Secret;
pub use server::{WebhookState, router};
