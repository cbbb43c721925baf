//! Crash detection that does not depend on seeing `CRASHED`, and does not take a moved
//! instance for a crashed one.
//!
//! Diego restarts a crashed instance at once, and a never-healthy one is killed at its
//! health-check timeout and restarted: polling the stats may never see the `CRASHED` state. So a
//! crash is recognised by any of these signals, so that a platform lacking one still works:
//!
//! - the stats: `CRASHED` itself is a crash;
//! - the platform's records ([`CfApi::crash_events`]): `audit.app.process.crash` audit events
//!   and log-cache's "App instance exited" lines, which survive the restart;
//! - an instance replaced between two polls (its `instance_guid` changed at the same index, or
//!   its `uptime` went back while its state stayed the same; uptime counts from the last state
//!   change, so STARTING → RUNNING resets it without a crash) is a *suspect*, not a verdict:
//!   Diego also replaces instances when it evacuates a cell (every platform upgrade), placing
//!   the replacement first. The records decide: a rescheduling record
//!   (`audit.app.process.rescheduling`, or the CELL line "requesting replacement for
//!   instance ...") of that instance says it moved; a crash record says it crashed. Without
//!   a record either way, these rules apply:
//!   - an instance replaced before it ever ran is a crash after one more poll (crash-on-start
//!     and never-healthy stay fast; at once when the platform gives no records at all);
//!   - an instance replaced while running is taken for moved after [`CONFIRM_POLLS`] polls and
//!     [`CONFIRM_WINDOW`] (at once without records), and a second replacement of the same
//!     index in the same wait is a crash.
//!
//! An instance without an `instance_guid` (UNCLAIMED: the replacement not placed yet) is no
//! sample either way. A record source that is absent or forbidden is named once in a warning
//! and the others go on.
//!
//! Depends on: deploy::api. Must not: print.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use super::api::{AppGuid, CfApi, CrashEvent, InstanceStat, InstanceState, ProcessGuid};

/// Polls a replaced instance that had been running waits for a record before it is taken for
/// moved (see the module docs).
pub(crate) const CONFIRM_POLLS: u32 = 3;

/// The least time a replaced instance that had been running waits for a record.
pub(crate) const CONFIRM_WINDOW: Duration = Duration::from_secs(5);

/// A crash seen by a [`CrashWatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Crash {
    /// The crashed process's GUID, when known.
    pub process_guid: Option<ProcessGuid>,
    /// Instance index, when known.
    pub index: Option<u32>,
    /// What the platform said, or how the crash was inferred.
    pub reason: String,
}

/// Which crash records belong to the instances being watched.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// Every record of the app: it is new (a blue-green candidate or a first push).
    WholeApp,
    /// Only records of these processes (a rolling/canary deployment's new processes): the app
    /// also has old instances whose crashes do not concern the new version.
    Processes(&'a [ProcessGuid]),
}

/// One instance at one poll: instance GUID, uptime and state.
type Sample = (Option<String>, Option<u64>, InstanceState);

/// A replaced instance waiting for the record that tells a move from a crash.
#[derive(Debug, Clone)]
struct Suspect {
    process_guid: ProcessGuid,
    index: u32,
    /// The GUID of the instance that was replaced.
    old: Option<String>,
    /// How the replacement was seen (the crash's reason if it turns out to be one).
    reason: String,
    /// Whether the replaced instance was RUNNING at the poll before.
    was_running: bool,
    /// Record checks since it was seen.
    polls: u32,
    seen_at: Instant,
}

/// An instance Diego moved: replaced, not crashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Moved {
    /// The process, when known.
    pub process_guid: Option<ProcessGuid>,
    /// Instance index.
    pub index: u32,
    /// Why it is taken for a move (the record's reason, or the rule that applied).
    pub why: String,
}

/// What one check of the records found.
#[derive(Debug, Default)]
pub(crate) struct RecordCheck {
    /// A crash of a watched instance.
    pub crash: Option<Crash>,
    /// Watched instances that moved since the last check.
    pub moved: Vec<Moved>,
    /// Record sources that are absent or forbidden (the caller warns once).
    pub unavailable: Vec<String>,
}

/// Remembers each instance between polls of one wait.
#[derive(Debug)]
pub(crate) struct CrashWatch {
    since: SystemTime,
    /// (process GUID, index) → what the last poll showed of that instance.
    seen: BTreeMap<(ProcessGuid, u32), Sample>,
    /// Instance GUIDs seen among the watched processes (to attribute log-cache lines).
    instances: BTreeSet<String>,
    /// Replaced instances not yet judged.
    suspects: Vec<Suspect>,
    /// Indexes taken for moved without a record (a second replacement is a crash).
    moved_by_rule: BTreeSet<(ProcessGuid, u32)>,
}

impl CrashWatch {
    /// A watch counting records from `since` on (records older than that are another run's).
    pub(crate) fn new(since: SystemTime) -> Self {
        CrashWatch {
            since,
            seen: BTreeMap::new(),
            instances: BTreeSet::new(),
            suspects: Vec::new(),
            moved_by_rule: BTreeSet::new(),
        }
    }

    /// Whether a replaced instance still waits for its verdict: the wait must not end as
    /// healthy before it has one.
    pub(crate) fn pending(&self) -> bool {
        !self.suspects.is_empty()
    }

    /// Checks one poll of a process's stats against the previous one: `CRASHED` is a crash; a
    /// replaced instance becomes a suspect for [`CrashWatch::check_records`] to judge.
    pub(crate) fn check_stats(
        &mut self,
        process_guid: &ProcessGuid,
        stats: &[InstanceStat],
    ) -> Option<Crash> {
        let mut crash = None;
        for s in stats {
            let guid = s.instance_guid.clone().filter(|g| !g.is_empty());
            if let Some(g) = &guid {
                self.instances.insert(g.clone());
            }
            if crash.is_some() {
                continue;
            }
            // Without an instance GUID, uptime 0 is also what an instance not yet placed
            // (UNCLAIMED) reports: no evidence either way, and not a sample to compare the
            // next one with.
            let no_sample =
                s.state == InstanceState::Down || (guid.is_none() && s.uptime.unwrap_or(0) == 0);
            let before = if no_sample {
                None
            } else {
                let key = (process_guid.clone(), s.index);
                self.seen.insert(key, (guid.clone(), s.uptime, s.state))
            };
            if s.state == InstanceState::Crashed {
                crash = Some(Crash {
                    process_guid: Some(process_guid.clone()),
                    index: Some(s.index),
                    reason: s
                        .details
                        .clone()
                        .unwrap_or_else(|| "the instance exited".into()),
                });
                continue;
            }
            let Some((old_guid, old_uptime, old_state)) = before else {
                continue;
            };
            let replaced = match (&old_guid, &guid) {
                (Some(a), Some(b)) if a != b => Some(format!(
                    "the instance was restarted between two polls (instance {a} replaced by {b}){}",
                    details_suffix(s)
                )),
                // Uptime counts from the instance's last state change (Diego's `since`), so it
                // restarts at STARTING → RUNNING; within one state, going back is a restart.
                _ => match (old_uptime, s.uptime) {
                    (Some(a), Some(b)) if b < a && old_guid == guid && old_state == s.state => {
                        Some(format!(
                            "the instance was restarted between two polls (uptime went from {a}s back to {b}s){}",
                            details_suffix(s)
                        ))
                    }
                    _ => None,
                },
            };
            if let Some(reason) = replaced
                && !self
                    .suspects
                    .iter()
                    .any(|x| &x.process_guid == process_guid && x.index == s.index)
            {
                self.suspects.push(Suspect {
                    process_guid: process_guid.clone(),
                    index: s.index,
                    old: old_guid,
                    reason,
                    was_running: old_state == InstanceState::Running,
                    polls: 0,
                    seen_at: Instant::now(),
                });
            }
        }
        crash
    }

    /// Reads the app's crash and rescheduling records: returns the first crash that concerns
    /// the watched instances, and judges the replaced instances (see the module docs).
    /// Sources that are unavailable come back in [`RecordCheck::unavailable`]; a failed read
    /// is not a crash and is left for the next poll.
    pub(crate) async fn check_records<A: CfApi>(
        &mut self,
        api: &A,
        app_guid: &AppGuid,
        scope: Scope<'_>,
    ) -> RecordCheck {
        let mut out = RecordCheck::default();
        let records = match api.crash_events(app_guid, self.since).await {
            Ok(r) => r,
            Err(e) if e.is_unavailable() => {
                out.unavailable.push(format!("crash records: {e}"));
                self.judge(&[], true, &mut out);
                return out;
            }
            Err(_) => return out,
        };
        out.crash = records
            .events
            .iter()
            .find(|e| self.concerns(e, scope))
            .map(|e| Crash {
                process_guid: e.process_guid.clone(),
                index: e.index,
                reason: if e.reason.is_empty() {
                    "the instance exited".into()
                } else {
                    e.reason.clone()
                },
            });
        // Both sources (audit events and log-cache) unavailable: no records at all.
        let blind = records.unavailable.len() >= 2;
        out.unavailable = records.unavailable;
        if out.crash.is_none() {
            self.judge(&records.moves, blind, &mut out);
        }
        out
    }

    /// Judges each suspect against the move records, or by the rules when there are none.
    fn judge(&mut self, moves: &[CrashEvent], blind: bool, out: &mut RecordCheck) {
        let mut keep = Vec::new();
        for mut s in std::mem::take(&mut self.suspects) {
            s.polls += 1;
            if let Some(m) = moves.iter().find(|m| moved_record_of(m, &s)) {
                out.moved.push(Moved {
                    process_guid: Some(s.process_guid.clone()),
                    index: s.index,
                    why: if m.reason.is_empty() {
                        "Diego rescheduled it".to_owned()
                    } else {
                        format!("Diego rescheduled it: {}", m.reason)
                    },
                });
                continue;
            }
            let crash = |s: &Suspect| Crash {
                process_guid: Some(s.process_guid.clone()),
                index: Some(s.index),
                reason: s.reason.clone(),
            };
            if !s.was_running {
                if blind || s.polls > 1 {
                    out.crash.get_or_insert_with(|| crash(&s));
                } else {
                    keep.push(s);
                }
                continue;
            }
            let waited =
                blind || (s.polls >= CONFIRM_POLLS && s.seen_at.elapsed() >= CONFIRM_WINDOW);
            if !waited {
                keep.push(s);
                continue;
            }
            let key = (s.process_guid.clone(), s.index);
            if self.moved_by_rule.contains(&key) {
                let mut c = crash(&s);
                c.reason = format!("{}; replaced a second time in this wait", c.reason);
                out.crash.get_or_insert(c);
            } else {
                self.moved_by_rule.insert(key);
                out.moved.push(Moved {
                    process_guid: Some(s.process_guid.clone()),
                    index: s.index,
                    why: if blind {
                        "replaced while running; the platform keeps no crash records here, so a first replacement is taken for a move".to_owned()
                    } else {
                        "replaced while running, with no crash record".to_owned()
                    },
                });
            }
        }
        self.suspects = keep;
    }

    fn concerns(&self, e: &CrashEvent, scope: Scope<'_>) -> bool {
        match scope {
            Scope::WholeApp => true,
            Scope::Processes(ps) => {
                e.process_guid.as_ref().is_some_and(|p| ps.contains(p))
                    || e.instance_guid
                        .as_ref()
                        .is_some_and(|i| self.instances.contains(i))
            }
        }
    }
}

/// Whether move record `m` is about suspect `s`: the same instance GUID, or, when the record
/// names none, the same index (and process, when named).
fn moved_record_of(m: &CrashEvent, s: &Suspect) -> bool {
    match (&m.instance_guid, &s.old) {
        (Some(a), Some(b)) => a == b,
        (Some(_), None) => false,
        (None, _) => {
            m.index == Some(s.index) && m.process_guid.as_ref().is_none_or(|p| *p == s.process_guid)
        }
    }
}

fn details_suffix(s: &InstanceStat) -> String {
    s.details
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(index: u32, state: InstanceState, guid: &str, uptime: u64) -> InstanceStat {
        InstanceStat {
            index,
            state,
            routable: None,
            details: None,
            instance_guid: Some(guid.to_string()),
            uptime: Some(uptime),
        }
    }

    fn judged(w: &mut CrashWatch, moves: &[CrashEvent], blind: bool) -> RecordCheck {
        let mut out = RecordCheck::default();
        w.judge(moves, blind, &mut out);
        out
    }

    #[test]
    fn a_changed_instance_guid_before_running_is_a_crash_one_poll_later() {
        let mut w = CrashWatch::new(SystemTime::now());
        let p = ProcessGuid::from("p");
        assert_eq!(
            w.check_stats(&p, &[stat(0, InstanceState::Starting, "a", 30)]),
            None
        );
        assert_eq!(
            w.check_stats(&p, &[stat(0, InstanceState::Starting, "b", 1)]),
            None,
            "a suspect, not a verdict"
        );
        assert!(w.pending());
        // The poll that saw it: a rescheduling record may still come.
        let first = judged(&mut w, &[], false);
        assert!(first.crash.is_none() && first.moved.is_empty());
        let c = judged(&mut w, &[], false)
            .crash
            .expect("no record: a crash");
        assert_eq!(c.index, Some(0));
        assert!(
            c.reason.contains("instance a replaced by b"),
            "{}",
            c.reason
        );
        assert!(!w.pending());
    }

    #[test]
    fn without_any_records_a_never_running_replacement_is_a_crash_at_once() {
        let mut w = CrashWatch::new(SystemTime::now());
        let p = ProcessGuid::from("p");
        w.check_stats(&p, &[stat(0, InstanceState::Starting, "a", 3)]);
        w.check_stats(&p, &[stat(0, InstanceState::Starting, "b", 0)]);
        assert!(judged(&mut w, &[], true).crash.is_some());
    }

    #[test]
    fn a_rescheduling_record_makes_a_replacement_a_move() {
        let mut w = CrashWatch::new(SystemTime::now());
        let p = ProcessGuid::from("p");
        w.check_stats(&p, &[stat(0, InstanceState::Running, "a", 40)]);
        // UNCLAIMED: the replacement is not placed yet and has no GUID.
        let mut unclaimed = stat(0, InstanceState::Starting, "", 0);
        unclaimed.instance_guid = Some(String::new());
        assert_eq!(w.check_stats(&p, &[unclaimed]), None);
        assert!(!w.pending());
        w.check_stats(&p, &[stat(0, InstanceState::Starting, "b", 1)]);
        assert!(w.pending());
        let other = CrashEvent {
            instance_guid: Some("someone-else".into()),
            index: Some(0),
            reason: "Cell is being evacuated".into(),
            ..CrashEvent::default()
        };
        let this = CrashEvent {
            instance_guid: Some("a".into()),
            ..other.clone()
        };
        assert!(judged(&mut w, &[other], false).moved.is_empty());
        let out = judged(&mut w, &[this], false);
        assert!(out.crash.is_none());
        assert_eq!(out.moved.len(), 1);
        assert_eq!(out.moved[0].index, 0);
        assert!(out.moved[0].why.contains("evacuated"), "{:?}", out.moved);
        assert!(!w.pending());
        // Running again on the new instance: nothing more to say.
        assert_eq!(
            w.check_stats(&p, &[stat(0, InstanceState::Running, "b", 0)]),
            None
        );
        assert!(!w.pending());
    }

    #[test]
    fn a_running_instance_replaced_without_records_is_moved_once_then_crashed() {
        let mut w = CrashWatch::new(SystemTime::now());
        let p = ProcessGuid::from("p");
        w.check_stats(&p, &[stat(1, InstanceState::Running, "a", 40)]);
        w.check_stats(&p, &[stat(1, InstanceState::Running, "b", 1)]);
        // Records are readable but say nothing: wait for the confirm window.
        for _ in 0..CONFIRM_POLLS {
            let out = judged(&mut w, &[], false);
            assert!(out.crash.is_none() && out.moved.is_empty());
        }
        w.suspects[0].seen_at = Instant::now()
            .checked_sub(CONFIRM_WINDOW)
            .expect("the clock is past the window");
        let out = judged(&mut w, &[], false);
        assert_eq!(out.moved.len(), 1, "{out:?}");
        assert!(out.crash.is_none());
        // The same index replaced again in the same wait: a crash, at once without records.
        w.check_stats(&p, &[stat(1, InstanceState::Running, "b", 9)]);
        w.check_stats(&p, &[stat(1, InstanceState::Running, "c", 1)]);
        let c = judged(&mut w, &[], true).crash.expect("second replacement");
        assert!(c.reason.contains("second time"), "{}", c.reason);
    }

    #[test]
    fn uptime_going_back_is_a_suspect_and_growing_uptime_is_not() {
        let mut w = CrashWatch::new(SystemTime::now());
        let p = ProcessGuid::from("p");
        w.check_stats(&p, &[stat(1, InstanceState::Starting, "a", 5)]);
        // A state change resets uptime: not a crash.
        assert_eq!(
            w.check_stats(&p, &[stat(1, InstanceState::Running, "a", 0)]),
            None
        );
        assert_eq!(
            w.check_stats(&p, &[stat(1, InstanceState::Running, "a", 9)]),
            None
        );
        assert!(!w.pending());
        w.check_stats(&p, &[stat(1, InstanceState::Running, "a", 2)]);
        assert!(w.pending());
        assert!(w.suspects[0].reason.contains("9s back to 2s"));
    }

    #[test]
    fn crashed_state_is_reported_with_its_details() {
        let mut w = CrashWatch::new(SystemTime::now());
        let mut s = stat(0, InstanceState::Crashed, "a", 0);
        s.details = Some("out of memory".into());
        assert_eq!(
            w.check_stats(&ProcessGuid::from("p"), &[s])
                .map(|c| c.reason),
            Some("out of memory".to_string())
        );
    }

    #[test]
    fn new_indexes_and_unplaced_instances_are_not_crashes() {
        let mut w = CrashWatch::new(SystemTime::now());
        w.check_stats(
            &ProcessGuid::from("p"),
            &[stat(0, InstanceState::Starting, "", 0)],
        );
        assert_eq!(
            w.check_stats(
                &ProcessGuid::from("p"),
                &[
                    stat(0, InstanceState::Running, "a", 1),
                    stat(1, InstanceState::Starting, "b", 0)
                ]
            ),
            None
        );
    }

    #[test]
    fn process_scope_keeps_only_records_of_the_watched_instances() {
        let mut w = CrashWatch::new(SystemTime::now());
        w.check_stats(
            &ProcessGuid::from("new"),
            &[stat(0, InstanceState::Running, "inst-new", 3)],
        );
        let procs = vec![ProcessGuid::from("new")];
        let old = CrashEvent {
            process_guid: Some("old".into()),
            ..CrashEvent::default()
        };
        let by_instance = CrashEvent {
            instance_guid: Some("inst-new".into()),
            ..CrashEvent::default()
        };
        assert!(!w.concerns(&old, Scope::Processes(&procs)));
        assert!(w.concerns(&by_instance, Scope::Processes(&procs)));
        assert!(w.concerns(&old, Scope::WholeApp));
    }
}
