//! `cf-zero-downtime`: argv → run → exit code. The only place that exits.
//!
//! When the first argument is a number the cf CLI started the binary as a plugin
//! (`<bin> <port> <command> ...`); otherwise it is a normal command line.

use std::process::ExitCode;

use cf_zero_downtime::cli::{Cli, Command};
use cf_zero_downtime::plugin::entry;
use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| entry::looks_like_port(a)) {
        return entry::run_plugin(&args[1..]);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return entry::clap_exit(&e),
    };
    match cli.command {
        Command::Push(args) => entry::run_standalone(args),
        // The integrator dispatches `sim` and `demo` here.
    }
}
