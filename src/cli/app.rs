//! The top-level command line of the `cf-zero-downtime` binary (standalone mode) and the
//! argument parser of the plugin command `cf zero-downtime-push`.
//!
//! Depends on: clap, `args`. Must not: read files or call the API.

use clap::{Parser, Subcommand};

use super::args::PushArgs;

/// `cf-zero-downtime`: zero-downtime push for Cloud Foundry.
///
/// Installed as a cf CLI plugin it runs as `cf zero-downtime-push` (alias `cf zdp`); run
/// directly it uses the login the cf CLI saved in `$CF_HOME/.cf/config.json`.
#[derive(Debug, Parser)]
#[command(name = "cf-zero-downtime", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands of the standalone binary.
// One command line is parsed per run: the size of the push flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Push an app without downtime, using the cf CLI's saved login (~/.cf/config.json).
    Push(PushArgs),
    /// Put the previous version of an app (APP_NAME-venerable) back without downtime.
    Rollback(super::rollback::RollbackArgs),
    /// Run the whole flow on the built-in Cloud Foundry simulator under load and print a report.
    Demo(crate::demo::DemoArgs),
    /// Run the local Cloud Foundry simulator (API, login, router) in the foreground.
    Sim(crate::sim::cli::SimArgs),
}

/// The arguments cf passes to `cf zero-downtime-push` (cf replaces the alias `zdp` with the
/// command name before starting the plugin).
#[derive(Debug, Parser)]
#[command(
    name = "zero-downtime-push",
    bin_name = "cf zero-downtime-push",
    about = "Push a new version of an app without downtime (blue-green: candidate app, smoke test, route switch)",
    disable_version_flag = true
)]
pub struct PluginPush {
    /// The push flags.
    #[command(flatten)]
    pub args: PushArgs,
}
