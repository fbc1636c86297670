//! Delivery deduplication, first level: in memory.
//!
//! The durable record is in the cluster: the delivery key is written into the
//! `qms.creo.dev/deliveries` annotation of the QmsWorkflow *in the same write* as the change it
//! caused (one JSON patch guarded by resourceVersion, or the create itself). So a crash can never
//! leave "change stored, delivery not recorded" — and a redelivery after a restart finds its key
//! on the object and changes nothing. Deliveries that change no workflow (ignored events, replies
//! to unauthorized users, fork PRs waiting) are not recorded durably: applying them twice is
//! harmless (replies may repeat after a restart).
//!
//! This in-memory layer makes the common case cheap (GitHub's "Redeliver" button, or a burst of
//! duplicates) and serializes concurrent duplicates: only one of them is processed at a time.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::naming::DeliveryKey;

/// Keys remembered after completion (a few hours of traffic for a busy installation).
pub const REMEMBERED: usize = 10_000;

#[derive(Debug, Default)]
struct State {
    in_flight: HashSet<String>,
    done: HashSet<String>,
    order: VecDeque<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Deliveries {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
pub enum Claim {
    /// First time seen: process it, then call [`ClaimGuard::done`]. Dropping the guard without
    /// `done` (an error) forgets the key, so a redelivery is processed again.
    New(ClaimGuard),
    /// The same delivery is being processed right now.
    InFlight,
    /// Already processed.
    Done,
}

#[derive(Debug)]
pub struct ClaimGuard {
    key: String,
    state: Arc<Mutex<State>>,
    finished: bool,
}

impl Deliveries {
    pub fn claim(&self, key: &DeliveryKey) -> Claim {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.done.contains(key.as_str()) {
            return Claim::Done;
        }
        if !s.in_flight.insert(key.as_str().to_owned()) {
            return Claim::InFlight;
        }
        Claim::New(ClaimGuard {
            key: key.as_str().to_owned(),
            state: self.state.clone(),
            finished: false,
        })
    }
}

impl ClaimGuard {
    pub fn done(mut self) {
        self.finished = true;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight.remove(&self.key);
        if s.done.insert(self.key.clone()) {
            s.order.push_back(self.key.clone());
        }
        while s.order.len() > REMEMBERED {
            if let Some(old) = s.order.pop_front() {
                s.done.remove(&old);
            }
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if !self.finished {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.in_flight.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_lifecycle() {
        let d = Deliveries::default();
        let k = DeliveryKey::new(Some("1"), Some("2"), "abc");
        let Claim::New(g) = d.claim(&k) else {
            panic!("first claim must be new")
        };
        assert!(matches!(d.claim(&k), Claim::InFlight));
        drop(g); // failed: may be redelivered
        let Claim::New(g) = d.claim(&k) else {
            panic!("after a failure the key is free")
        };
        g.done();
        assert!(matches!(d.claim(&k), Claim::Done));
        // Another hook with the same delivery id is a different delivery.
        assert!(matches!(
            d.claim(&DeliveryKey::new(Some("9"), Some("2"), "abc")),
            Claim::New(_)
        ));
    }

    #[test]
    fn memory_is_bounded() {
        let d = Deliveries::default();
        for i in 0..(REMEMBERED + 10) {
            if let Claim::New(g) = d.claim(&DeliveryKey::new(None, None, &format!("d{i}"))) {
                g.done();
            }
        }
        let s = d.state.lock().unwrap();
        assert_eq!(s.done.len(), REMEMBERED);
        assert!(!s.done.contains("-:-:d0"));
    }
}
