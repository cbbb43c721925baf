//! How the simulator stops. One graceful path, whatever asks for it (Ctrl-C, SIGTERM,
//! SIGHUP, [`SimHandle::shutdown`](super::SimHandle::shutdown) in tests):
//!
//! 1. the API server and the router stop accepting, the reconcile loop ends, and nothing new
//!    is started;
//! 2. every instance stops at once, without the route-propagation linger of a normal stop:
//!    static servers finish their in-flight requests (up to 5 s), process instances get
//!    SIGTERM and `kill_grace` to end, then SIGKILL (with everything they started);
//! 3. the work directory (extracted droplets, process records) is removed.
//!
//! Being asked again during the graceful stop ("hurried") ends every instance at once with
//! SIGKILL and still removes the work directory. What the simulator cannot do itself (it was
//! SIGKILLed) its instances' guards and the next simulator's sweep do (see `procs`).
//!
//! Depends on: tokio (signals, time). Must not: print (callers say what happens).

use std::future::Future;
use std::time::Duration;

use super::Shared;

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every instance got its grace period.
    Gracefully,
    /// Hurried: what still ran was killed at once.
    AtOnce,
}

/// Beyond `kill_grace` (and the 5 s of static servers), how long a graceful stop may take
/// before it is hurried anyway.
const SLACK: Duration = Duration::from_secs(5);

/// How long the hurried stop waits for the instances' tasks (each ends its process within
/// about 5 s).
const HURRIED_BOUND: Duration = Duration::from_secs(10);

/// Stops the simulator gracefully, hurried when `now` resolves first; removes the work
/// directory once the instances have ended.
pub(crate) async fn stop(shared: &Shared, now: impl Future<Output = ()>) -> Stopped {
    shared.cancel.cancel();
    shared.tasks.close();
    let bound = shared
        .config
        .kill_grace
        .max(Duration::from_secs(5))
        .saturating_add(SLACK);
    let mut stopped = Stopped::Gracefully;
    let ended = tokio::select! {
        () = shared.tasks.wait() => true,
        () = now => {
            stopped = Stopped::AtOnce;
            false
        }
        () = tokio::time::sleep(bound) => {
            tracing::warn!("the simulator did not stop within {bound:?}; ending what is left");
            false
        }
    };
    if !ended {
        shared.hurry.cancel();
        if tokio::time::timeout(HURRIED_BOUND, shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("simulator tasks did not end within {HURRIED_BOUND:?}");
        }
    }
    shared.remove_work_dir();
    stopped
}

/// The signals that stop the simulator (SIGINT, SIGTERM, SIGHUP; Ctrl-C where there are no
/// Unix signals), as one stream. Install it before starting the simulator, so that a signal
/// that comes during the start is not lost.
#[derive(Debug)]
pub struct StopSignals {
    #[cfg(unix)]
    streams: Vec<(tokio::signal::unix::Signal, &'static str)>,
}

impl StopSignals {
    /// Installs the handlers (a signal whose handler cannot be installed keeps its default
    /// action). Needs a tokio runtime with I/O enabled.
    pub fn install() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = [
                (SignalKind::interrupt(), "SIGINT"),
                (SignalKind::terminate(), "SIGTERM"),
                (SignalKind::hangup(), "SIGHUP"),
            ]
            .into_iter()
            .filter_map(|(kind, name)| match signal(kind) {
                Ok(s) => Some((s, name)),
                Err(e) => {
                    tracing::warn!("cannot handle {name}: {e}");
                    None
                }
            })
            .collect();
            StopSignals { streams }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Waits for the next stopping signal; returns its name (for ever when none could be
    /// installed).
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            if self.streams.is_empty() {
                std::future::pending::<()>().await;
            }
            let waits = self.streams.iter_mut().map(|(s, name)| {
                let name: &'static str = name;
                Box::pin(async move {
                    s.recv().await;
                    name
                })
            });
            futures::future::select_all(waits).await.0
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            "Ctrl-C"
        }
    }
}
