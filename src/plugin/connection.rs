//! Typed calls to the cf CLI's `CliRpcCmd` service, the Rust counterpart of the Go plugin
//! library's `CliConnection`. Only calls backed by the CLI's current config are typed here;
//! the V2-backed `Get*` calls and `CliCommand` are deliberately absent (use [`CliConnection::call`]
//! for anything else).
//!
//! Depends on: `rpc`, `gob`, `cf::NamedGuid`. Must not: print.

use secrecy::SecretString;

use super::gob::{Type, Value};
use super::metadata::PluginMetadata;
use super::rpc::{Error, RpcClient};
use crate::cf::NamedGuid;

/// The cf CLI's RPC service name (the Go receiver type).
pub const SERVICE: &str = "CliRpcCmd";

/// A connection to the cf CLI that started this plugin (each call is its own TCP connection).
#[derive(Debug, Clone)]
pub struct CliConnection {
    rpc: RpcClient,
}

impl CliConnection {
    /// The cf CLI's RPC server on `127.0.0.1:port`.
    pub fn new(port: u16) -> Self {
        Self::with_client(RpcClient::new(port))
    }

    /// Uses a configured client (e.g. with another timeout).
    pub fn with_client(rpc: RpcClient) -> Self {
        Self { rpc }
    }

    /// The underlying RPC client.
    pub fn client(&self) -> &RpcClient {
        &self.rpc
    }

    /// Calls any `CliRpcCmd` method: `method` is the bare name (`"UserGuid"`) or the full
    /// service method (`"CliRpcCmd.UserGuid"`).
    ///
    /// # Errors
    /// See [`RpcClient::call`].
    pub async fn call(&self, method: &str, arg_type: &Type, arg: &Value) -> Result<Value, Error> {
        if method.contains('.') {
            self.rpc.call(method, arg_type, arg).await
        } else {
            let full = format!("{SERVICE}.{method}");
            self.rpc.call(&full, arg_type, arg).await
        }
    }

    /// A zero-argument method: the Go library sends `""` as the argument.
    async fn call_no_arg(&self, method: &str) -> Result<Value, Error> {
        self.call(method, &Type::String, &Value::string("")).await
    }

    async fn bool_call(&self, method: &str, arg: &str) -> Result<bool, Error> {
        let v = self
            .call(method, &Type::String, &Value::string(arg))
            .await?;
        v.as_bool().ok_or_else(|| unexpected(method, "a bool", &v))
    }

    async fn string_call(&self, method: &str) -> Result<String, Error> {
        let v = self.call_no_arg(method).await?;
        match v {
            Value::String(s) => Ok(s),
            other => Err(unexpected(method, "a string", &other)),
        }
    }

    /// `IsMinCliVersion(version)`: whether the cf CLI is at least `version` (`"7.0.0"`).
    ///
    /// # Errors
    /// RPC failure; the CLI answers an error for a version that is not semver.
    pub async fn is_min_cli_version(&self, version: &str) -> Result<bool, Error> {
        self.bool_call("IsMinCliVersion", version).await
    }

    /// `ApiEndpoint`: the targeted API URL (no trailing slash), empty when none.
    ///
    /// # Errors
    /// RPC failure.
    pub async fn api_endpoint(&self) -> Result<String, Error> {
        self.string_call("ApiEndpoint").await
    }

    /// `HasAPIEndpoint`.
    ///
    /// # Errors
    /// RPC failure.
    pub async fn has_api_endpoint(&self) -> Result<bool, Error> {
        self.bool_call("HasAPIEndpoint", "").await
    }

    /// `AccessToken`: the `Authorization` value (`bearer eyJ...`), refreshed by the CLI when
    /// it is about to expire. Never log it.
    ///
    /// # Errors
    /// RPC failure, or the CLI's refresh error as [`Error::Remote`].
    pub async fn access_token(&self) -> Result<SecretString, Error> {
        self.string_call("AccessToken")
            .await
            .map(SecretString::from)
    }

    /// `IsLoggedIn`.
    ///
    /// # Errors
    /// RPC failure.
    pub async fn is_logged_in(&self) -> Result<bool, Error> {
        self.bool_call("IsLoggedIn", "").await
    }

    /// `IsSSLDisabled`: whether the target was set with `--skip-ssl-validation`.
    ///
    /// # Errors
    /// RPC failure.
    pub async fn is_ssl_disabled(&self) -> Result<bool, Error> {
        self.bool_call("IsSSLDisabled", "").await
    }

    /// `Username`: the logged-in user (empty when none).
    ///
    /// # Errors
    /// RPC failure.
    pub async fn username(&self) -> Result<String, Error> {
        self.string_call("Username").await
    }

    /// `ApiVersion`: the CC API version recorded at login (e.g. `"3.228.0"`).
    ///
    /// # Errors
    /// RPC failure.
    pub async fn api_version(&self) -> Result<String, Error> {
        self.string_call("ApiVersion").await
    }

    /// `GetCurrentOrg`: the targeted org, `None` when no org is targeted.
    ///
    /// # Errors
    /// RPC failure or a reply that is not a `plugin_models.Organization`.
    pub async fn get_current_org(&self) -> Result<Option<NamedGuid>, Error> {
        let v = self.call_no_arg("GetCurrentOrg").await?;
        embedded_name_guid("GetCurrentOrg", &v, "OrganizationFields")
    }

    /// `GetCurrentSpace`: the targeted space, `None` when no space is targeted.
    ///
    /// # Errors
    /// RPC failure or a reply that is not a `plugin_models.Space`.
    pub async fn get_current_space(&self) -> Result<Option<NamedGuid>, Error> {
        let v = self.call_no_arg("GetCurrentSpace").await?;
        embedded_name_guid("GetCurrentSpace", &v, "SpaceFields")
    }

    /// `SetPluginMetadata`: registers the plugin (the answer to `SendMetadata`).
    ///
    /// # Errors
    /// RPC failure.
    pub async fn set_plugin_metadata(&self, metadata: &PluginMetadata) -> Result<bool, Error> {
        let v = self
            .call(
                "SetPluginMetadata",
                &PluginMetadata::go_type(),
                &metadata.to_value(),
            )
            .await?;
        v.as_bool()
            .ok_or_else(|| unexpected("SetPluginMetadata", "a bool", &v))
    }
}

fn unexpected(method: &str, want: &str, got: &Value) -> Error {
    Error::Unexpected {
        method: format!("{SERVICE}.{method}"),
        detail: format!("expected {want}, got a {}", got.kind_name()),
    }
}

/// Reads `{<embedded>: {Guid, Name}}` (Go embeds `OrganizationFields` / `SpaceFields`, which
/// gob sends as a field of that name).
fn embedded_name_guid(method: &str, v: &Value, embedded: &str) -> Result<Option<NamedGuid>, Error> {
    if !matches!(v, Value::Struct(_)) {
        return Err(unexpected(method, "a struct", v));
    }
    let Some(fields) = v.field(embedded) else {
        return Ok(None);
    };
    let guid = fields.str_field("Guid").unwrap_or_default();
    let name = fields.str_field("Name").unwrap_or_default();
    if guid.is_empty() && name.is_empty() {
        return Ok(None);
    }
    Ok(Some(NamedGuid {
        name: name.to_string(),
        guid: guid.to_string(),
    }))
}
