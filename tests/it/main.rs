//! One integration-test binary (compiles once); one module per layer.
mod cf_client;
mod deploy;
mod e2e;
mod e2e_canary;
mod e2e_drain;
mod e2e_logs;
mod e2e_promises;
mod e2e_rollback;
mod e2e_rolling;
mod harness;
mod manifest;
mod package;
mod plugin;
mod push;
mod release;
mod secrets;
mod sim;
