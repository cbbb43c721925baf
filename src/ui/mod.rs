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
/// stderr so that `--output json` stays one event per line.
pub fn interrupted_notice(second: bool, switched: bool) {
    let text = match (second, switched) {
        (true, _) => "Interrupted again: no longer waiting; what is left to do is listed below.",
        (false, false) => {
            "Interrupted: rolling back, this takes a few seconds... (interrupt again to stop waiting)"
        }
        (false, true) => {
            "Interrupted after the switch: the new version serves; finishing the switch, this takes a few seconds... (interrupt again to stop waiting)"
        }
    };
    eprintln!("{text}");
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
