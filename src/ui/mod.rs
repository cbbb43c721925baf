//! The `ui` layer: the only module that prints. It renders [`crate::deploy::Event`]s as
//! cf-CLI-like text ([`text::TextReporter`]: progress bar and spinners on a terminal, plain lines
//! otherwise) or as JSON lines ([`json::JsonReporter`]).
//!
//! Depends on: deploy::event, indicatif, serde_json. Must not: call the API or decide anything.

pub mod json;
pub mod text;

use std::io::IsTerminal;

use crate::deploy::Reporter;

pub use json::JsonReporter;
pub use text::TextReporter;

/// How a run's events are printed (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// cf-CLI-like text: progress on a terminal, plain lines otherwise.
    #[default]
    Text,
    /// One JSON object per event and line, for CI.
    Json,
}

/// Says at once that an interrupt was received: the cf CLI dies on Ctrl-C and the prompt may
/// already be back, so the user must learn that the plugin is still cleaning up. Written to
/// stderr so that `--output json` stays one event per line. `task_app` is the app (as `cf`
/// names it now) whose release task runs, if one does.
pub fn interrupted_notice(second: bool, switched: bool, task_app: Option<&str>) {
    eprintln!("{}", interrupted_text(second, switched, task_app));
}

/// The text of [`interrupted_notice`].
pub fn interrupted_text(second: bool, switched: bool, task_app: Option<&str>) -> String {
    match (second, switched, task_app) {
        (true, _, Some(app)) => format!(
            "Interrupted again: no longer waiting; the task may still be running: check with 'cf tasks {app}' (and 'cf terminate-task {app} <id>' to stop it); what is left to do is listed below."
        ),
        (true, _, None) => {
            "Interrupted again: no longer waiting; what is left to do is listed below.".into()
        }
        (false, false, _) => {
            "Interrupted: rolling back, this takes a few seconds... (interrupt again to stop waiting)".into()
        }
        (false, true, Some(_)) => {
            "Interrupted during an after-switch task: the new version serves and stays deployed; cancelling the task... (interrupt again to stop waiting)".into()
        }
        (false, true, None) => {
            "Interrupted after the switch: the new version serves; finishing the switch, this takes a few seconds... (interrupt again to stop waiting)".into()
        }
    }
}

/// The reporter for `--output`, writing to stdout; text mode draws progress only when stdout
/// and stderr are terminals.
pub fn stdout_reporter(format: OutputFormat) -> Box<dyn Reporter> {
    match format {
        OutputFormat::Json => Box::new(JsonReporter::new(std::io::stdout())),
        OutputFormat::Text => {
            if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
                Box::new(TextReporter::terminal(std::io::stdout()))
            } else {
                Box::new(TextReporter::plain(std::io::stdout()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_interrupt_during_a_task_says_how_to_check_on_it() {
        assert_eq!(
            interrupted_text(true, false, Some("web-candidate")),
            "Interrupted again: no longer waiting; the task may still be running: check with 'cf tasks web-candidate' (and 'cf terminate-task web-candidate <id>' to stop it); what is left to do is listed below."
        );
        assert!(interrupted_text(true, true, Some("web")).contains("check with 'cf tasks web'"));
        assert_eq!(
            interrupted_text(true, true, None),
            "Interrupted again: no longer waiting; what is left to do is listed below."
        );
        assert!(interrupted_text(false, true, Some("web")).starts_with(
            "Interrupted during an after-switch task: the new version serves and stays deployed"
        ));
    }
}
