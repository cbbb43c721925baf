//! cf-zero-downtime: a Cloud Foundry CLI plugin that replaces a running app with a
//! new version without a single failed request.
//!
//! # Layout
//!
//! Dependencies point down; each layer has its own `Error` type.
//!
//! | module       | what lives there                                                        |
//! |--------------|-------------------------------------------------------------------------|
//! | [`command`]  | one module per command: flags (clap), preflight, the call into the core |
//! | [`plugin`]   | cf CLI plugin protocol: gob codec, net/rpc client, metadata, logins      |
//! | [`manifest`] | manifest model, `((var))` interpolation, path resolution                |
//! | [`cf`]       | Cloud Controller v3 client (knows nothing of deploys or manifests)      |
//! | [`package`]  | app bits: `.cfignore`, scan + SHA1, resource matching, streaming zip    |
//! | [`deploy`]   | observe → plan → execute, strategies, events                            |
//! | [`ui`]       | renders a run's events as cf-CLI-like text or JSON lines                |
//! | [`sim`]      | the local Cloud Foundry simulator (API subset, router, instances)       |

pub mod cf;
pub mod command;
pub mod deploy;
pub mod manifest;
pub mod package;
pub mod plugin;
pub mod sim;
pub mod ui;
