//! kubectl-qms's integration tests, one binary: `plugin` drives the built `kubectl-qms` through
//! the real kubectl against kube-sim, `krew` checks the krew manifest and its release script.
//! Run one module with `cargo test -p kubectl-qms --test it -- plugin::`; a new file
//! `tests/it/<name>.rs` becomes a module here (`mod <name>;`).

mod krew;
mod plugin;
