//! Container-to-container network policies (networking API v1), needed to carry an app's
//! policies over to a new app GUID in a blue-green deploy.
//!
//! The base URL is the root document's `links.network_policy_v1.href` when
//! [`Client::discover`] has run and the link exists, and `<api>/networking/v1/external` when
//! discovery has not run. When the root document was read and has no such link, every call
//! fails with [`Error::Unavailable`]. That error, a 403 (a space developer may not read
//! policies) and a 404 (no policy server behind the path) are all
//! [`Error::is_unavailable_optional`]: callers degrade with a warning.
//!
//! The request and response shapes (`GET .../policies?id=<guids>` →
//! `{"total_policies": n, "policies": [...]}`, `POST .../policies {"policies": [...]}`) are
//! **inferred** from the networking API's public docs; the project spec only names the endpoint.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, old: cf_zero_downtime::cf::AppGuid,
//! #            new: cf_zero_downtime::cf::AppGuid) -> Result<(), cf_zero_downtime::cf::Error> {
//! let policies = client.list_network_policies(std::slice::from_ref(&old)).await?;
//! let copies: Vec<_> = policies.iter().filter_map(|p| p.with_app_replaced(&old, &new)).collect();
//! client.create_network_policies(&copies).await?;
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core, discovery. Must not: delete policies other than those it is given
//! (the deploy layer's rollback deletes exactly the policies it created).

use super::nullable::null_as_default;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use super::guid::AppGuid;
use super::request::{join_filter, json_body};
use super::{Client, Error, Idempotency};

/// The source of a policy (an app GUID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicySource {
    /// The source app's GUID.
    pub id: String,
}

/// A port range `{"start": 8080, "end": 8080}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

/// The destination of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyDestination {
    /// The destination app's GUID.
    pub id: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Allowed ports.
    pub ports: PortRange,
}

/// A container-to-container policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetworkPolicy {
    /// Source app.
    pub source: PolicySource,
    /// Destination app, protocol and ports.
    pub destination: PolicyDestination,
}

impl NetworkPolicy {
    /// The same policy with `old` replaced by `new` on either side; `None` if `old` is on
    /// neither side.
    pub fn with_app_replaced(&self, old: &AppGuid, new: &AppGuid) -> Option<NetworkPolicy> {
        let mut p = self.clone();
        let mut hit = false;
        if p.source.id == old.as_str() {
            p.source.id = new.to_string();
            hit = true;
        }
        if p.destination.id == old.as_str() {
            p.destination.id = new.to_string();
            hit = true;
        }
        hit.then_some(p)
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct Policies {
    #[serde(default, deserialize_with = "null_as_default")]
    policies: Vec<NetworkPolicy>,
}

impl Client {
    fn policies_url(&self) -> Result<Url, Error> {
        let discovered = self.discovered().filter(|d| d.root_known);
        let link = discovered.map(|d| d.root.links.network_policy_v1.map(|l| l.href));
        match link {
            Some(Some(base)) => {
                let url = Url::parse(&format!("{}/policies", base.trim_end_matches('/'))).map_err(
                    |e| Error::Protocol {
                        endpoint: "GET /".to_owned(),
                        what: format!("network_policy_v1 link '{base}': {e}"),
                    },
                )?;
                super::links::check_token_link(self.api_endpoint(), &url).map_err(|why| {
                    Error::Protocol {
                        endpoint: "GET /".to_owned(),
                        what: format!("network_policy_v1 link {why}"),
                    }
                })?;
                Ok(url)
            }
            // The root document was read and has no policy server.
            Some(None) => Err(Error::Unavailable {
                service: "the network policy server",
                link: "network_policy_v1",
            }),
            None => self.url("/networking/v1/external/policies"),
        }
    }

    /// `GET <networking>/policies?id=<app guids>`: policies where any of the apps is source or
    /// destination.
    pub async fn list_network_policies(
        &self,
        apps: &[AppGuid],
    ) -> Result<Vec<NetworkPolicy>, Error> {
        let mut url = self.policies_url()?;
        if !apps.is_empty() {
            url.query_pairs_mut().append_pair("id", &join_filter(apps));
        }
        Ok(self.get_json::<Policies>(url).await?.policies)
    }

    /// `POST <networking>/policies {"policies": [...]}`. Does nothing for an empty list.
    pub async fn create_network_policies(&self, policies: &[NetworkPolicy]) -> Result<(), Error> {
        if policies.is_empty() {
            return Ok(());
        }
        let body = Policies {
            policies: policies.to_vec(),
        };
        // The policy server keeps one copy of a policy: creating it twice is creating it once.
        let _: serde_json::Value = self
            .send_json_as(
                Method::POST,
                self.policies_url()?,
                &body,
                Idempotency::Idempotent,
            )
            .await?;
        Ok(())
    }

    /// `POST <networking>/policies/delete {"policies": [...]}`. Does nothing for an empty list.
    pub async fn delete_network_policies(&self, policies: &[NetworkPolicy]) -> Result<(), Error> {
        if policies.is_empty() {
            return Ok(());
        }
        let base = self.policies_url()?;
        let url = Url::parse(&format!("{}/delete", base.as_str().trim_end_matches('/')))
            .map_err(|e| Error::Config(format!("networking url '{base}/delete': {e}")))?;
        let body = Policies {
            policies: policies.to_vec(),
        };
        // Deleting an absent policy is a no-op: safe to resend.
        self.send_as(
            Method::POST,
            url,
            json_body(&body)?,
            Idempotency::Idempotent,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{ClientConfig, RootInfo, StaticToken};
    use super::*;

    #[tokio::test]
    async fn the_token_is_not_sent_to_a_plain_http_policy_server_of_an_https_api() {
        let token = Arc::new(StaticToken(secrecy::SecretString::from("bearer t")));
        let client = Client::new(ClientConfig::new("https://api.example.org", token)).unwrap();
        let root: RootInfo = serde_json::from_value(serde_json::json!(
            {"links": {"network_policy_v1": {"href": "http://api.example.org/networking/v1/external"}}}
        ))
        .unwrap();
        client.store_root(root);
        let err = client
            .list_network_policies(&[AppGuid::from("a")])
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("network_policy_v1 link"), "{text}");
        assert!(text.contains("is not an https URL"), "{text}");
        let err = client
            .create_network_policies(&[NetworkPolicy {
                source: PolicySource { id: "a".into() },
                destination: PolicyDestination {
                    id: "b".into(),
                    protocol: "tcp".into(),
                    ports: PortRange {
                        start: 8080,
                        end: 8080,
                    },
                },
            }])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is not an https URL"), "{err}");
    }
}
