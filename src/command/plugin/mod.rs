//! How the binary runs as a cf CLI plugin: `<bin> <port> SendMetadata`,
//! `<bin> <port> CLI-MESSAGE-UNINSTALL`, `<bin> <port> zero-downtime-push ARGS` and
//! `zero-downtime-rollback ARGS` (the cf CLI's plugin shim: `<bin> <port> <command> [args]`).
//! Every input is checked before anything is done: arguments first, then the whole target
//! (CLI version, endpoint, login, org, space, token); then the command runs as the standalone
//! one does, with a [`Login`] whose tokens come from the cf CLI.
//!
//! Depends on: `plugin` (the protocol: connection, rpc_token, standalone config), the
//! commands. Prints usage errors and failures before a command runs (cf-CLI-like `FAILED`).

use std::ffi::{OsStr, OsString};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use secrecy::SecretString;

pub mod metadata;

use metadata::{
    COMMAND_ALIAS, COMMAND_NAME, ROLLBACK_COMMAND_ALIAS, ROLLBACK_COMMAND_NAME, plugin_metadata,
    rollback_usage_and_options, usage_and_options,
};

use super::push::PluginPush;
use super::rollback::PluginRollback;
use super::{Login, block_on, clap_exit, fail, print_warnings};
use crate::cf::{Target, TokenProvider};
use crate::plugin::metadata::MIN_CLI_VERSION;
use crate::plugin::rpc_token::fetch_rpc_token;
use crate::plugin::{CliConnection, Error, TokenSource, error_chain, standalone};

/// What cf asked the plugin to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `cf install-plugin`: send the metadata and exit.
    SendMetadata,
    /// `cf uninstall-plugin`: clean up and exit 0.
    Uninstall,
    /// A plugin command with its arguments (cf has already replaced an alias by the name).
    Command {
        /// The command name.
        name: String,
        /// The user's arguments.
        args: Vec<OsString>,
    },
}

/// Whether the first argument means plugin mode: cf always passes the RPC port there.
pub fn looks_like_port(arg: &OsStr) -> bool {
    arg.to_str()
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Splits `<port> <command> [args...]` (argv without the program name).
///
/// # Errors
/// A port that is not 1..=65535, or no command.
pub fn parse_invocation(args: &[OsString]) -> Result<(u16, Invocation), Error> {
    let port_arg = args.first().map(|a| a.to_string_lossy().into_owned());
    let port = port_arg
        .as_deref()
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| Error::BadPort(port_arg.unwrap_or_default()))?;
    let command = args.get(1).ok_or(Error::MissingCommand)?;
    let invocation = match command.to_str() {
        Some("SendMetadata") if args.len() == 2 => Invocation::SendMetadata,
        Some("CLI-MESSAGE-UNINSTALL") => Invocation::Uninstall,
        Some(name) => Invocation::Command {
            name: name.to_string(),
            args: args[2..].to_vec(),
        },
        None => {
            return Err(Error::UnknownCommand(
                command.to_string_lossy().into_owned(),
            ));
        }
    };
    Ok((port, invocation))
}

/// Runs plugin mode; `args` is argv without the program name (`<port> <command> ...`).
pub fn run(args: &[OsString]) -> ExitCode {
    let (port, invocation) = match parse_invocation(args) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    match invocation {
        // Nothing to clean up: the plugin keeps no state outside the cf CLI's own files.
        Invocation::Uninstall => ExitCode::SUCCESS,
        Invocation::SendMetadata => block_on(async {
            match send_metadata(&CliConnection::new(port)).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }),
        Invocation::Command { name, args } => {
            if name == ROLLBACK_COMMAND_NAME || name == ROLLBACK_COMMAND_ALIAS {
                let parsed = parse::<PluginRollback>(ROLLBACK_COMMAND_NAME, args, || {
                    rollback_usage_and_options().0
                });
                return with_cf_login(port, parsed.map(|p| p.args), super::rollback::run);
            }
            if name != COMMAND_NAME && name != COMMAND_ALIAS {
                return fail(&Error::UnknownCommand(name));
            }
            let parsed = parse::<PluginPush>(COMMAND_NAME, args, || {
                usage_and_options(&PluginPush::command()).0
            });
            with_cf_login(port, parsed.map(|p| p.args), super::push::run)
        }
    }
}

/// Parses the arguments of plugin command `command` (`cf <command> ARGS`). Help ends the run
/// with exit 0; a usage error is printed with `usage` (what `cf help <command>` shows) and
/// ends it with exit 1: both are the `Err` exit code.
fn parse<P: Parser>(
    command: &str,
    args: Vec<OsString>,
    usage: impl FnOnce() -> String,
) -> Result<P, ExitCode> {
    let argv = std::iter::once(OsString::from(format!("cf {command}"))).chain(args);
    P::try_parse_from(argv).map_err(|e| {
        if e.use_stderr() {
            usage_error(&e, &usage(), command)
        } else {
            clap_exit(&e)
        }
    })
}

/// Runs a command under cf: the whole target and a first token are gathered from the cf CLI
/// first (its checks, its words), then `run` gets a [`Login`] whose tokens come from the cf
/// CLI while it lives and from its config file after; the token source's warnings are printed
/// at the end.
fn with_cf_login<A, F>(
    port: u16,
    args: Result<A, ExitCode>,
    run: impl FnOnce(A, Login) -> F,
) -> ExitCode
where
    F: std::future::Future<Output = ExitCode>,
{
    let args = match args {
        Ok(args) => args,
        Err(code) => return code,
    };
    block_on(async {
        let conn = CliConnection::new(port);
        let (target, first) = match gather_plugin_target(&conn).await {
            Ok(gathered) => gathered,
            Err(e) => return fail(&e),
        };
        let source = Arc::new(plugin_token_source(conn, first, &target));
        let token: Arc<dyn TokenProvider> = source.clone();
        let code = run(args, Login { target, token }).await;
        print_warnings(&source);
        code
    })
}

/// The plugin-mode token source: the token gathered from the cf CLI, the cf CLI while it
/// lives, then the cf CLI's own config file (`$CF_HOME/.cf/config.json`, inherited from
/// cf) when it targets the same API. Without a usable config file, the source still works
/// while the cf CLI lives and the gathered token is valid.
pub fn plugin_token_source(
    conn: CliConnection,
    first: SecretString,
    target: &Target,
) -> TokenSource {
    let mut source = TokenSource::from_rpc(conn, first);
    let fallback = standalone::config_path()
        .and_then(|path| source.add_config_fallback(&path, &target.api_endpoint));
    if let Err(e) = fallback {
        tracing::debug!("no config-file token fallback: {}", error_chain(&e));
    }
    source
}

/// Answers `SendMetadata`: `SetPluginMetadata` must return true.
///
/// # Errors
/// RPC failure or a `false` answer.
pub async fn send_metadata(conn: &CliConnection) -> Result<(), Error> {
    if conn.set_plugin_metadata(&plugin_metadata()).await? {
        Ok(())
    } else {
        Err(Error::MetadataRejected)
    }
}

/// Gathers everything a push needs from the cf CLI, in the order the cf CLI itself checks
/// (version, API endpoint, login, org, space), and a first token: all of it is in hand
/// before the deploy starts, so a cf CLI that dies later (Ctrl-C) takes nothing needed.
///
/// # Errors
/// The cf-CLI-worded [`Error`] for what is missing, or the RPC failure.
pub async fn gather_plugin_target(conn: &CliConnection) -> Result<(Target, SecretString), Error> {
    let min = MIN_CLI_VERSION.to_string();
    if !conn.is_min_cli_version(&min).await? {
        return Err(Error::CliTooOld { min });
    }
    if !conn.has_api_endpoint().await? {
        return Err(Error::NoApiEndpoint);
    }
    if !conn.is_logged_in().await? {
        return Err(Error::NotLoggedIn);
    }
    let org = conn.get_current_org().await?.ok_or(Error::NoOrgTargeted)?;
    let space = conn
        .get_current_space()
        .await?
        .ok_or(Error::NoSpaceTargeted)?;
    let api_endpoint = conn.api_endpoint().await?.trim_end_matches('/').to_string();
    if api_endpoint.is_empty() {
        return Err(Error::NoApiEndpoint);
    }
    let skip_ssl_validation = conn.is_ssl_disabled().await?;
    let user = conn.username().await?;
    let token = fetch_rpc_token(conn).await?;
    let target = Target {
        api_endpoint,
        skip_ssl_validation,
        org: Some(org),
        space: Some(space),
        user: (!user.is_empty()).then_some(user),
    };
    Ok((target, token))
}

/// Prints a usage error of plugin command `command` with its usage text.
fn usage_error(e: &clap::Error, usage: &str, command: &str) -> ExitCode {
    eprintln!("{}", e.render().to_string().trim_end());
    eprintln!("\nUSAGE:\n   {usage}\n\nSee 'cf help {command}' for all options.");
    eprintln!("FAILED");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn invocations_are_recognised_as_cf_sends_them() {
        assert_eq!(
            parse_invocation(&os(&["4242", "SendMetadata"])).expect("ok"),
            (4242, Invocation::SendMetadata)
        );
        assert_eq!(
            parse_invocation(&os(&["1", "CLI-MESSAGE-UNINSTALL"]))
                .expect("ok")
                .1,
            Invocation::Uninstall
        );
        assert_eq!(
            parse_invocation(&os(&["1", "zero-downtime-push", "app", "-f", "m.yml"]))
                .expect("ok")
                .1,
            Invocation::Command {
                name: "zero-downtime-push".into(),
                args: os(&["app", "-f", "m.yml"])
            }
        );
    }

    #[test]
    fn bad_ports_and_missing_commands_are_errors() {
        for bad in ["0", "65536", "99999999999999999999", ""] {
            assert!(matches!(
                parse_invocation(&os(&[bad, "SendMetadata"])),
                Err(Error::BadPort(_))
            ));
        }
        assert!(matches!(
            parse_invocation(&os(&["80"])),
            Err(Error::MissingCommand)
        ));
        assert!(looks_like_port(OsStr::new("123")));
        assert!(!looks_like_port(OsStr::new("push")));
        assert!(!looks_like_port(OsStr::new("")));
    }
}
