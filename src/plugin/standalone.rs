//! Standalone mode: the cf CLI's (v7/v8) saved login in `$CF_HOME/.cf/config.json` (else
//! `~/.cf/config.json`) becomes a [`Target`] and a [`TokenSource`] that refreshes through the
//! same file (`cli_config`).
//!
//! Depends on: `cf` (Target), `cli_config` (reading the file, the refresher), `jwt` (the user
//! name), `rpc_token` (TokenSource).
//! Must not: print or log tokens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;

use super::Error;
use super::cli_config::{ConfigRefresher, read_config};
use super::jwt::jwt_claims;
use super::rpc_token::TokenSource;
use crate::cf::Target;

/// A loaded standalone login: the target and its token source.
#[derive(Debug)]
pub struct StandaloneLogin {
    /// Endpoint, org, space, skip-SSL and user from the config file.
    pub target: Target,
    /// Tokens from the config file, refreshed and saved back when they expire.
    pub token: Arc<TokenSource>,
}

/// The config file path: `$CF_HOME/.cf/config.json`, else `$HOME/.cf/config.json`
/// (`%USERPROFILE%` on Windows), as the cf CLI resolves it.
///
/// # Errors
/// [`Error::NoHome`] when none of these variables is set.
pub fn config_path() -> Result<PathBuf, Error> {
    let home = std::env::var_os("CF_HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()))
        .or_else(|| std::env::var_os("USERPROFILE").filter(|h| !h.is_empty()))
        .ok_or(Error::NoHome)?;
    Ok(PathBuf::from(home).join(".cf").join("config.json"))
}

/// Reads the config file at `path` and checks that it describes a logged-in user with an
/// org and a space targeted (the cf CLI's own checks, in its order).
///
/// # Errors
/// Missing/unreadable/invalid file, unsupported `ConfigVersion`, then the cf-CLI-worded
/// [`Error::NoApiEndpoint`], [`Error::NotLoggedIn`], [`Error::NoOrgTargeted`],
/// [`Error::NoSpaceTargeted`].
pub fn load(path: &Path) -> Result<StandaloneLogin, Error> {
    let config = read_config(path)?;
    let api_endpoint = config.target.trim_end_matches('/').to_string();
    if api_endpoint.is_empty() {
        return Err(Error::NoApiEndpoint);
    }
    if config.access_token.is_empty() && config.refresh_token.is_empty() {
        return Err(Error::NotLoggedIn);
    }
    let org = config
        .organization_fields
        .to_named()
        .ok_or(Error::NoOrgTargeted)?;
    let space = config
        .space_fields
        .to_named()
        .ok_or(Error::NoSpaceTargeted)?;
    let claims = jwt_claims(&config.access_token);
    let user = claims.as_ref().and_then(|c| {
        c.get("user_name")
            .or_else(|| c.get("client_id"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    });
    let refresher = ConfigRefresher::new(path.to_path_buf(), &config)?;
    let token = TokenSource::from_config(
        refresher,
        SecretString::from(config.access_token.clone()),
        SecretString::from(config.refresh_token.clone()),
    );
    Ok(StandaloneLogin {
        target: Target {
            api_endpoint,
            skip_ssl_validation: config.ssl_disabled,
            org: Some(org),
            space: Some(space),
            user,
        },
        token: Arc::new(token),
    })
}
