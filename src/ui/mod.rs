//! The `ui` layer: the only module that prints. It renders [`crate::deploy::Event`]s as
//! cf-CLI-like text ([`text::TextReporter`]: progress bar and spinners on a terminal, plain lines
//! otherwise) or as JSON lines ([`json::JsonReporter`]).
//!
//! Depends on: deploy::event, indicatif, serde_json. Must not: call the API or decide anything.

pub mod json;
pub mod text;

use std::io::IsTerminal;

use crate::cli::OutputFormat;
use crate::deploy::Reporter;

pub use json::JsonReporter;
pub use text::TextReporter;

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
