//! Tokens in plugin mode: every request asks the cf CLI (`AccessToken`), which refreshes the
//! token through UAA itself when it is about to expire.
//!
//! Depends on: `connection`, `cf::auth`. Must not: print or log the token.

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

use super::connection::CliConnection;
use super::rpc;
use crate::cf::{AuthError, TokenProvider};

/// A [`TokenProvider`] backed by the cf CLI's `AccessToken` RPC call.
#[derive(Debug, Clone)]
pub struct RpcTokenProvider {
    conn: CliConnection,
}

impl RpcTokenProvider {
    /// Asks the cf CLI behind `conn` for tokens.
    pub fn new(conn: CliConnection) -> Self {
        Self { conn }
    }

    async fn fetch(&self) -> Result<SecretString, AuthError> {
        match self.conn.access_token().await {
            Ok(token) if token.expose_secret().trim().is_empty() => Err(AuthError::NotLoggedIn),
            Ok(token) => Ok(token),
            Err(rpc::Error::Remote { message, .. }) => Err(AuthError::Failed(format!(
                "the cf CLI could not refresh the access token: {message}"
            ))),
            Err(e) => Err(AuthError::Failed(super::error_chain(&e))),
        }
    }
}

impl TokenProvider for RpcTokenProvider {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        Box::pin(self.fetch())
    }

    /// The cf CLI decides whether the token needs refreshing; asking again is all a plugin
    /// can do.
    fn refresh(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        Box::pin(self.fetch())
    }
}
