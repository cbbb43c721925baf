//! The command layer: one module per command, each holding its flags (clap derive), its
//! preflight (flags, manifest, app bits, connect, discover) and its one call into the core.
//!
//! | module       | what lives there                                                          |
//! |--------------|---------------------------------------------------------------------------|
//! | [`push`]     | `zero-downtime-push`: flags, preflight, [`push::run`]                      |
//! | [`rollback`] | `zero-downtime-rollback`: flags, preflight, [`rollback::run`]              |
//! | [`plugin`]   | plugin mode: `SendMetadata`, uninstall, the target from the cf CLI        |
//! | [`sim`]      | `cf-zero-downtime sim`: the simulator in the foreground                   |
//! | [`demo`]     | `cf-zero-downtime demo`: the whole flow on the simulator, under load      |
//! | [`flags`]    | the flags the commands share and how the core's enums are spelled         |
//! | `session`    | what every command that talks to Cloud Controller does: connect, signals  |
//! | [`adapter`]  | the deploy engine's [`CfApi`](crate::deploy::CfApi) over `cf` and `package` |
//!
//! Both ways the binary runs end in the same call: the plugin (`<bin> <port>
//! zero-downtime-push ARGS`, the target gathered from the cf CLI) and the standalone binary
//! (`cf-zero-downtime push ARGS`, the cf CLI's saved login) each build a [`Login`] and call
//! [`push::run`] (or [`rollback::run`]).
//!
//! Depends on: every core layer (`cf`, `manifest`, `package`, `deploy`, `ui`), `plugin` (the
//! protocol), `sim`. Nothing below it imports it. Prints: failures that end a command before it
//! has a reporter (cf-CLI-like `FAILED`); everything after goes through `ui`.

pub mod adapter;
pub mod demo;
pub mod flags;
pub mod plugin;
pub mod push;
pub mod rollback;
pub(crate) mod session;
pub mod sim;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::cf::{Target, TokenProvider};
use crate::plugin::{Error, TokenSource, error_chain, standalone};
use crate::ui::text::terminal_safe;

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
    Push(push::PushArgs),
    /// Put the previous version of an app (APP_NAME-venerable) back without downtime.
    #[command(after_help = rollback::ROLLBACK_RUNS_NO_TASKS)]
    Rollback(rollback::RollbackArgs),
    /// Run the whole flow on the built-in Cloud Foundry simulator under load and print a report.
    Demo(demo::DemoArgs),
    /// Run the local Cloud Foundry simulator (API, login, router) in the foreground.
    Sim(sim::SimArgs),
}

/// Who runs a command where: the cf target (endpoint, org, space, user) and where its access
/// tokens come from, gathered in full before the command changes anything.
#[derive(Clone)]
pub struct Login {
    /// Endpoint, org, space, skip-SSL and user.
    pub target: Target,
    /// Tokens for the target's API (the cf CLI's, or its saved config's).
    pub token: Arc<dyn TokenProvider>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Runs the binary: `args` is the whole argv. When the first argument is a number the cf CLI
/// started the binary as a plugin (`<bin> <port> <command> ...`); otherwise it is a normal
/// command line. Returns the process exit code.
pub fn main(args: &[OsString]) -> ExitCode {
    if args.get(1).is_some_and(|a| plugin::looks_like_port(a)) {
        return plugin::run(&args[1..]);
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    match cli.command {
        Command::Push(args) => with_saved_login(|login| push::run(args, login)),
        Command::Rollback(args) => with_saved_login(|login| rollback::run(args, login)),
        Command::Demo(args) => demo::run(args),
        Command::Sim(args) => sim::run_foreground(args),
    }
}

/// Runs a command with the cf CLI's saved login (`$CF_HOME/.cf/config.json`). Like the
/// plugin path, it has a usable token before anything else, and prints the token source's
/// warnings (e.g. a refreshed token that could not be saved) at the end.
fn with_saved_login<F>(run: impl FnOnce(Login) -> F) -> ExitCode
where
    F: std::future::Future<Output = ExitCode>,
{
    block_on(async {
        let saved = match standalone::config_path().and_then(|p| standalone::load(&p)) {
            Ok(saved) => saved,
            Err(e) => return fail(&e),
        };
        if let Err(e) = saved.token.token().await {
            return fail(&Error::Auth(e));
        }
        let source = saved.token;
        let token: Arc<dyn TokenProvider> = source.clone();
        let code = run(Login {
            target: saved.target,
            token,
        })
        .await;
        print_warnings(&source);
        code
    })
}

/// Runs `f` to its end on a single-threaded runtime (the deploy's concurrency is its own
/// `join`s; one thread keeps the plugin's footprint small).
fn block_on<F: std::future::Future<Output = ExitCode>>(f: F) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("cf-zero-downtime: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the warnings the token source recorded and nobody drained (e.g. a refreshed token
/// that could not be saved), one `cf-zero-downtime: warning: ...` line each on stderr.
fn print_warnings(source: &TokenSource) {
    for w in source.take_warnings() {
        eprintln!("cf-zero-downtime: warning: {}", terminal_safe(&w));
    }
}

/// Prints an error as the cf CLI does (message, then FAILED) and returns exit code 1.
fn fail(err: &Error) -> ExitCode {
    match err {
        Error::CliTooOld { .. }
        | Error::NoApiEndpoint
        | Error::NotLoggedIn
        | Error::NoOrgTargeted
        | Error::NoSpaceTargeted => eprintln!("{err}"),
        // The chain may hold a login server's or the cf CLI's words: cleaned as text output.
        other => eprintln!("cf-zero-downtime: {}", terminal_safe(&error_chain(other))),
    }
    eprintln!("FAILED");
    ExitCode::FAILURE
}

/// Prints a clap outcome: help to stdout with exit 0, a usage error to stderr with exit 1.
pub fn clap_exit(e: &clap::Error) -> ExitCode {
    // Printing can only fail if stdout/stderr are closed; there is nothing left to tell then.
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
