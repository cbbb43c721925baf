//! A bounded polling helper used to wait for jobs, packages, builds and deployments.
//!
//! The first check happens at once, then one per `interval`, until the check says done or
//! `timeout` has passed (one last check is made at the deadline).
//!
//! Depends on: tokio time. Must not: wait without a bound.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::Error;

/// How often and how long to poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOptions {
    /// Time between two checks (the cf CLI uses 3 s).
    pub interval: Duration,
    /// Give up after this long.
    pub timeout: Duration,
    /// The first pause; each later one doubles, up to `interval`. Most jobs finish within a
    /// fraction of a second, so starting short saves most of an interval per wait.
    pub initial: Duration,
}

impl PollOptions {
    /// Options with the given interval and timeout (every pause is `interval`).
    pub const fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            initial: interval,
        }
    }

    /// The same options with the first pause `initial`, doubling up to `interval`.
    pub fn starting_at(mut self, initial: Duration) -> Self {
        self.initial = initial.min(self.interval);
        self
    }
}

impl Default for PollOptions {
    /// 3 s interval (the cf CLI's `DefaultPollingInterval`), 15 min timeout (its staging default).
    fn default() -> Self {
        Self::new(Duration::from_secs(3), Duration::from_secs(15 * 60))
    }
}

/// Calls `check` until it returns `Ok(Some(value))`, an error, or `opts.timeout` passes
/// ([`Error::PollTimeout`] naming `what`).
///
/// ```no_run
/// # async fn f(client: cf_zero_downtime::cf::Client, guid: cf_zero_downtime::cf::BuildGuid)
/// # -> Result<(), cf_zero_downtime::cf::Error> {
/// use cf_zero_downtime::cf::{poll_until, BuildState, PollOptions};
/// let build = poll_until(PollOptions::default(), "build to finish", || async {
///     let b = client.get_build(&guid).await?;
///     Ok((b.state != BuildState::Staging).then_some(b))
/// })
/// .await?;
/// # let _ = build; Ok(()) }
/// ```
pub async fn poll_until<T, F, Fut>(opts: PollOptions, what: &str, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Error>>,
{
    let deadline = Instant::now() + opts.timeout;
    let mut pause = opts.initial.min(opts.interval);
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::PollTimeout {
                what: what.to_owned(),
                timeout: opts.timeout,
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = pause.saturating_mul(2).min(opts.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn pauses_start_short_and_double_up_to_the_interval() {
        let start = Instant::now();
        let seen = std::sync::Mutex::new(Vec::new());
        let opts = PollOptions::new(Duration::from_secs(1), Duration::from_secs(60))
            .starting_at(Duration::from_millis(100));
        let v = poll_until(opts, "thing", || async {
            let mut s = seen.lock().unwrap();
            s.push(start.elapsed());
            Ok((s.len() == 6).then_some(()))
        })
        .await;
        assert!(v.is_ok());
        let ms: Vec<u128> = seen.lock().unwrap().iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 100, 300, 700, 1500, 2500]);
    }

    #[tokio::test(start_paused = true)]
    async fn returns_once_the_check_is_done() {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let v = poll_until(
            PollOptions::new(Duration::from_secs(3), Duration::from_secs(60)),
            "thing",
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                Ok((n == 3).then_some(n))
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
        // First check immediately, then two intervals.
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_deadline_after_a_last_check() {
        let calls = AtomicU32::new(0);
        let err = poll_until(
            PollOptions::new(Duration::from_secs(4), Duration::from_secs(10)),
            "job x to complete",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<Option<()>, Error>(None)
            },
        )
        .await
        .unwrap_err();
        // Checks at 0, 4, 8 and the deadline 10.
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(matches!(err, Error::PollTimeout { .. }));
        assert_eq!(
            err.to_string(),
            "timed out after 10s waiting for job x to complete"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_first_error() {
        let calls = AtomicU32::new(0);
        let err = poll_until(PollOptions::default(), "thing", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<Option<()>, Error>(Error::VersionUnknown)
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(matches!(err, Error::VersionUnknown));
    }
}
