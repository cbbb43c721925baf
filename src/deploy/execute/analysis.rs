//! The canary analysis steps: the read of the request records before any change, the
//! candidate's scale per step, and the observed, judged window of each step (see
//! [`crate::deploy::analysis`] for the judging).
//!
//! A window's records are those log-cache holds for each app after its newest record at the
//! window's start (the platform's clock on both ends, so a client clock off by some seconds
//! does not shift the window, and the candidate's smoke-test requests on the temporary route
//! do not count). They are read at every poll, not only at the end, so a busy app's records
//! are read before log-cache's per-app buffer drops them. Records with the same timestamp
//! across a page boundary of a read could be skipped (the next read starts 1 ns after the
//! last record read); gorouter stamps requests in nanoseconds, so that is rare and only ever
//! undercounts.

use std::time::SystemTime;

use super::*;
use crate::deploy::analysis::{self, AnalysisConfig, VersionStats, judge};
use crate::deploy::api::{LogQuery, LogRecord};
use crate::deploy::step::fmt_duration;

/// Records per read (log-cache's cap of one read).
const PAGE: u32 = 1000;
/// Reads per app and poll at most (bounds a catch-up after a slow poll).
const MAX_PAGES: usize = 50;

/// A request count rounded down to a power of ten ("100+"), so progress lines change rarely.
fn bucket(n: u64) -> String {
    if n < 10 {
        return n.to_string();
    }
    let mut p = 10u64;
    // Bounded: at most 19 multiplications before u64 overflows (checked).
    while let Some(next) = p.checked_mul(10).filter(|x| *x <= n) {
        p = next;
    }
    format!("{p}+")
}

/// Judges canary step `n` of `steps` of `app` on the numbers of the new and the live version
/// (`(candidate, live)`, with their instances), reports the verdict and returns the new
/// version's share of the requests in percent; [`Error::CanaryFailed`] when it failed.
fn judged(
    app: &str,
    (n, steps): (usize, usize),
    cfg: &AnalysisConfig,
    (candidate_instances, live_instances): (u32, u32),
    (candidate, live): (VersionStats, VersionStats),
    reporter: &mut dyn Reporter,
) -> Result<u32, Error> {
    let verdict = judge(cfg, &candidate, &live);
    let share = analysis::share_percent(candidate_instances, live_instances);
    reporter.report(Event::CanaryAnalysis {
        app: app.to_string(),
        step: n,
        steps,
        traffic_share_pct: share,
        candidate_instances,
        live_instances,
        interval: cfg.interval,
        candidate,
        live,
        verdict: verdict.kind,
        reasons: verdict.reasons.clone(),
    });
    if !verdict.kind.passed() {
        return Err(Error::CanaryFailed {
            app: app.to_string(),
            step: n,
            steps,
            share,
            reasons: verdict.reasons.join("; "),
        });
    }
    Ok(share)
}

/// The records of one app since a point of its own log's time.
struct Window {
    since: SystemTime,
    records: Vec<LogRecord>,
}

impl<A: CfApi> Exec<'_, A> {
    /// Pauses until the next poll of an analysis window that began at `started` and lasts
    /// `interval`; false once the window is over (no pause then).
    async fn next_poll_within(&self, started: Instant, interval: Duration) -> Result<bool, Error> {
        let elapsed = started.elapsed();
        if elapsed >= interval {
            return Ok(false);
        }
        self.pause((interval - elapsed).min(self.req.poll_interval))
            .await?;
        Ok(true)
    }

    /// Reads the live app's newest router record once: a platform without them fails the
    /// deploy before any change.
    pub(super) async fn check_request_records(
        &self,
        step: &Step,
        live: &AppGuid,
        live_name: &str,
    ) -> Result<StepOutput, StepFailure> {
        let q = LogQuery {
            since: SystemTime::UNIX_EPOCH,
            lines: false,
            requests: true,
            limit: 1,
            newest: true,
        };
        self.log_read(step, live, live_name, &q).await?;
        Ok(StepOutput::None)
    }

    /// One log-cache read, abandoned when interrupted; log-cache absent or forbidden is
    /// [`Error::AnalysisUnavailable`].
    async fn log_read(
        &self,
        step: &Step,
        app_guid: &AppGuid,
        name: &str,
        q: &LogQuery,
    ) -> Result<Vec<LogRecord>, Error> {
        let r = tokio::select! {
            () = self.cancel.cancelled() => return Err(Error::Cancelled),
            r = self.api.app_log(app_guid, q) => r,
        };
        match r {
            Ok(records) => Ok(records),
            Err(e) if e.is_unavailable() => Err(Error::AnalysisUnavailable {
                app: step.app_label().to_string(),
                live_name: name.to_string(),
                reason: e.to_string(),
            }),
            Err(e) => Err(Self::api_err(step, e)),
        }
    }

    /// The instances of an app's `web` process (and the process), read now.
    async fn web_process(
        &self,
        step: &Step,
        app_guid: &AppGuid,
    ) -> Result<crate::deploy::api::Process, Error> {
        let processes = self.read(self.api.list_processes(app_guid), step).await?;
        processes
            .into_iter()
            .find(|p| p.process_type == "web")
            .ok_or_else(|| Self::missing(step, "a web process"))
    }

    /// Scales the candidate's `web` process for `percent` % of the requests next to the live
    /// app's instances (its count before the first canary scale at 100 %), then waits until
    /// every instance runs.
    pub(super) async fn scale_candidate(
        &self,
        step: &Step,
        ledger: &Ledger,
        percent: u32,
        live: &AppGuid,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        let NewApp { guid, name } = Self::new_app(ledger, step)?;
        let web = self.web_process(step, guid).await?;
        let original = ledger
            .entries()
            .iter()
            .find_map(|(s, o)| match o {
                StepOutput::Scaled { original, .. } if s.app == step.app => Some(*original),
                _ => None,
            })
            .unwrap_or(web.instances);
        let live_n = self.web_process(step, live).await?.instances;
        let k = analysis::candidate_instances(percent, live_n, original);
        if k != web.instances {
            self.api
                .scale_process(&web.guid, k)
                .await
                .map_err(Self::api_failure(step))?;
        }
        self.wait_healthy(step, step.app_label(), guid, name, reporter)
            .await?;
        Ok(StepOutput::Scaled {
            process_guid: web.guid,
            original,
            instances: k,
        })
    }

    /// The start of a window: after the newest record log-cache holds for the app now.
    async fn window_start(&self, step: &Step, app: &AppGuid, name: &str) -> Result<Window, Error> {
        let q = LogQuery {
            since: SystemTime::UNIX_EPOCH,
            lines: true,
            requests: true,
            limit: 1,
            newest: true,
        };
        let newest = self.log_read(step, app, name, &q).await?;
        let since = newest
            .last()
            .map_or(SystemTime::UNIX_EPOCH, |r| r.at + Duration::from_nanos(1));
        Ok(Window {
            since,
            records: Vec::new(),
        })
    }

    /// Reads what is new in the window (up to [`MAX_PAGES`] reads).
    async fn collect(
        &self,
        step: &Step,
        app: &AppGuid,
        name: &str,
        w: &mut Window,
    ) -> Result<(), Error> {
        for _ in 0..MAX_PAGES {
            let q = LogQuery {
                since: w.since,
                lines: true,
                requests: true,
                limit: PAGE,
                newest: false,
            };
            let page = self.log_read(step, app, name, &q).await?;
            let full = page.len() >= PAGE as usize;
            if let Some(last) = page.last() {
                w.since = last.at + Duration::from_nanos(1);
            }
            w.records.extend(page);
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// The analysis at a pause of a canary deployment (`--analysis`): the new process's
    /// instances and the old process's serve under the same app GUID, and log-cache tags a
    /// request with its instance only in the `RTR` access line (`instance_id`: the Diego
    /// instance GUID, which process stats report too). So both versions are judged from
    /// access lines, split by the instance GUIDs of the new process(es) read at the start
    /// and the end of the window; timers are not used here, and a platform that does not
    /// forward `RTR` lines to log-cache gives no traffic (see `--analysis-no-traffic`).
    pub(super) async fn deployment_analysis(
        &self,
        step: &Step,
        app_guid: &AppGuid,
        name: &str,
        dep: &Deployment,
        reporter: &mut dyn Reporter,
    ) -> Result<(), Error> {
        let Some(cfg) = self.req.analysis.as_ref() else {
            return Ok(());
        };
        let app = step.app_label();
        let (n, steps) = dep
            .canary_step
            .map_or((1, 1), |(c, t)| (c as usize, t as usize));
        let mut ids = std::collections::BTreeSet::new();
        self.new_instance_ids(step, dep, &mut ids).await?;
        let mut w = self.window_start(step, app_guid, name).await?;
        let started = Instant::now();
        while self.next_poll_within(started, cfg.interval).await? {
            self.collect(step, app_guid, name, &mut w).await?;
            reporter.report(Event::Waiting {
                app: app.to_string(),
                what: "analysis".into(),
                elapsed: started.elapsed(),
                detail: format!(
                    "observing {name} for {} ({} router records so far)",
                    fmt_duration(cfg.interval),
                    bucket(w.records.len() as u64)
                ),
            });
        }
        let candidate_instances = self.new_instance_ids(step, dep, &mut ids).await?;
        let (new, old) = analysis::split_by_instance(std::mem::take(&mut w.records), &ids);
        let c = VersionStats::from_records(&new);
        let l = VersionStats::from_records(&old);
        let processes = self.read(self.api.list_processes(app_guid), step).await?;
        let live_n: u32 = processes
            .iter()
            .filter(|p| p.process_type == "web" && !dep.new_processes.contains(&p.guid))
            .map(|p| p.instances)
            .sum();
        let instances = (candidate_instances, live_n);
        judged(app, (n, steps), cfg, instances, (c, l), reporter)?;
        Ok(())
    }

    /// Adds the ids the router gives the new process's instances (the Diego instance GUID,
    /// and `<process-guid>:<index>`) to `ids`; returns how many instances it has.
    async fn new_instance_ids(
        &self,
        step: &Step,
        dep: &Deployment,
        ids: &mut std::collections::BTreeSet<String>,
    ) -> Result<u32, Error> {
        let mut count = 0u32;
        for p in &dep.new_processes {
            let stats = self.read(self.api.process_stats(p), step).await?;
            for s in &stats {
                count += 1;
                if let Some(g) = &s.instance_guid {
                    ids.insert(g.clone());
                }
                ids.insert(format!("{p}:{}", s.index));
            }
        }
        Ok(count)
    }

    /// Observes both versions for the interval, reports the verdict, and fails the step when
    /// the verdict fails.
    pub(super) async fn analyse(
        &self,
        step: &Step,
        ledger: &Ledger,
        (n, steps): (usize, usize),
        live: &AppGuid,
        live_name: &str,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        let cfg = self
            .req
            .analysis
            .as_ref()
            .ok_or_else(|| Self::missing(step, "the analysis settings"))?;
        let NewApp { guid, name } = Self::new_app(ledger, step)?;
        let app = step.app_label();
        let mut cand = self.window_start(step, guid, name).await?;
        let mut old = self.window_start(step, live, live_name).await?;
        let started = Instant::now();
        while self.next_poll_within(started, cfg.interval).await? {
            self.collect(step, guid, name, &mut cand).await?;
            self.collect(step, live, live_name, &mut old).await?;
            let (c, l) = (
                VersionStats::from_records(&cand.records),
                VersionStats::from_records(&old.records),
            );
            reporter.report(Event::Waiting {
                app: app.to_string(),
                what: "analysis".into(),
                elapsed: started.elapsed(),
                // Counts are in the verdict; a steady text keeps plain output to one line.
                detail: format!(
                    "observing the new version and {live_name} for {} ({} and {} requests so far)",
                    fmt_duration(cfg.interval),
                    bucket(c.requests),
                    bucket(l.requests)
                ),
            });
        }
        let c = VersionStats::from_records(&cand.records);
        let l = VersionStats::from_records(&old.records);
        let k = self.web_process(step, guid).await?.instances;
        let live_n = self.web_process(step, live).await?.instances;
        let share = judged(app, (n, steps), cfg, (k, live_n), (c.clone(), l), reporter)?;
        if n + 1 >= steps {
            let p99 = c
                .p99
                .map_or_else(|| "-".to_string(), |d| format!("{}ms", d.as_millis()));
            reporter.report(Event::CanaryPromoted {
                app: app.to_string(),
                reason: format!(
                    "every canary step below 100% passed; the last, at {share}% of the requests: {} requests, {} 5xx, p99 {p99}",
                    c.requests,
                    analysis::fmt_ppm(c.error_ppm())
                ),
            });
        }
        Ok(StepOutput::None)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_bucketed() {
        let b: Vec<String> = [0, 9, 10, 99, 100, 12_345, u64::MAX]
            .into_iter()
            .map(super::bucket)
            .collect();
        assert_eq!(
            b,
            [
                "0",
                "9",
                "10+",
                "10+",
                "100+",
                "10000+",
                "10000000000000000000+"
            ]
        );
    }
}
