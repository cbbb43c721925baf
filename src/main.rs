//! `cf-zero-downtime`: argv → [`command::main`](cf_zero_downtime::command::main) → exit code.
//! The only place that exits.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    cf_zero_downtime::command::main(&args)
}
