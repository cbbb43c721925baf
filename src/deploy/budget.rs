//! The call budget: how many requests a deploy sent, by [`Phase`]. The backend counts the
//! requests (`CfApi::requests`); the executor says which phase the requests from
//! then on belong to (`CfApi::enter_phase`, at each step and at the rollback); the run
//! reports the figures once at its end (`Event::Requests`).
//!
//! Depends on: serde. Must not: make requests.

use std::collections::BTreeMap;

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

/// Splits a running count of requests into phases: what was sent between two
/// [`Tally::enter`]s counts to the phase entered first. Starts in [`Phase::Preflight`].
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    counts: BTreeMap<Phase, u64>,
    current: Phase,
    /// The running count when `current` was entered.
    mark: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            counts: BTreeMap::new(),
            current: Phase::Preflight,
            mark: 0,
        }
    }
}

impl Tally {
    /// The requests from the running count `sent` on belong to `phase`.
    pub(crate) fn enter(&mut self, phase: Phase, sent: u64) {
        *self.counts.entry(self.current).or_default() += sent.saturating_sub(self.mark);
        self.current = phase;
        self.mark = sent;
    }

    /// The figures when the running count is `sent`.
    pub(crate) fn requests(&self, sent: u64) -> Requests {
        let mut counts = self.counts.clone();
        *counts.entry(self.current).or_default() += sent.saturating_sub(self.mark);
        Requests {
            total: counts.values().sum(),
            phases: counts
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(phase, requests)| PhaseRequests { phase, requests })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_to_the_phase_entered_before_them() {
        let mut t = Tally::default();
        t.enter(Phase::Candidate, 12);
        t.enter(Phase::Health, 21);
        t.enter(Phase::Candidate, 30);
        t.enter(Phase::Retire, 31);
        let r = t.requests(35);
        assert_eq!(r.total, 35);
        assert_eq!(r.of(Phase::Candidate), 10);
        assert_eq!(
            r.to_string(),
            "35 requests: 12 preflight, 10 candidate, 9 health, 4 retire"
        );
    }
}
