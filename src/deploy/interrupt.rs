//! How a user stops a deploy, in two stages.
//!
//! The cf CLI has no signal handler while a plugin runs: Ctrl-C ends cf (and its RPC server) at
//! once, and the plugin lives on. So the first SIGINT, SIGTERM or SIGHUP asks for a *safe stop*:
//! before the switch the deploy rolls back, after it the deploy finishes the switch (the new
//! version already serves production traffic, so putting the old one back would be a second
//! switch under the user's feet). A second signal *abandons*: nothing more is waited for, the
//! request in flight is dropped, and the outcome names every step that is left, with the
//! commands that finish it by hand.
//!
//! Depends on: tokio-util. Must not: print (the signal listener in `plugin::push` says "Interrupted").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// The two stages of an interrupt, shared by the signal listener and the deploy engine.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    stop: CancellationToken,
    abandon: CancellationToken,
    /// Set by the engine once production traffic has moved to the new version, so that the
    /// signal listener can say what a first interrupt will do.
    switched: Arc<AtomicBool>,
    /// The apps (as `cf` names them now) whose release task runs, oldest first (several with
    /// `--parallel`), so that a second interrupt can say how to check on a task it no longer
    /// waits for.
    task_apps: Arc<Mutex<Vec<String>>>,
}

impl Interrupt {
    /// An interrupt that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// First stage: roll back before the switch, finish the switch after it.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Second stage: stop waiting for anything and report what is left. Implies [`Self::stop`].
    pub fn abandon(&self) {
        self.stop.cancel();
        self.abandon.cancel();
    }

    /// Whether a safe stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Whether the user gave up waiting.
    pub fn is_abandoned(&self) -> bool {
        self.abandon.is_cancelled()
    }

    /// Records that the switch is done: from now on a first interrupt finishes the deploy.
    pub fn mark_switched(&self) {
        self.switched.store(true, Ordering::SeqCst);
    }

    /// Whether production traffic has moved to the new version.
    pub fn is_switched(&self) -> bool {
        self.switched.load(Ordering::SeqCst)
    }

    /// Records that a task of `app` runs.
    pub fn task_started(&self, app: &str) {
        self.task_apps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(app.to_string());
    }

    /// Records that the task of `app` no longer runs (or is no longer waited for).
    pub fn task_ended(&self, app: &str) {
        let mut apps = self
            .task_apps
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = apps.iter().position(|a| a == app) {
            apps.remove(i);
        }
    }

    /// The app whose release task runs now, the one started first when several do (`cf
    /// tasks <app>` lists it).
    pub fn running_task(&self) -> Option<String> {
        self.task_apps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first()
            .cloned()
    }

    /// The token of the first stage (cancelled by [`Self::stop`] and [`Self::abandon`]).
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// The token of the second stage (cancelled by [`Self::abandon`] only).
    pub fn abandon_token(&self) -> &CancellationToken {
        &self.abandon
    }
}

/// A plain cancellation token is a first stage that never abandons (tests, the demo).
impl From<&CancellationToken> for Interrupt {
    fn from(stop: &CancellationToken) -> Self {
        Interrupt {
            stop: stop.clone(),
            ..Interrupt::default()
        }
    }
}

impl From<&Interrupt> for Interrupt {
    fn from(i: &Interrupt) -> Self {
        i.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandon_implies_stop_but_not_the_reverse() {
        let i = Interrupt::new();
        i.stop();
        assert!(i.is_stopped() && !i.is_abandoned());
        let j = Interrupt::new();
        j.abandon();
        assert!(j.is_stopped() && j.is_abandoned());
    }

    #[test]
    fn the_running_task_is_shared_by_clones() {
        let i = Interrupt::new();
        let listener = i.clone();
        i.task_started("web-candidate");
        assert_eq!(listener.running_task().as_deref(), Some("web-candidate"));
        // Two apps' tasks at once (--parallel): the one still running is named.
        i.task_started("api-candidate");
        i.task_ended("web-candidate");
        assert_eq!(listener.running_task().as_deref(), Some("api-candidate"));
        i.task_ended("api-candidate");
        assert_eq!(listener.running_task(), None);
    }

    #[test]
    fn a_plain_token_drives_the_first_stage() {
        let t = CancellationToken::new();
        let i = Interrupt::from(&t);
        t.cancel();
        assert!(i.is_stopped() && !i.is_abandoned());
    }
}
