//! The one polling schedule of the executor's waits (staging, instances, the deployment
//! monitor, the cancel of a deployment): pauses from [`PollOptions`] (100 ms first, doubling up
//! to the poll interval), a stall timer that a wait resets when it sees progress, and
//! [`Event::Waiting`] reports. A pause ends early with [`Error::Cancelled`] when the wait has a
//! cancellation token and it fires; a rollback's wait has none (it is bounded by its timeout).
//!
//! Depends on: cf::PollOptions (the schedule), deploy::{event, error}. Must not: do I/O.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::Error;
use super::event::{Event, Reporter};
use crate::cf::PollOptions;

/// The first pause of a wait: staging and instance start often finish well within one poll
/// interval; polling sooner at first saves most of it.
pub const FIRST_POLL: Duration = Duration::from_millis(100);

/// One wait in progress: see the module docs.
pub(crate) struct Wait<'a> {
    opts: PollOptions,
    cancel: Option<&'a CancellationToken>,
    start: Instant,
    progress_at: Instant,
    next_pause: Duration,
}

impl<'a> Wait<'a> {
    /// A wait polling every `interval` at the most, stalled after `timeout` without progress,
    /// ended early by `cancel` (when given).
    pub(crate) fn new(
        interval: Duration,
        timeout: Duration,
        cancel: Option<&'a CancellationToken>,
    ) -> Self {
        let opts = PollOptions::new(interval, timeout).starting_at(FIRST_POLL);
        let now = Instant::now();
        Self {
            opts,
            cancel,
            start: now,
            progress_at: now,
            next_pause: opts.initial,
        }
    }

    /// Time since the wait began.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Something moved: the stall timer starts again.
    pub(crate) fn progressed(&mut self) {
        self.progress_at = Instant::now();
    }

    /// Something moved and a new phase begins: the stall timer and the pauses start again.
    pub(crate) fn restart(&mut self) {
        self.progressed();
        self.next_pause = self.opts.initial;
    }

    /// No progress for the timeout.
    pub(crate) fn stalled(&self) -> bool {
        self.progress_at.elapsed() >= self.opts.timeout
    }

    /// The next pause of the schedule (doubling up to the interval).
    fn next_pause(&mut self) -> Duration {
        let d = self.next_pause;
        self.next_pause = self.next_pause.saturating_mul(2).min(self.opts.interval);
        d
    }

    /// Sleeps for the next pause; cancellation wins over it.
    pub(crate) async fn pause(&mut self) -> Result<(), Error> {
        let d = self.next_pause();
        match self.cancel {
            Some(token) => tokio::select! {
                () = token.cancelled() => Err(Error::Cancelled),
                () = tokio::time::sleep(d) => Ok(()),
            },
            None => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }

    /// Reports what is being waited for, then pauses.
    pub(crate) async fn report_and_pause(
        &mut self,
        reporter: &mut dyn Reporter,
        app: &str,
        what: &str,
        detail: String,
    ) -> Result<(), Error> {
        reporter.report(Event::Waiting {
            app: app.to_string(),
            what: what.into(),
            elapsed: self.elapsed(),
            detail,
        });
        self.pause().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_interval() {
        let mut b = Wait::new(Duration::from_secs(1), Duration::from_secs(60), None);
        let ms: Vec<u128> = (0..6).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        let mut b = Wait::new(Duration::from_millis(50), Duration::from_secs(60), None);
        assert_eq!(b.next_pause(), Duration::from_millis(50));
    }
}
