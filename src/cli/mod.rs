//! Command-line arguments: clap definitions and syntactic validation.
//!
//! Depends on: clap. Must not: read files or call the API.

pub mod args;

pub use args::{OldApp, OutputFormat, PushArgs, Strategy};
