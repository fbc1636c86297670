//! qms-engine's integration tests, one binary: the shipped examples, the standard template end to
//! end, and property tests of the invariants. The fixtures in [`support`] are shared with the unit
//! tests (`src/machine/tests.rs`) and the `decide` bench through `#[path]`.

mod support;

mod examples;
mod happy_path;
mod properties;
mod stored_results;
