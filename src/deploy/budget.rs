//! The call budget: how many requests a deploy sent, by [`Phase`]. The backend counts the
//! requests (`CfApi::requests`) one by one as they are sent ([`Tally::count`]); a request
//! counts to the phase of the step whose future sent it ([`in_phase`], a task-local value,
//! so that the steps of apps run at the same time with `--parallel` each count to their own
//! phase), and outside every step to the phase entered last (`CfApi::enter_phase`, at each
//! step and at the rollback); the run reports the figures once at its end (`Event::Requests`).
//!
//! Depends on: serde, tokio (task-local). Must not: make requests.

use std::collections::BTreeMap;
use std::future::Future;

use serde::Serialize;

/// A part of a deploy whose requests are counted together, in the order a blue-green deploy
/// goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the first step: discovery, the observation, the lock, the checks.
    Preflight,
    /// The candidate app and what it carries over (routes, SSH, metadata, policies, env).
    Candidate,
    /// Package, upload, staging, droplet.
    Bits,
    /// Starting the candidate and waiting until its instances run.
    Health,
    /// The smoke test.
    Smoke,
    /// Release tasks.
    Task,
    /// Canary analysis.
    Canary,
    /// Routes mapped and unmapped, and a rolling or canary deployment.
    Switch,
    /// The drain.
    Drain,
    /// Renames, stops, deletes and labels after the switch (and releasing the lock).
    Retire,
    /// Undoing the steps after a failure.
    Rollback,
}

impl Phase {
    /// Its name in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::Candidate => "candidate",
            Phase::Bits => "bits",
            Phase::Health => "health",
            Phase::Smoke => "smoke",
            Phase::Task => "task",
            Phase::Canary => "canary",
            Phase::Switch => "switch",
            Phase::Drain => "drain",
            Phase::Retire => "retire",
            Phase::Rollback => "rollback",
        }
    }
}

/// The requests of one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhaseRequests {
    /// The phase.
    pub phase: Phase,
    /// Requests sent in it.
    pub requests: u64,
}

/// Requests sent so far, in total and by phase (phases without requests left out, in
/// [`Phase`] order).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Requests {
    /// All of them.
    pub total: u64,
    /// By phase.
    pub phases: Vec<PhaseRequests>,
}

impl Requests {
    /// The requests of `phase` (0 when none).
    pub fn of(&self, phase: Phase) -> u64 {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map_or(0, |p| p.requests)
    }
}

impl std::fmt::Display for Requests {
    /// `63 requests: 12 preflight, 9 candidate, 31 health, ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests", self.total)?;
        for (i, p) in self.phases.iter().enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(f, "{sep}{} {}", p.requests, p.phase.as_str())?;
        }
        Ok(())
    }
}

tokio::task_local! {
    /// The phase of the step whose future is being polled.
    static STEP_PHASE: Phase;
}

/// Runs `fut` (one step) with the requests it sends counted to `phase`, whatever other
/// futures polled in between (another app's step) enter.
pub(crate) async fn in_phase<F: Future>(phase: Phase, fut: F) -> F::Output {
    STEP_PHASE.scope(phase, fut).await
}

/// The phase of the step being polled now ([`in_phase`]), if any: for a backend counting a
/// request as it sends it.
pub fn step_phase() -> Option<Phase> {
    STEP_PHASE.try_with(|p| *p).ok()
}

/// Counts requests into phases: a request counts to the phase of the step that sent it
/// ([`step_phase`]), else to the phase entered last ([`Tally::enter`]). Starts in
/// [`Phase::Preflight`].
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    counts: BTreeMap<Phase, u64>,
    current: Phase,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            counts: BTreeMap::new(),
            current: Phase::Preflight,
        }
    }
}

impl Tally {
    /// A tally of `sent` requests sent before counting began (discovery, login), all of them
    /// the preflight's.
    pub(crate) fn after(sent: u64) -> Tally {
        let mut t = Tally::default();
        if sent > 0 {
            t.counts.insert(Phase::Preflight, sent);
        }
        t
    }

    /// Requests sent outside any step from now on belong to `phase`.
    pub(crate) fn enter(&mut self, phase: Phase) {
        self.current = phase;
    }

    /// One request sent by a step of phase `step` (`None`: outside every step).
    pub(crate) fn count(&mut self, step: Option<Phase>) {
        *self.counts.entry(step.unwrap_or(self.current)).or_default() += 1;
    }

    /// The figures so far.
    pub(crate) fn requests(&self) -> Requests {
        let counts = &self.counts;
        Requests {
            total: counts.values().sum(),
            phases: counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(phase, requests)| PhaseRequests {
                    phase: *phase,
                    requests: *requests,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_outside_steps_count_to_the_phase_entered_before_them() {
        let mut t = Tally::default();
        let send = |t: &mut Tally, n: usize| (0..n).for_each(|_| t.count(None));
        send(&mut t, 12);
        t.enter(Phase::Candidate);
        send(&mut t, 9);
        t.enter(Phase::Health);
        send(&mut t, 9);
        t.enter(Phase::Candidate);
        send(&mut t, 1);
        t.enter(Phase::Retire);
        send(&mut t, 4);
        let r = t.requests();
        assert_eq!(r.total, 35);
        assert_eq!(r.of(Phase::Candidate), 10);
        assert_eq!(
            r.to_string(),
            "35 requests: 12 preflight, 10 candidate, 9 health, 4 retire"
        );
    }

    #[tokio::test]
    async fn interleaved_steps_count_to_their_own_phases() {
        let t = std::sync::Mutex::new(Tally::default());
        let count = || t.lock().expect("not poisoned").count(step_phase());
        // Two steps polled in turn in one task, as the lanes of `--parallel` are; the phase
        // entered last is neither of theirs.
        t.lock().expect("not poisoned").enter(Phase::Switch);
        let lane = |phase: Phase, n: usize| {
            in_phase(phase, async move {
                for _ in 0..n {
                    count();
                    tokio::task::yield_now().await;
                }
            })
        };
        tokio::join!(lane(Phase::Bits, 5), lane(Phase::Health, 3));
        count();
        let r = t.lock().expect("not poisoned").requests();
        assert_eq!(
            r.to_string(),
            "9 requests: 5 bits, 3 health, 1 switch",
            "{r:?}"
        );
    }
}
