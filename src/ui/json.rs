//! The JSON renderer (`--output json`): one JSON object per event per line, flushed at once,
//! so CI tools can stream it. The last line is the `finished` event with the outcome and
//! durations.
//!
//! Depends on: deploy::event, serde_json. Must not: decide anything.

use std::io::Write;

use crate::deploy::event::{Event, Reporter};

/// Renders events as JSON lines to `W`.
pub struct JsonReporter<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonReporter<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Self {
        JsonReporter { out }
    }

    /// The writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Reporter for JsonReporter<W> {
    fn report(&mut self, event: Event) {
        // Events are plain data: serialization cannot fail; a closed pipe must not abort the deploy.
        if serde_json::to_writer(&mut self.out, &event).is_ok() {
            let _ignored = self.out.write_all(b"\n");
        }
        let _flushed = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::deploy::event::{Outcome, StepTime};

    #[test]
    fn one_json_object_per_line() {
        let mut r = JsonReporter::new(Vec::new());
        r.report(Event::StepFinished {
            index: 2,
            kind: "stage".into(),
            app: "web".into(),
            elapsed: Duration::from_millis(1500),
            warnings: vec!["w".into()],
        });
        r.report(Event::Finished {
            outcome: Outcome::RollbackIncomplete {
                error: "e".into(),
                manual_steps: vec!["cf delete web-candidate -f".into()],
            },
            elapsed: Duration::from_secs(3),
            steps: vec![StepTime {
                kind: "stage".into(),
                app: "web".into(),
                elapsed: Duration::from_millis(1500),
            }],
        });
        let out = String::from_utf8(r.into_inner()).unwrap();
        assert_eq!(
            out,
            concat!(
                r#"{"event":"step_finished","index":2,"kind":"stage","app":"web","elapsed_ms":1500,"warnings":["w"]}"#,
                "\n",
                r#"{"event":"finished","outcome":{"result":"rollback_incomplete","error":"e","manual_steps":["cf delete web-candidate -f"]},"elapsed_ms":3000,"steps":[{"kind":"stage","app":"web","elapsed_ms":1500}]}"#,
                "\n"
            )
        );
    }

    #[test]
    fn a_failed_after_switch_task_has_its_own_result() {
        let mut r = JsonReporter::new(Vec::new());
        r.report(Event::Finished {
            outcome: Outcome::AfterSwitchTaskFailed {
                error: "e".into(),
                not_run: vec![],
            },
            elapsed: Duration::from_secs(1),
            steps: vec![],
        });
        let out = String::from_utf8(r.into_inner()).unwrap();
        assert_eq!(
            out,
            concat!(
                r#"{"event":"finished","outcome":{"result":"after_switch_task_failed","error":"e","not_run":[]},"elapsed_ms":1000,"steps":[]}"#,
                "\n"
            )
        );
    }
}
