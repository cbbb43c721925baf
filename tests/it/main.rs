//! One integration-test binary (compiles once); one module per layer.
mod cf_client;
mod deploy;
mod manifest;
mod package;
mod plugin;
mod push;
