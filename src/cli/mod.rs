//! Command-line arguments: clap definitions and syntactic validation.
//!
//! Depends on: clap. Must not: read files or call the API.

pub mod app;
pub mod args;
pub mod rollback;

pub use app::{Cli, Command, PluginPush};
pub use args::AnalysisNoTraffic;
pub use args::{
    DrainArg, HealthCheckType, Lifecycle, OldApp, OutputFormat, PushArgs, SmokeScheme, Strategy,
};
pub use rollback::{PluginRollback, RollbackArgs};
