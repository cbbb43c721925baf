//! Where access tokens come from.
//!
//! A token is the full `Authorization` header value as the cf CLI stores it
//! (`bearer eyJ...`). The real provider is `plugin::TokenSource` (one source for both modes:
//! the cached token, the cf CLI over RPC while it lives, the cf CLI's config file and its
//! login server); [`StaticToken`] serves tests and the simulator. The client asks
//! [`TokenProvider::token`] for every request and, after one `401 CF-InvalidAuthToken`,
//! [`TokenProvider::refresh`] once.

use futures::future::BoxFuture;
use secrecy::SecretString;

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The user is not logged in (no token, or the refresh token was rejected).
    #[error("not logged in: use 'cf login' or 'cf auth' to log in")]
    NotLoggedIn,
    /// Getting or refreshing the token failed for another reason.
    #[error("could not get an access token: {0}")]
    Failed(String),
}

/// A source of bearer tokens. Implementations must never log or print the token.
pub trait TokenProvider: Send + Sync + 'static {
    /// The current token (`bearer ...`), refreshed first if it is known to be expiring.
    fn token(&self) -> BoxFuture<'_, Result<SecretString, AuthError>>;
    /// A fresh token, after the API rejected the current one.
    fn refresh(&self) -> BoxFuture<'_, Result<SecretString, AuthError>>;
    /// Hands over (and forgets) what went wrong without failing, for the user to see: e.g.
    /// a refreshed token that could not be saved to the cf CLI's config file. Never
    /// contains a token. The default has none.
    fn take_warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A fixed token (tests, and the simulator's demo). `refresh` returns the same token.
pub struct StaticToken(pub SecretString);

impl TokenProvider for StaticToken {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
    fn refresh(&self) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        self.token()
    }
}
