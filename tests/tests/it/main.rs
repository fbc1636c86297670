//! Repository-level tests, one binary: generated CRDs and their drift, the shipped examples, the
//! chart (install, values schema, alerts) with the real helm/kubectl/promtool, and the image's
//! dependency tree. Run one module with `cargo test -p qms-tests --test it -- chart::`.
#![forbid(unsafe_code)]

mod chart;
mod crds;
mod examples;
mod image;
mod monitoring;
mod values_schema;
