//! The release tasks of the new app (`--task-before-switch`): each runs as a Cloud Foundry
//! task of the candidate, with its droplet, environment and bindings, after the candidate is
//! healthy and smoke-tested and before any production route reaches it. Its log lines are
//! streamed as staging output is; a failure, the `--task-timeout` or an interrupt fails the
//! step (cancelling the task when it may still run), which rolls the deploy back.
//!
//! `--task-after-switch` tasks run the same way on the new version under the app's name once
//! every app is switched and retired; their failure is reported, not rolled back. Their step
//! is never tried again as a whole (a second create would run the command twice); a failed
//! read of the task's state is.

use std::collections::VecDeque;

use super::logs::LogRead;
use super::*;
use crate::deploy::api::{NewTask, TaskGuid, TaskState};
use crate::deploy::event::LogLine;
use crate::deploy::logs::shown_line;

/// How many of the task's own lines a failure shows.
const TASK_LAST_LINES: usize = 20;

/// How long the cancel of a task may take when the deploy stops waiting for it.
const CANCEL_BOUND: Duration = Duration::from_secs(30);

impl<A: CfApi> Exec<'_, A> {
    /// Runs task `name` (`command`) of the new app; `after_switch`: once it has the app's name.
    pub(super) async fn task_step(
        &self,
        step: &Step,
        ledger: &Ledger,
        (command, name, after_switch): (&str, &str, bool),
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        let app = step.app_label();
        let new = Self::new_app(ledger, step)?;
        let guid = new.guid.clone();
        // The name `cf tasks` knows the app by now.
        let cf_name = if after_switch { app } else { new.name };
        if after_switch && self.cancel.is_cancelled() {
            // Interrupted after the switch, before it started: the switch is finished, the
            // task not started. (Before the switch, the step loop stops before the step.)
            return Err(Error::Cancelled.into());
        }
        let mut log = self.staging_log(ledger, app, reporter).await;
        let task = NewTask {
            command: command.to_string(),
            name: name.to_string(),
            memory_mb: self.req.tasks.memory_mb,
            disk_mb: self.req.tasks.disk_mb,
        };
        // A create that has started is awaited to its end, interrupt or not: it may have
        // started the task, which must then be cancelled.
        let task_guid = self
            .api
            .create_task(&guid, &task)
            .await
            .map_err(Self::api_failure(step))?;
        self.interrupt.task_started(cf_name);
        let source = format!("APP/TASK/{name}");
        let mut tail: VecDeque<LogLine> = VecDeque::new();
        let started = Instant::now();
        let mut failed_reads = 0;
        let result = loop {
            let (state, read) = tokio::join!(
                self.read(self.api.get_task(&task_guid), step),
                self.read_staging(log.as_mut())
            );
            self.show_task_lines(read, app, &source, &mut tail, reporter);
            let state = match state {
                Ok(s) => {
                    failed_reads = 0;
                    s
                }
                Err(e @ Error::Api { .. })
                    if after_switch && failed_reads < AFTER_SWITCH_RETRIES =>
                {
                    // Only a read: asking again cannot run the task twice.
                    failed_reads += 1;
                    reporter.report(Event::Warning {
                        app: Some(app.to_string()),
                        message: format!(
                            "{}; trying again ({failed_reads} of {AFTER_SWITCH_RETRIES})",
                            error_chain(&e)
                        ),
                    });
                    if let Err(e) = self.pause(AFTER_SWITCH_PAUSE * failed_reads).await {
                        break Err(e);
                    }
                    continue;
                }
                Err(e) => break Err(e),
            };
            if state != TaskState::Running {
                let read = self.read_staging(log.as_mut()).await;
                self.show_task_lines(read, app, &source, &mut tail, reporter);
            }
            match state {
                TaskState::Succeeded => break Ok(()),
                TaskState::Failed(reason) => {
                    break Err(Error::TaskFailed {
                        app: app.to_string(),
                        task: name.to_string(),
                        reason,
                    });
                }
                TaskState::Running => {}
            }
            let elapsed = started.elapsed();
            if elapsed >= self.req.tasks.timeout {
                break Err(Error::TaskTimeout {
                    app: app.to_string(),
                    task: name.to_string(),
                    timeout: self.req.tasks.timeout,
                });
            }
            reporter.report(Event::Waiting {
                app: app.to_string(),
                what: "task".into(),
                elapsed,
                detail: format!("task {name} running"),
            });
            if let Err(e) = self.pause(self.req.poll_interval).await {
                break Err(e);
            }
        };
        let ended = match result {
            Ok(()) => Ok(StepOutput::None),
            Err(error) => {
                if !matches!(error, Error::TaskFailed { .. }) {
                    // Timed out or interrupted: the task may still run.
                    self.cancel_task(&task_guid, name, (app, cf_name), reporter)
                        .await;
                }
                if !tail.is_empty() {
                    reporter.report(Event::LastLogs {
                        app: app.to_string(),
                        name: cf_name.to_string(),
                        lines: tail.into_iter().collect(),
                    });
                }
                Err(error.into())
            }
        };
        self.interrupt.task_ended(cf_name);
        ended
    }

    /// Cancels a task the deploy no longer waits for (bounded; a failure is a warning that
    /// says how to check).
    async fn cancel_task(
        &self,
        guid: &TaskGuid,
        name: &str,
        (app, cf_name): (&str, &str),
        reporter: &mut dyn Reporter,
    ) {
        let message = match tokio::time::timeout(CANCEL_BOUND, self.api.cancel_task(guid)).await {
            Ok(Ok(())) => format!("task {name} was cancelled"),
            Ok(Err(e)) if e.status == Some(422) => return, // it ended meanwhile
            Ok(Err(e)) => format!(
                "task {name} could not be cancelled ({e}): it may still be running; check with 'cf tasks {cf_name}'"
            ),
            Err(_) => format!(
                "task {name} was not cancelled within {}: it may still be running; check with 'cf tasks {cf_name}'",
                crate::deploy::step::fmt_duration(CANCEL_BOUND)
            ),
        };
        reporter.report(Event::Warning {
            app: Some(app.to_string()),
            message,
        });
    }

    /// Reports the task's lines among the records of a read as [`Event::Log`]s and keeps the
    /// newest of them for a failure.
    fn show_task_lines(
        &self,
        read: LogRead,
        app: &str,
        source: &str,
        tail: &mut VecDeque<LogLine>,
        reporter: &mut dyn Reporter,
    ) {
        for r in Self::log_records(read, reporter) {
            let Some(line) = shown_line(&r) else { continue };
            let ours = matches!(&r.entry, crate::deploy::api::LogEntry::Line { source_type, .. } if source_type.eq_ignore_ascii_case(source));
            if !ours {
                continue;
            }
            tail.push_back(line.clone());
            if tail.len() > TASK_LAST_LINES {
                tail.pop_front();
            }
            reporter.report(Event::Log {
                app: app.to_string(),
                line,
            });
        }
    }
}
