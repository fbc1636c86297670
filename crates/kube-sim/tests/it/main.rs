//! kube-sim's integration tests, one binary (one link of kube and the sim instead of one per file).
//! `api_*`: the API server alone over HTTP (helpers in [`support`]); `kubectl_*`, `helm_chart`,
//! `runtime_*`: real kubectl/helm and kube-runtime against a running sim (helpers in [`tools`]).
//! Run one module with `cargo test -p kube-sim --test it -- api_crd::`.
#![recursion_limit = "256"]

mod support;
mod tools;

mod api_crd;
mod api_crud;
mod api_events;
mod api_faults;
mod api_gc;
mod api_misc;
mod api_patch;
mod api_state;
mod api_watch;
mod helm_chart;
mod kubectl_crd;
mod kubectl_jobs;
mod runtime_controller;
mod runtime_jobs;
mod runtime_pods;
