//! kube-real's integration tests, one binary: the harness itself on a real control plane
//! (`control_plane`, needs `QMS_KUBE_BIN`). Run with `cargo test -p kube-real --test it`; a new
//! file `tests/it/<name>.rs` becomes a module here (`mod <name>;`).

mod control_plane;
