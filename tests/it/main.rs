//! One integration-test binary (compiles once); one module per layer.
mod sim;
