//! Polling until something holds, bounded so a broken server fails the test instead of hanging it.

use std::future::Future;
use std::time::Duration;

/// How long [`eventually`], [`poll()`] and [`until`] wait before giving up.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long they sleep between two probes.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// Polls `probe` until it yields `Some` and returns that value; panics naming `what` after
/// [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(probe)
        .await
        .unwrap_or_else(|| panic!("gave up waiting for {what}"))
}

/// Polls `cond` until it is true; panics naming `what` after [`PATIENCE`].
pub async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, || {
        let c = cond();
        async move { c.await.then_some(()) }
    })
    .await
}

/// Polls `probe` until it yields `Some`; `None` when [`PATIENCE`] ran out (for tests that report
/// the last state they saw).
pub async fn poll<T, F, Fut>(probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_for(PATIENCE, INTERVAL, probe).await
}

/// Polls `probe` every `interval` until it yields `Some`; `None` once `patience` ran out. The
/// probe runs at least once, and once more at the deadline.
pub async fn poll_for<T, F, Fut>(patience: Duration, interval: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn returns_the_first_some() {
        let calls = AtomicU32::new(0);
        let v = eventually("the third probe", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n == 3).then_some(n * 10)
        })
        .await;
        assert_eq!(v, 30);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_patience() {
        let calls = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let v: Option<()> = poll_for(
            Duration::from_secs(1),
            Duration::from_millis(100),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                None
            },
        )
        .await;
        assert_eq!(v, None);
        assert!(start.elapsed() >= Duration::from_secs(1));
        // Probes at 0, 100, ..., 1000 ms.
        assert_eq!(calls.load(Ordering::SeqCst), 11);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "gave up waiting for the impossible")]
    async fn eventually_names_what_it_waited_for() {
        until("the impossible", || async { false }).await;
    }
}
