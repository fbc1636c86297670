//! qms-dev's integration test, one binary: the README's first command end to end (`playground`).
//! A new file `tests/it/<name>.rs` becomes a module here (`mod <name>;`).

mod playground;
