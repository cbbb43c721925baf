//! The auto drain step (`--drain auto`, [`Action::DrainAuto`]): rounds of router probes and
//! log-cache reads fed to [`drain::Gauge`] until it says the old version is quiet, bounded by
//! the maximum and ended early by the (second) interrupt. Falls back to the fixed maximum
//! when the routes cannot be probed, and says why.

use super::*;
use crate::deploy::api::LogQuery;
use crate::deploy::drain::{self, Gauge, ProbeTarget, Prober, Verdict};
use crate::deploy::step::fmt_duration;

/// Request records kept per log read: only the newest one matters.
const LOG_LIMIT: u32 = 20;

impl<A: CfApi> Exec<'_, A> {
    /// Runs the auto drain of at most `max` after the unmaps recorded in `ledger`.
    pub(super) async fn auto_drain(
        &self,
        max: Duration,
        ledger: &Ledger,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        let start = Instant::now();
        // Records are stamped by the platform's clock: allow for a client clock ahead of it.
        let since = SystemTime::now()
            .checked_sub(CLOCK_SKEW)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let (targets, old_apps) = match self.drain_targets(ledger).await {
            Ok(t) => t,
            Err(why) => return self.fixed_fallback(max, start, &why, reporter).await,
        };
        let prober = match Prober::new(&self.req.probe, &targets) {
            Ok(p) => p,
            Err(e) => {
                let why = format!("the HTTP client for the probes could not be set up: {e}");
                return self.fixed_fallback(max, start, &why, reporter).await;
            }
        };
        let mut gauge = Gauge::new(max, !targets.is_empty());
        let query = LogQuery {
            since,
            lines: false,
            requests: true,
            limit: LOG_LIMIT,
            newest: true,
        };
        loop {
            if !targets.is_empty() {
                match prober.round(&targets, self.cancel).await {
                    None => return Err(Error::Cancelled.into()),
                    Some(Ok(all_refused)) => gauge.probe_round(all_refused),
                    Some(Err(why)) => {
                        return self.fixed_fallback(max, start, &why, reporter).await;
                    }
                }
            }
            if !gauge.without_logs() {
                self.read_newest_request(&old_apps, &query, start, &mut gauge, reporter)
                    .await?;
            }
            let elapsed = start.elapsed();
            match gauge.verdict(elapsed) {
                Verdict::Done(reason) => {
                    reporter.report(Event::DrainEnded {
                        elapsed,
                        early: elapsed < max,
                        reason,
                    });
                    return Ok(StepOutput::None);
                }
                Verdict::Wait(detail) => {
                    reporter.report(Event::Waiting {
                        app: String::new(),
                        what: "drain".into(),
                        elapsed,
                        detail,
                    });
                    let left = max.saturating_sub(elapsed);
                    self.pause(drain::ROUND_PAUSE.min(left)).await?;
                }
            }
        }
    }

    /// Feeds the newest request record of the old apps to the gauge; an unavailable log-cache
    /// is said once and then not asked again; another failed read counts as nothing seen.
    async fn read_newest_request(
        &self,
        old_apps: &[AppGuid],
        query: &LogQuery,
        start: Instant,
        gauge: &mut Gauge,
        reporter: &mut dyn Reporter,
    ) -> Result<(), Error> {
        let mut newest: Option<SystemTime> = None;
        for guid in old_apps {
            let r = tokio::select! {
                () = self.cancel.cancelled() => return Err(Error::Cancelled),
                r = self.api.app_log(guid, query) => r,
            };
            match r {
                Ok(records) => {
                    let n = records
                        .iter()
                        .filter(|r| matches!(r.entry, crate::deploy::api::LogEntry::Request { .. }))
                        .map(|r| r.at)
                        .max();
                    newest = newest.max(n);
                }
                Err(e) if e.is_unavailable() => {
                    gauge.logs_unavailable();
                    let message = format!(
                        "the drain cannot read the old app's requests from log-cache ({e}); it relies on router probes and a floor of {}",
                        fmt_duration(gauge.floor())
                    );
                    reporter.report(Event::Warning { app: None, message });
                    return Ok(());
                }
                // A passing failure: this round shows no quiet (the first read decides), and
                // the maximum bounds the drain anyway.
                Err(_) => return Ok(()),
            }
        }
        gauge.log_read(start.elapsed(), newest);
        Ok(())
    }

    /// The probe targets of the unmapped routes and the old apps' GUIDs, or why the routes
    /// cannot be probed.
    async fn drain_targets(
        &self,
        ledger: &Ledger,
    ) -> Result<(Vec<ProbeTarget>, Vec<AppGuid>), String> {
        let mut targets: Vec<ProbeTarget> = Vec::new();
        let mut old_apps: Vec<AppGuid> = Vec::new();
        let mut instances: BTreeMap<(AppGuid, String), u32> = BTreeMap::new();
        for (step, _) in ledger.entries() {
            let Action::UnmapRoute {
                route, destination, ..
            } = &step.action
            else {
                continue;
            };
            let a = &route.address;
            if let Some(why) = drain::unprobeable(&a.host, a.port, destination.protocol.as_deref())
            {
                return Err(format!("route {a}: {why}"));
            }
            let guid = destination.app_guid.clone();
            if !old_apps.contains(&guid) {
                old_apps.push(guid.clone());
            }
            let key = (guid.clone(), destination.process_type.clone());
            let n = match instances.get(&key) {
                Some(n) => *n,
                None => {
                    let processes =
                        self.api.list_processes(&guid).await.map_err(|e| {
                            format!("the old app's instances could not be read: {e}")
                        })?;
                    let n = processes
                        .iter()
                        .find(|p| p.process_type == destination.process_type)
                        .map_or(0, |p| p.instances);
                    instances.insert(key, n);
                    n
                }
            };
            if n == 0 {
                continue;
            }
            targets.push(ProbeTarget {
                url: smoke::route_url(&self.req.probe, &a.url()),
                app_guid: guid,
                instances: n,
            });
        }
        Ok((targets, old_apps))
    }

    /// The fixed drain of `max` (counted from `start`) when probing is not possible.
    async fn fixed_fallback(
        &self,
        max: Duration,
        start: Instant,
        why: &str,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        let reason = format!("fixed drain of {}: {why}", fmt_duration(max));
        reporter.report(Event::Waiting {
            app: String::new(),
            what: "drain".into(),
            elapsed: start.elapsed(),
            detail: reason.clone(),
        });
        self.pause(max.saturating_sub(start.elapsed())).await?;
        reporter.report(Event::DrainEnded {
            elapsed: start.elapsed(),
            early: false,
            reason,
        });
        Ok(StepOutput::None)
    }
}
