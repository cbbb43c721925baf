//! One deploy per app at a time: the run lock.
//!
//! Cloud Controller does not stop two runs (two pipelines, a pipeline and a person) from
//! deploying one app at once. Each run therefore marks the apps it works on with four
//! annotations: [`RUN_ID_ANNOTATION`] (a random id per run), [`RUN_BY_ANNOTATION`]
//! (`user@host`), [`RUN_STARTED_ANNOTATION`] and [`HEARTBEAT_ANNOTATION`] (RFC 3339, UTC).
//!
//! - **Which apps.** A push marks the live app of each manifest app before its first change,
//!   and creates its candidate (or, on a first deploy, the app itself) with the marks, through
//!   `POST /v3/apps`: the name is unique in the space, so of two runs racing for the candidate
//!   name exactly one gets it, and the other reads it back and refuses. A rollback marks the
//!   live app and the venerable it brings back.
//! - **Heartbeat.** While the run lasts, `RunLock::hold_while` rewrites the marks every
//!   [`HEARTBEAT_EVERY`] next to the run's own work (a failed refresh is only reported). A
//!   heartbeat older than [`STALE_AFTER`] is stale: the run that wrote it is gone, and its
//!   candidate is a leftover that the next push cleans up as before. A heartbeat ahead of this
//!   machine's clock counts as fresh, up to [`MAX_AHEAD`]; further ahead it is stale (a broken
//!   clock must not lock an app for good). Clocks are assumed to agree within about a minute
//!   and a half ([`STALE_AFTER`] minus [`HEARTBEAT_EVERY`]): a run whose clock lags further
//!   behind looks stale to the others.
//! - **Refusal.** Before any change, a run that finds a fresh heartbeat of another run on the
//!   app, its candidate or its venerable refuses and changes nothing ([`Busy`]), unless
//!   `--wait-for-lock` lets it wait (bounded) for the lock to be released or go stale. A
//!   rolling or canary push also refuses while the app has an ACTIVE Cloud Controller
//!   deployment that it did not start.
//! - **Release.** At the end, whatever the outcome (deployed, rolled back, interrupted), the
//!   marks are removed from every app that still exists; a deleted app takes them along. A
//!   blue-green retire removes the new version's marks with its rename
//!   (`RunLock::unmark_with`) when the old app goes on holding the lock until the run is done
//!   with the app (see `plan::retire`).
//!
//! Depends on: deploy::api, deploy::interrupt, cf::trace (RFC 3339). Must not: print.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::api::{ApiError, App, AppGuid, CfApi, DeploymentGuid, MetadataUpdate};
use super::interrupt::Interrupt;
use super::step::fmt_duration;
use crate::cf::trace::{parse_rfc3339, rfc3339};

/// The annotation holding the id of the run that marks the app.
pub const RUN_ID_ANNOTATION: &str = "zero-downtime.cf/run-id";
/// The annotation naming who runs it: `user@host`.
pub const RUN_BY_ANNOTATION: &str = "zero-downtime.cf/run-by";
/// The annotation holding when the run started (RFC 3339, UTC).
pub const RUN_STARTED_ANNOTATION: &str = "zero-downtime.cf/run-started";
/// The annotation the run refreshes while it lasts (RFC 3339, UTC).
pub const HEARTBEAT_ANNOTATION: &str = "zero-downtime.cf/heartbeat";
/// Every annotation of the lock, removed together at the end of a run.
pub const LOCK_ANNOTATIONS: [&str; 4] = [
    RUN_ID_ANNOTATION,
    RUN_BY_ANNOTATION,
    RUN_STARTED_ANNOTATION,
    HEARTBEAT_ANNOTATION,
];

/// How often a run rewrites its marks.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// Age at which a heartbeat is stale: twelve missed refreshes.
pub const STALE_AFTER: Duration = Duration::from_secs(120);
/// How far ahead of this machine's clock a heartbeat may be and still count as fresh.
pub const MAX_AHEAD: Duration = Duration::from_secs(15 * 60);
/// Pause between two looks while `--wait-for-lock` waits.
pub(crate) const WAIT_POLL: Duration = Duration::from_secs(5);
/// Bound of removing the marks at the end of a run.
const RELEASE_BOUND: Duration = Duration::from_secs(30);

/// Seconds since the Unix epoch by this machine's clock.
pub(crate) fn now_secs() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The marks a run left on an app, as read from its annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    /// The run's id.
    pub(crate) run_id: String,
    /// `user@host` of the run, empty when not written.
    pub(crate) run_by: String,
    /// When the run started, as written (empty when not written).
    pub(crate) started: String,
    /// The last heartbeat, seconds since the Unix epoch; `None` when absent or unreadable.
    pub(crate) heartbeat: Option<i64>,
}

impl Marker {
    /// The marks in `annotations`, `None` when the app carries no run id.
    pub(crate) fn of(annotations: &BTreeMap<String, String>) -> Option<Marker> {
        let get = |k: &str| annotations.get(k).cloned().unwrap_or_default();
        let run_id = annotations.get(RUN_ID_ANNOTATION)?.clone();
        Some(Marker {
            run_id,
            run_by: get(RUN_BY_ANNOTATION),
            started: get(RUN_STARTED_ANNOTATION),
            heartbeat: annotations
                .get(HEARTBEAT_ANNOTATION)
                .and_then(|h| parse_rfc3339(h)),
        })
    }
}

/// What a [`Marker`] means to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// The run's own marks.
    Own,
    /// Another run's, alive: its heartbeat is at most [`STALE_AFTER`] old (or at most
    /// [`MAX_AHEAD`] ahead of this clock).
    Fresh,
    /// Another run's that stopped refreshing them (or never wrote a readable heartbeat): what
    /// it left is a leftover.
    Stale,
}

/// Judges `marker` at `now` (seconds since the Unix epoch) for the run `own_run_id`. Pure.
pub(crate) fn judge(marker: &Marker, own_run_id: &str, now: i64) -> Freshness {
    if marker.run_id == own_run_id {
        return Freshness::Own;
    }
    let Some(beat) = marker.heartbeat else {
        return Freshness::Stale;
    };
    let age = now.saturating_sub(beat);
    let stale = i64::try_from(STALE_AFTER.as_secs()).unwrap_or(i64::MAX);
    let ahead = i64::try_from(MAX_AHEAD.as_secs()).unwrap_or(i64::MAX);
    if (-ahead..=stale).contains(&age) {
        Freshness::Fresh
    } else {
        Freshness::Stale
    }
}

/// Why a run cannot start now: another one is deploying the app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// Another run of this tool holds the lock.
    #[error(
        "another deploy of {app} is running: started by {run_by} at {started} (run {run}, last heartbeat {heartbeat})"
    )]
    Run {
        /// The manifest app.
        app: String,
        /// The app carrying the fresh marks (the app itself, its candidate or venerable).
        marked: String,
        /// `user@host` of the other run.
        run_by: String,
        /// When it started.
        started: String,
        /// The start of its run id, followed by `…`.
        run: String,
        /// How old its heartbeat is, e.g. `4s ago`.
        heartbeat: String,
    },
    /// A Cloud Controller deployment of the app is in progress (rolling or canary).
    #[error("app {app} has an active deployment ({guid}, {state}) that this run did not start")]
    Deployment {
        /// The manifest app.
        app: String,
        /// The deployment.
        guid: DeploymentGuid,
        /// Its state, e.g. `ACTIVE/DEPLOYING`.
        state: String,
    },
}

/// How a heartbeat `age` (seconds, negative when ahead of this clock) reads.
fn heartbeat_text(age: i64) -> String {
    let d = |s: i64| fmt_duration(Duration::from_secs(s.unsigned_abs()));
    if age == 0 {
        "just now".to_string()
    } else if age > 0 {
        format!("{} ago", d(age))
    } else {
        format!("{} ahead of this machine's clock", d(age))
    }
}

/// The first app of `apps` (those of manifest app `app`) carrying a fresh lock of a run other
/// than `own_run_id` at `now`. Pure.
pub(crate) fn busy_among<'a>(
    app: &str,
    apps: impl IntoIterator<Item = &'a App>,
    own_run_id: &str,
    now: i64,
) -> Option<Busy> {
    apps.into_iter().find_map(|a| {
        let m = Marker::of(&a.annotations)?;
        if judge(&m, own_run_id, now) != Freshness::Fresh {
            return None;
        }
        let run: String = m.run_id.chars().take(8).collect();
        Some(Busy::Run {
            app: app.to_string(),
            marked: a.name.clone(),
            run_by: if m.run_by.is_empty() {
                "an unknown user".into()
            } else {
                m.run_by
            },
            started: if m.started.is_empty() {
                "an unknown time".into()
            } else {
                m.started
            },
            run: format!("{run}…"),
            heartbeat: heartbeat_text(now.saturating_sub(m.heartbeat.unwrap_or(now))),
        })
    })
}

/// The lock of this run: its identity, the apps it holds, and the heartbeat's troubles.
#[derive(Debug)]
pub struct RunLock {
    run_id: String,
    run_by: String,
    started: String,
    /// The apps carrying this run's marks (never held across an await).
    held: Mutex<Vec<AppGuid>>,
    /// Existing apps to mark before the run's first change, GUID and name.
    pending: Mutex<Vec<(AppGuid, String)>>,
    /// Failed heartbeats: how many, and the last error.
    failures: Mutex<(u32, Option<String>)>,
    /// Held by a heartbeat's round of refreshes and by [`RunLock::unmark_with`], so that no
    /// refresh in flight writes back marks just removed.
    round: tokio::sync::Mutex<()>,
}

impl RunLock {
    /// A new run by `run_by` (`user@host`), with a random run id.
    pub fn new(run_by: &str) -> RunLock {
        RunLock {
            run_id: format!("{:016x}", fastrand::u64(..)),
            run_by: run_by.to_string(),
            started: rfc3339(now_secs()),
            held: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            failures: Mutex::new((0, None)),
            round: tokio::sync::Mutex::new(()),
        }
    }

    /// The run's id.
    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The marks with a heartbeat of `now`, for an app created by the run.
    pub fn annotations(&self, now: i64) -> BTreeMap<String, String> {
        BTreeMap::from([
            (RUN_ID_ANNOTATION.to_string(), self.run_id.clone()),
            (RUN_BY_ANNOTATION.to_string(), self.run_by.clone()),
            (RUN_STARTED_ANNOTATION.to_string(), self.started.clone()),
            (HEARTBEAT_ANNOTATION.to_string(), rfc3339(now)),
        ])
    }

    fn mark(&self, now: i64) -> MetadataUpdate {
        MetadataUpdate {
            labels: BTreeMap::new(),
            annotations: self
                .annotations(now)
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect(),
        }
    }

    fn unmark() -> MetadataUpdate {
        MetadataUpdate {
            labels: BTreeMap::new(),
            annotations: LOCK_ANNOTATIONS
                .iter()
                .map(|k| ((*k).to_string(), None))
                .collect(),
        }
    }

    /// Counts `guid` among the apps the run holds (one it created with the marks).
    pub(crate) fn hold(&self, guid: &AppGuid) {
        if let Ok(mut h) = self.held.lock()
            && !h.contains(guid)
        {
            h.push(guid.clone());
        }
    }

    /// The run deleted app `guid`: neither the heartbeat nor the release writes to it again.
    pub(crate) fn forget(&self, guid: &AppGuid) {
        if let Ok(mut h) = self.held.lock() {
            h.retain(|g| g != guid);
        }
    }

    /// Sends `unmark`, a request that removes the run's marks from app `guid` along with
    /// other changes, between two heartbeat rounds; once it succeeded the run no longer holds
    /// the app (neither the heartbeat nor the release writes to it again).
    pub(crate) async fn unmark_with<T, E>(
        &self,
        guid: &AppGuid,
        unmark: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let _round = self.round.lock().await;
        let r = unmark.await;
        if r.is_ok() {
            self.forget(guid);
        }
        r
    }

    /// The apps the run holds.
    pub(crate) fn held(&self) -> Vec<AppGuid> {
        self.held.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Names the existing apps (GUID and name) to mark as worked on by this run before its
    /// first change ([`RunLock::acquire`]).
    pub(crate) fn expect(&self, apps: Vec<(AppGuid, String)>) {
        if let Ok(mut p) = self.pending.lock() {
            *p = apps;
        }
    }

    /// Marks the apps named by [`RunLock::expect`] that are not marked yet. The executor calls
    /// it before the first mutating step, so that a run stopped by its preflight leaves no
    /// trace.
    ///
    /// # Errors
    /// The first failed mark, with the app's name; the apps marked before (and that one: its
    /// answer may have been lost) are held, for [`RunLock::release`].
    pub(crate) async fn acquire<A: CfApi>(&self, api: &A) -> Result<(), (String, ApiError)> {
        let pending = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for (guid, name) in pending {
            self.hold(&guid);
            api.update_metadata(&guid, &self.mark(now_secs()))
                .await
                .map_err(|e| (name, e))?;
        }
        Ok(())
    }

    /// Runs `work` while refreshing the marks every [`HEARTBEAT_EVERY`], then removes them
    /// ([`RunLock::release`]); returns `work`'s result and the warnings to report.
    pub(crate) async fn hold_while<A: CfApi, T>(
        &self,
        api: &A,
        interrupt: &Interrupt,
        work: impl Future<Output = T>,
    ) -> (T, Vec<String>) {
        let stop = CancellationToken::new();
        let work = async {
            let r = work.await;
            stop.cancel();
            r
        };
        let (r, ()) = tokio::join!(work, self.heartbeat(api, &stop));
        let warnings = self.release(api, interrupt).await;
        (r, warnings)
    }

    /// Rewrites the marks of every held app every [`HEARTBEAT_EVERY`] until `stop`. A refresh
    /// in flight is awaited to its end even once `stop` fires: a heartbeat landing after the
    /// release would leave fresh-looking marks behind.
    async fn heartbeat<A: CfApi>(&self, api: &A, stop: &CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            }
            let _round = self.round.lock().await;
            let mark = self.mark(now_secs());
            for guid in self.held() {
                match api.update_metadata(&guid, &mark).await {
                    Ok(()) => {}
                    // Deleted by the run (a rolled-back candidate, a retired old app).
                    Err(e) if e.is_not_found() => self.forget(&guid),
                    Err(e) => {
                        tracing::warn!(app = %guid, error = %e, "lock heartbeat failed");
                        if let Ok(mut f) = self.failures.lock() {
                            f.0 += 1;
                            f.1 = Some(e.to_string());
                        }
                    }
                }
            }
        }
    }

    /// Removes the marks from every held app that still exists (each tried twice), bounded
    /// by 30 s and given up at a second interrupt; returns the warnings to report:
    /// marks left behind (they go stale on their own) and failed heartbeats.
    pub(crate) async fn release<A: CfApi>(&self, api: &A, interrupt: &Interrupt) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Ok(f) = self.failures.lock()
            && let (n @ 1.., Some(last)) = &*f
        {
            warnings.push(format!(
                "the deploy lock's heartbeat failed {n} time(s), last: {last}; other runs count the lock as stale {} after the last heartbeat that got through",
                fmt_duration(STALE_AFTER)
            ));
        }
        let unmark = Self::unmark();
        let release = async {
            let mut left = Vec::new();
            for guid in self.held() {
                let mut last = None;
                for _ in 0..2 {
                    match api.update_metadata(&guid, &unmark).await {
                        Ok(()) => {
                            last = None;
                            break;
                        }
                        Err(e) if e.is_not_found() => {
                            last = None;
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                if let Some(e) = last {
                    left.push(format!("app {guid}: {e}"));
                }
            }
            left
        };
        let left = tokio::select! {
            () = interrupt.abandon_token().cancelled() => vec!["interrupted twice".to_string()],
            () = tokio::time::sleep(RELEASE_BOUND) => vec![format!("no answer within {}", fmt_duration(RELEASE_BOUND))],
            left = release => left,
        };
        if !left.is_empty() {
            warnings.push(format!(
                "the deploy lock's annotations ({RUN_ID_ANNOTATION} and others) were not removed ({}); other runs count them as stale {} after the last heartbeat",
                left.join("; "),
                fmt_duration(STALE_AFTER)
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::api::AppState;

    const NOW: i64 = 1_767_323_045;

    fn marker(run_id: &str, heartbeat: Option<i64>) -> Marker {
        Marker {
            run_id: run_id.into(),
            run_by: "alice@ci-host".into(),
            started: "2026-01-02T03:00:00Z".into(),
            heartbeat,
        }
    }

    fn app(name: &str, annotations: &[(&str, &str)]) -> App {
        App {
            guid: format!("g-{name}").as_str().into(),
            name: name.into(),
            state: AppState::Started,
            labels: BTreeMap::new(),
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    #[test]
    fn freshness_by_owner_and_heartbeat_age() {
        let cases = [
            // (run, heartbeat age in seconds (None: none), expected)
            ("mine", Some(0), Freshness::Own),
            ("mine", Some(10_000), Freshness::Own),
            ("mine", None, Freshness::Own),
            ("other", Some(0), Freshness::Fresh),
            ("other", Some(4), Freshness::Fresh),
            ("other", Some(120), Freshness::Fresh),
            ("other", Some(121), Freshness::Stale),
            ("other", Some(86_400), Freshness::Stale),
            ("other", None, Freshness::Stale),
            // Clock skew: a heartbeat ahead of this clock is fresh, up to 15 minutes ahead.
            ("other", Some(-30), Freshness::Fresh),
            ("other", Some(-900), Freshness::Fresh),
            ("other", Some(-901), Freshness::Stale),
            ("other", Some(-86_400 * 365), Freshness::Stale),
        ];
        for (run, age, want) in cases {
            let m = marker(run, age.map(|a| NOW - a));
            assert_eq!(judge(&m, "mine", NOW), want, "{run} {age:?}");
        }
        assert_eq!(
            judge(&marker("other", Some(i64::MIN)), "mine", NOW),
            Freshness::Stale
        );
        assert_eq!(
            judge(&marker("other", Some(i64::MAX)), "mine", NOW),
            Freshness::Stale
        );
    }

    #[test]
    fn markers_are_read_from_annotations() {
        assert_eq!(Marker::of(&BTreeMap::new()), None);
        let a = app(
            "web",
            &[
                (RUN_ID_ANNOTATION, "1a2b3c4d5e6f7a8b"),
                (RUN_BY_ANNOTATION, "alice@ci-host"),
                (RUN_STARTED_ANNOTATION, "2026-01-02T03:00:00Z"),
                (HEARTBEAT_ANNOTATION, "2026-01-02T03:04:01Z"),
            ],
        );
        assert_eq!(
            Marker::of(&a.annotations),
            Some(Marker {
                run_id: "1a2b3c4d5e6f7a8b".into(),
                run_by: "alice@ci-host".into(),
                started: "2026-01-02T03:00:00Z".into(),
                heartbeat: Some(NOW - 4),
            })
        );
        let garbled = app(
            "web",
            &[(RUN_ID_ANNOTATION, "x"), (HEARTBEAT_ANNOTATION, "soon")],
        );
        let m = Marker::of(&garbled.annotations).unwrap();
        assert_eq!(m.heartbeat, None);
        assert_eq!(judge(&m, "mine", NOW), Freshness::Stale);
    }

    #[test]
    fn busy_names_the_other_run_and_skips_stale_and_own_marks() {
        let fresh = app(
            "web-candidate",
            &[
                (RUN_ID_ANNOTATION, "1a2b3c4d5e6f7a8b"),
                (RUN_BY_ANNOTATION, "alice@ci-host"),
                (RUN_STARTED_ANNOTATION, "2026-01-02T03:00:03Z"),
                (HEARTBEAT_ANNOTATION, "2026-01-02T03:04:01Z"),
            ],
        );
        let stale = app(
            "web",
            &[
                (RUN_ID_ANNOTATION, "ffff"),
                (HEARTBEAT_ANNOTATION, "2026-01-02T02:00:00Z"),
            ],
        );
        let own = app(
            "web-venerable",
            &[
                (RUN_ID_ANNOTATION, "mine"),
                (HEARTBEAT_ANNOTATION, "2026-01-02T03:04:05Z"),
            ],
        );
        let plain = app("web", &[]);
        assert_eq!(heartbeat_text(0), "just now");
        assert_eq!(heartbeat_text(75), "1m15s ago");
        assert_eq!(busy_among("web", [&plain, &stale, &own], "mine", NOW), None);
        let busy = busy_among("web", [&plain, &stale, &own, &fresh], "mine", NOW).unwrap();
        assert_eq!(
            busy.to_string(),
            "another deploy of web is running: started by alice@ci-host at 2026-01-02T03:00:03Z (run 1a2b3c4d…, last heartbeat 4s ago)"
        );
        let Busy::Run { marked, .. } = &busy else {
            panic!("{busy:?}")
        };
        assert_eq!(marked, "web-candidate");

        let ahead = app(
            "web",
            &[
                (RUN_ID_ANNOTATION, "ab"),
                (HEARTBEAT_ANNOTATION, "2026-01-02T03:05:05Z"),
            ],
        );
        let busy = busy_among("web", [&ahead], "mine", NOW).unwrap();
        assert!(
            busy.to_string().ends_with(
                "started by an unknown user at an unknown time (run ab…, last heartbeat 1m ahead of this machine's clock)"
            ),
            "{busy}"
        );
    }

    #[test]
    fn a_run_marks_with_its_identity_and_unmarks_every_key() {
        let lock = RunLock::new("alice@ci-host");
        assert_eq!(lock.run_id().len(), 16);
        assert_ne!(lock.run_id(), RunLock::new("alice@ci-host").run_id());
        let marks = lock.annotations(NOW);
        let m = Marker::of(&marks).unwrap();
        assert_eq!(m.run_by, "alice@ci-host");
        assert_eq!(m.heartbeat, Some(NOW));
        assert_eq!(judge(&m, lock.run_id(), NOW), Freshness::Own);
        assert_eq!(judge(&m, "another", NOW + 60), Freshness::Fresh);
        let unmark = RunLock::unmark();
        assert!(unmark.labels.is_empty());
        assert_eq!(
            unmark.annotations.keys().collect::<Vec<_>>(),
            marks.keys().collect::<Vec<_>>()
        );
        assert!(unmark.annotations.values().all(Option::is_none));
    }
}
