//! The cf CLI plugin protocol and the two ways the binary learns its target (the cf CLI over
//! RPC, or the cf CLI's saved config); what runs in plugin mode is `command::plugin`.
//!
//! | module         | what lives there                                                     |
//! |----------------|----------------------------------------------------------------------|
//! | [`gob`]        | sans-IO Go gob codec                                                  |
//! | [`rpc`]        | Go net/rpc framing and a one-connection-per-call client              |
//! | [`connection`] | typed `CliRpcCmd` calls (`CliConnection`)                            |
//! | [`metadata`]   | `PluginMetadata` for `SendMetadata` and its gob encoding             |
//! | `jwt`          | token expiry from the JWT claims                                     |
//! | `cli_config`   | the cf CLI's `config.json`, UAA refresh and save-back                |
//! | [`rpc_token`]  | `TokenSource`: the one token provider (cache, cf CLI, config.json)   |
//! | [`standalone`] | standalone mode: `config.json` as a target and a `TokenSource`       |
//!
//! Depends on: `cf` (Target, TokenProvider, the token refresh). Must not: print.

mod cli_config;
pub mod connection;
pub mod gob;
mod jwt;
pub mod metadata;
pub mod rpc;
pub mod rpc_token;
pub mod standalone;

pub use connection::CliConnection;
pub use metadata::PluginMetadata;
pub use rpc_token::TokenSource;
pub use standalone::StandaloneLogin;

use std::path::PathBuf;

/// Why the plugin could not get as far as handing a target to the deploy engine.
///
/// The target-related messages are the cf CLI's own wording, so users see what `cf` itself
/// would tell them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to the cf CLI failed.
    #[error(transparent)]
    Rpc(#[from] rpc::Error),
    /// The cf CLI is older than [`metadata::MIN_CLI_VERSION`].
    #[error("Minimum CLI version {min} is required to run this plugin command")]
    CliTooOld {
        /// The minimum version.
        min: String,
    },
    /// No `cf api` target.
    #[error("No API endpoint set. Use 'cf login' or 'cf api' to target an endpoint.")]
    NoApiEndpoint,
    /// No login.
    #[error("Not logged in. Use 'cf login' or 'cf login --sso' to log in.")]
    NotLoggedIn,
    #[error("No org targeted, use 'cf target -o ORG' to target an org.")]
    NoOrgTargeted,
    #[error("No space targeted, use 'cf target -s SPACE' to target a space.")]
    NoSpaceTargeted,
    /// A token could not be had (refresh failed, ...).
    #[error(transparent)]
    Auth(#[from] crate::cf::AuthError),
    /// Neither `CF_HOME` nor a home directory is known.
    #[error("cannot find the cf CLI config: neither CF_HOME nor HOME is set")]
    NoHome,
    /// The config file could not be read.
    #[error("cannot read the cf CLI config {path}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not the JSON the cf CLI writes.
    #[error("{path} is not a valid cf CLI config file")]
    ConfigParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The config file was written by a cf CLI generation this plugin does not read.
    #[error(
        "{path} has ConfigVersion {found}, expected 3 (cf v7) or 4 (cf v8); run 'cf login' with cf v7 or v8"
    )]
    ConfigVersion {
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// The config file is for another API than the one the cf CLI targets.
    #[error("{path} targets {found}, not the cf CLI's API endpoint")]
    ConfigOtherTarget {
        path: PathBuf,
        /// The `Target` it holds.
        found: String,
    },
    /// Building the HTTP client for UAA failed.
    #[error("cannot set up the HTTP client for the login server")]
    Http(#[source] reqwest::Error),
    /// The plugin was started with a command it does not have.
    #[error(
        "unknown plugin command '{0}' (this plugin provides zero-downtime-push and zero-downtime-rollback)"
    )]
    UnknownCommand(String),
    /// The plugin was started with a port but no command.
    #[error("missing the command after the RPC port (cf runs '<plugin> <port> <command> [args]')")]
    MissingCommand,
    /// The RPC port argument is not a port.
    #[error("invalid RPC port '{0}': expected a number from 1 to 65535")]
    BadPort(String),
    /// The cf CLI refused the metadata.
    #[error("the cf CLI did not accept the plugin metadata")]
    MetadataRejected,
}

/// An error and its sources joined with `": "`, the way every message is printed.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
