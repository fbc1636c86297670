//! Repository-level tests, one binary: generated CRDs and their drift, the shipped examples, the
//! chart (install, values schema, alerts) with the real helm/kubectl/promtool, and the image's
//! dependency tree; on the real 1.20.2 control plane (`scripts/install-kube.sh`) the CRDs and
//! the differential kube-sim-vs-real tests. Run one module with `cargo test -p qms-tests --test it -- chart::`.
#![forbid(unsafe_code)]

mod chart;
mod crds;
mod crds_real;
mod differential;
mod examples;
mod image;
mod monitoring;
mod values_schema;
