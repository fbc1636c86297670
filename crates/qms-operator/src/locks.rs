//! The std mutex helper every module uses (no module depends on `context` just for it).

use std::sync::{Mutex, MutexGuard};

/// Locks a std mutex, recovering the data if a panicking thread poisoned it (the data are caches
/// of derived facts, always safe to keep using).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
