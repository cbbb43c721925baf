//! The platform's log of the app being deployed (see `deploy::logs`): staging output streamed
//! while a build stages, and a failed app's last lines, read before the rollback deletes it.
//! Every read is bounded (a record limit, [`logs::READ_TIMEOUT`], the cancel token) and never
//! fails a deploy: log-cache missing is said once per deploy, any other failed read is skipped.

use super::*;
use crate::deploy::api::{LogQuery, LogRecord};
use crate::deploy::logs::{self, LogCursor};

/// What one log-cache read gave.
pub(super) enum LogRead {
    /// The records, oldest first.
    Records(Vec<LogRecord>),
    /// log-cache is not there; the warning to give, the first time in this deploy only.
    Gone(Option<String>),
    /// Not read (log-cache known missing, cancelled), or a read that failed or took too long:
    /// the next poll tries again.
    Skipped,
}

/// The staging output of one build being streamed: the app whose log is read and where the
/// stream stands.
pub(super) struct StagingLog {
    guid: AppGuid,
    cursor: LogCursor,
}

impl<A: CfApi> Exec<'_, A> {
    /// One bounded read of the app's log; never an error.
    pub(super) async fn read_log(&self, app_guid: &AppGuid, query: &LogQuery) -> LogRead {
        if self.logs.is_gone() {
            return LogRead::Skipped;
        }
        let read = tokio::select! {
            () = self.cancel.cancelled() => return LogRead::Skipped,
            r = tokio::time::timeout(logs::READ_TIMEOUT, self.api.app_log(app_guid, query)) => r,
        };
        match read {
            Ok(Ok(records)) => LogRead::Records(records),
            Ok(Err(e)) if e.is_unavailable() => LogRead::Gone(self.logs.mark_gone().then(|| {
                format!(
                    "log-cache is not available ({e}): staging logs and the last log lines of a failed app are not shown"
                )
            })),
            Ok(Err(_)) | Err(_) => LogRead::Skipped,
        }
    }

    /// The records of a read (none when it gave none), warning when log-cache is found missing.
    pub(super) fn log_records(read: LogRead, reporter: &mut dyn Reporter) -> Vec<LogRecord> {
        match read {
            LogRead::Records(r) => r,
            LogRead::Gone(Some(message)) => {
                reporter.report(Event::Warning { app: None, message });
                Vec::new()
            }
            LogRead::Gone(None) | LogRead::Skipped => Vec::new(),
        }
    }

    /// Whether the run created manifest app `app` (its whole log is this run's).
    fn created(ledger: &Ledger, app: &str) -> bool {
        ledger
            .entries()
            .iter()
            .any(|(s, _)| s.app_label() == app && matches!(s.action, Action::ApplyManifest { .. }))
    }

    /// Where this run's records of manifest app `app` (GUID `guid`) begin: all of them for an
    /// app the run created; for a live app (rolling, canary), where its build's stream began,
    /// else from `step_at` on (allowing [`logs::LOG_SKEW`] for the clocks).
    fn log_since(
        &self,
        ledger: &Ledger,
        app: &str,
        guid: &AppGuid,
        step_at: SystemTime,
    ) -> SystemTime {
        if Self::created(ledger, app) {
            return SystemTime::UNIX_EPOCH;
        }
        self.logs.begun(guid).unwrap_or_else(|| {
            step_at
                .checked_sub(logs::LOG_SKEW)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        })
    }

    /// The stream of the staging output of manifest app `app` (`None` when the ledger has no
    /// app for it, or log-cache is missing). For a live app it begins after the newest record
    /// log-cache holds now (by the platform's clock), so that earlier builds are not repeated.
    pub(super) async fn staging_log(
        &self,
        ledger: &Ledger,
        app: &str,
        reporter: &mut dyn Reporter,
    ) -> Option<StagingLog> {
        if self.logs.is_gone() {
            return None;
        }
        let guid = ledger.new_app(app)?.guid;
        let now = SystemTime::now();
        let since = if Self::created(ledger, app) {
            SystemTime::UNIX_EPOCH
        } else {
            let window = now
                .checked_sub(logs::BASELINE_WINDOW)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let query = LogQuery {
                since: window,
                lines: true,
                requests: true,
                limit: 1,
                newest: true,
            };
            let since = match self.read_log(guid, &query).await {
                LogRead::Records(r) => r
                    .last()
                    .map_or(window, |r| r.at + std::time::Duration::from_nanos(1)),
                LogRead::Gone(warning) => {
                    Self::log_records(LogRead::Gone(warning), reporter);
                    return None;
                }
                LogRead::Skipped => now.checked_sub(logs::LOG_SKEW).unwrap_or(window),
            };
            self.logs.begin(guid, since);
            since
        };
        Some(StagingLog {
            guid: guid.clone(),
            cursor: LogCursor::new(since),
        })
    }

    /// Reads the records written since the last read (nothing without a stream), a few pages
    /// at the most (see [`logs::STREAM_PAGES`]).
    pub(super) async fn read_staging(&self, log: Option<&mut StagingLog>) -> LogRead {
        let Some(l) = log else {
            return LogRead::Skipped;
        };
        let mut fresh = Vec::new();
        for _ in 0..logs::STREAM_PAGES {
            let query = l.cursor.query(logs::STREAM_LIMIT);
            match self.read_log(&l.guid, &query).await {
                LogRead::Records(r) => {
                    let full = u32::try_from(r.len()).unwrap_or(u32::MAX) >= logs::STREAM_LIMIT;
                    fresh.extend(l.cursor.accept(r, logs::STREAM_LIMIT));
                    if !full {
                        break;
                    }
                }
                // log-cache gone: said (its lines are not worth more than the warning).
                gone @ LogRead::Gone(Some(_)) => return gone,
                LogRead::Gone(None) | LogRead::Skipped => break,
            }
        }
        LogRead::Records(fresh)
    }

    /// Reports the staging lines among the records of a read as [`Event::Log`]s.
    pub(super) fn show_staging(read: LogRead, app: &str, reporter: &mut dyn Reporter) {
        for r in Self::log_records(read, reporter) {
            if logs::is_staging(&r)
                && let Some(line) = logs::shown_line(&r)
            {
                reporter.report(Event::Log {
                    app: app.to_string(),
                    line,
                });
            }
        }
    }

    /// Reads and reports ([`Event::LastLogs`]) the newest telling lines of the app of the
    /// failed `step`, written since the run created it (or, for a live app, since its build
    /// began, else since `step_at`).
    /// Returns whether any were shown.
    pub(super) async fn last_logs(
        &self,
        ledger: &Ledger,
        step: &Step,
        step_at: SystemTime,
        reporter: &mut dyn Reporter,
    ) -> bool {
        let app = step.app_label();
        let Some(NewApp { guid, name }) = ledger.new_app(app) else {
            return false;
        };
        let query = LogQuery {
            since: self.log_since(ledger, app, guid, step_at),
            lines: true,
            requests: false,
            limit: logs::LAST_READ_LIMIT,
            newest: true,
        };
        let read = self.read_log(guid, &query).await;
        let lines = logs::last_lines(&Self::log_records(read, reporter));
        if lines.is_empty() {
            return false;
        }
        reporter.report(Event::LastLogs {
            app: app.to_string(),
            name: name.to_string(),
            lines,
        });
        true
    }
}

/// Whether the platform's log may tell why `error` happened (the app failed to stage, start
/// or answer), so that its last lines are worth showing.
pub(super) fn logs_tell(error: &Error) -> bool {
    matches!(
        error,
        Error::StagingFailed { .. }
            | Error::StagingTimeout { .. }
            | Error::Crashed { .. }
            | Error::HealthTimeout { .. }
            | Error::DeploymentEnded { .. }
            | Error::DeploymentStalled { .. }
            | Error::Smoke { .. }
    )
}
