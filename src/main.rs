//! `cf-zero-downtime`: argv → run → exit code. The only place that exits.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::SUCCESS
}
