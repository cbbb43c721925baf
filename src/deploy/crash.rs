//! Crash detection that does not depend on seeing `CRASHED`.
//!
//! Diego restarts a crashed instance at once, and a never-healthy one is killed at its
//! health-check timeout and restarted: polling the stats may never see the `CRASHED` state. So a
//! crash is recognised by any of three signals, each enough on its own, so that a platform
//! lacking one still works:
//!
//! - the stats: `CRASHED` itself, an instance whose `instance_guid` changed at the same index, or
//!   whose `uptime` went back while its state stayed the same, between two polls (uptime counts
//!   from the last state change, so STARTING → RUNNING resets it without a crash);
//! - the platform's records ([`CfApi::crash_events`]): `audit.app.process.crash` audit events
//!   and log-cache's "App instance exited" lines, which survive the restart.
//!
//! A record source that is absent or forbidden is named once in a warning and the others go on.
//!
//! Depends on: deploy::api. Must not: print.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use super::api::{AppGuid, CfApi, CrashEvent, InstanceStat, InstanceState, ProcessGuid};

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

/// Remembers each instance between polls of one wait.
#[derive(Debug)]
pub(crate) struct CrashWatch {
    since: SystemTime,
    /// (process GUID, index) → what the last poll showed of that instance.
    seen: BTreeMap<(ProcessGuid, u32), Sample>,
    /// Instance GUIDs seen among the watched processes (to attribute log-cache lines).
    instances: BTreeSet<String>,
}

impl CrashWatch {
    /// A watch counting records from `since` on (records older than that are another run's).
    pub(crate) fn new(since: SystemTime) -> Self {
        CrashWatch {
            since,
            seen: BTreeMap::new(),
            instances: BTreeSet::new(),
        }
    }

    /// Checks one poll of a process's stats against the previous one.
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
            // reports: no evidence either way, and not a sample to compare the next one with.
            let no_sample =
                s.state == InstanceState::Down || (guid.is_none() && s.uptime.unwrap_or(0) == 0);
            let before = if no_sample {
                None
            } else {
                let key = (process_guid.clone(), s.index);
                self.seen.insert(key, (guid.clone(), s.uptime, s.state))
            };
            let at = |reason: String| {
                Some(Crash {
                    process_guid: Some(process_guid.clone()),
                    index: Some(s.index),
                    reason,
                })
            };
            if s.state == InstanceState::Crashed {
                crash = at(s
                    .details
                    .clone()
                    .unwrap_or_else(|| "the instance exited".into()));
                continue;
            }
            let Some((old_guid, old_uptime, old_state)) = before else {
                continue;
            };
            match (&old_guid, &guid) {
                (Some(a), Some(b)) if a != b => {
                    crash = at(format!(
                        "the instance was restarted between two polls (instance {a} replaced by {b}){}",
                        details_suffix(s)
                    ));
                    continue;
                }
                _ => {}
            }
            // Uptime counts from the instance's last state change (Diego's `since`), so it
            // restarts at STARTING → RUNNING; within one state, going back is a restart.
            if let (Some(a), Some(b)) = (old_uptime, s.uptime)
                && b < a
                && old_guid == guid
                && old_state == s.state
            {
                crash = at(format!(
                    "the instance was restarted between two polls (uptime went from {a}s back to {b}s){}",
                    details_suffix(s)
                ));
            }
        }
        crash
    }

    /// Reads the app's crash records and returns the first that concerns the watched
    /// instances. Sources that are unavailable come back in the second value (the caller warns
    /// once); a failed read is not a crash and is left for the next poll.
    pub(crate) async fn check_records<A: CfApi>(
        &self,
        api: &A,
        app_guid: &AppGuid,
        scope: Scope<'_>,
    ) -> (Option<Crash>, Vec<String>) {
        let records = match api.crash_events(app_guid, self.since).await {
            Ok(r) => r,
            Err(e) if e.is_unavailable() => {
                return (None, vec![format!("crash records: {e}")]);
            }
            Err(_) => return (None, Vec::new()),
        };
        let crash = records
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
        (crash, records.unavailable)
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

    #[test]
    fn a_changed_instance_guid_is_a_crash_even_without_crashed_state() {
        let mut w = CrashWatch::new(SystemTime::now());
        assert_eq!(
            w.check_stats(
                &ProcessGuid::from("p"),
                &[stat(0, InstanceState::Starting, "a", 30)]
            ),
            None
        );
        let c = w
            .check_stats(
                &ProcessGuid::from("p"),
                &[stat(0, InstanceState::Starting, "b", 1)],
            )
            .expect("restart seen");
        assert_eq!(c.index, Some(0));
        assert!(
            c.reason.contains("instance a replaced by b"),
            "{}",
            c.reason
        );
    }

    #[test]
    fn uptime_going_back_is_a_crash_and_growing_uptime_is_not() {
        let mut w = CrashWatch::new(SystemTime::now());
        w.check_stats(
            &ProcessGuid::from("p"),
            &[stat(1, InstanceState::Starting, "a", 5)],
        );
        // A state change resets uptime: not a crash.
        let up = w.check_stats(
            &ProcessGuid::from("p"),
            &[stat(1, InstanceState::Running, "a", 0)],
        );
        assert_eq!(up, None);
        let later = w.check_stats(
            &ProcessGuid::from("p"),
            &[stat(1, InstanceState::Running, "a", 9)],
        );
        assert_eq!(later, None);
        let c = w.check_stats(
            &ProcessGuid::from("p"),
            &[stat(1, InstanceState::Running, "a", 2)],
        );
        assert!(c.is_some_and(|c| c.reason.contains("9s back to 2s")));
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
