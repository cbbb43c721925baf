//! cf-zero-downtime: a Cloud Foundry CLI plugin that replaces a running app with a
//! new version without a single failed request.
//!
//! # Layout
//!
//! Dependencies point down; each layer has its own `Error` type.
//!
//! | module       | what lives there                                                        |
//! |--------------|-------------------------------------------------------------------------|
//! | [`plugin`]   | cf CLI plugin protocol: gob codec, net/rpc client, metadata, entry       |
//! | [`cli`]      | clap argument definitions and the validated deploy request              |
//! | [`manifest`] | manifest model, `((var))` interpolation, path resolution                |
//! | [`cf`]       | Cloud Controller v3 client (knows nothing of deploys or manifests)      |
//! | [`package`]  | app bits: `.cfignore`, scan + SHA1, resource matching, streaming zip    |
//! | [`deploy`]   | observe → plan → execute, strategies, events                            |
//! | [`wiring`]   | joins the layers: the real `CfApi`, manifest apps → `AppSpec`, push    |
//! | [`ui`]       | renders events as cf-CLI-like text or JSON lines; the only printer      |
//! | [`sim`]      | the local Cloud Foundry simulator (API subset, router, instances)       |
//! | [`demo`]     | `demo` command: the whole flow on the simulator, under load, a report   |
#![warn(missing_docs)]

pub mod cf;
pub mod cli;
pub mod demo;
pub mod deploy;
pub mod manifest;
pub mod package;
pub mod plugin;
pub mod sim;
pub mod ui;
pub mod wiring;
