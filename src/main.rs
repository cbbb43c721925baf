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
        Command::Rollback(args) => entry::run_standalone_rollback(args),
        Command::Demo(args) => cf_zero_downtime::demo::run(args),
        Command::Sim(args) => run_sim(args),
    }
}

/// Runs the simulator in the foreground until Ctrl-C, SIGTERM or SIGHUP.
fn run_sim(args: cf_zero_downtime::sim::cli::SimArgs) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(cf_zero_downtime::sim::cli::run(args)),
        Err(e) => {
            eprintln!("cf-zero-downtime: could not start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
