//! Service credential bindings of apps: list, create, delete. Managed instances bind
//! asynchronously (202 + job), user-provided ones at once (201 with the binding).
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, old: cf_zero_downtime::cf::AppGuid,
//! #            new: cf_zero_downtime::cf::AppGuid) -> Result<(), cf_zero_downtime::cf::Error> {
//! use cf_zero_downtime::cf::{BindingCreated, NewServiceCredentialBinding, PollOptions};
//! for b in client.list_app_service_credential_bindings(&old).await? {
//!     let Some(si) = b.service_instance_guid() else { continue };
//!     let new_binding = NewServiceCredentialBinding::app(new.clone(), si.clone(), b.name.clone());
//!     if let BindingCreated::Job(job) = client.create_service_credential_binding(&new_binding).await? {
//!         client.wait_for_job(&job, PollOptions::default()).await?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: read binding credentials.

use std::collections::BTreeMap;

use super::nullable::null_as_default;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::guid::{AppGuid, JobGuid, ServiceCredentialBindingGuid, ServiceInstanceGuid};
use super::metadata::Metadata;
use super::relationships::ToOne;
use super::request::{Body, json_body};
use super::service_instances::LastOperation;
use super::{Client, Error};

/// `relationships` of a binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRelationships {
    /// The app (type `app`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub app: ToOne<AppGuid>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub service_instance: ToOne<ServiceInstanceGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCredentialBinding {
    /// Its GUID, as in `/v3/service_credential_bindings/:guid`.
    pub guid: ServiceCredentialBindingGuid,
    /// Its name, if set.
    #[serde(default)]
    pub name: Option<String>,
    /// `app` or `key`.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// Last operation (`in progress` while a broker works).
    #[serde(default)]
    pub last_operation: Option<LastOperation>,
    /// App and service instance.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: BindingRelationships,
    /// Labels and annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
}

impl ServiceCredentialBinding {
    /// The bound service instance.
    pub fn service_instance_guid(&self) -> Option<&ServiceInstanceGuid> {
        self.relationships.service_instance.guid()
    }
}

/// Body of `POST /v3/service_credential_bindings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewServiceCredentialBinding {
    /// Always `app` here.
    #[serde(rename = "type")]
    pub type_: String,
    /// Binding name (optional for app bindings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// App and service instance.
    pub relationships: BindingRelationships,
    /// Parameters for the broker (arbitrary JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, serde_json::Value>>,
}

impl NewServiceCredentialBinding {
    /// An app binding of `app` to `service_instance`.
    pub fn app(app: AppGuid, service_instance: ServiceInstanceGuid, name: Option<String>) -> Self {
        Self {
            type_: "app".to_owned(),
            name,
            relationships: BindingRelationships {
                app: ToOne::to(app),
                service_instance: ToOne::to(service_instance),
            },
            parameters: None,
        }
    }
}

/// What creating a binding returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingCreated {
    /// Bound at once (user-provided instance, 201).
    Binding(Box<ServiceCredentialBinding>),
    /// Binding in progress (managed instance, 202): wait for this job.
    Job(JobGuid),
}

impl Client {
    /// `GET /v3/service_credential_bindings?type=app&app_guids=<app>`, every page.
    pub async fn list_app_service_credential_bindings(
        &self,
        app: &AppGuid,
    ) -> Result<Vec<ServiceCredentialBinding>, Error> {
        self.list_all(
            "/v3/service_credential_bindings",
            &[("type", "app".to_owned()), ("app_guids", app.to_string())],
        )
        .await
    }

    /// `POST /v3/service_credential_bindings`.
    ///
    /// # Errors
    /// 422 `CF-UnprocessableEntity` when the app is already bound to the instance.
    pub async fn create_service_credential_binding(
        &self,
        binding: &NewServiceCredentialBinding,
    ) -> Result<BindingCreated, Error> {
        let url = self.url("/v3/service_credential_bindings")?;
        let resp = self.send(Method::POST, url, json_body(binding)?).await?;
        if resp.status == StatusCode::ACCEPTED {
            Ok(BindingCreated::Job(resp.job_location()?))
        } else {
            Ok(BindingCreated::Binding(Box::new(resp.json()?)))
        }
    }

    /// `DELETE /v3/service_credential_bindings/:guid` → `Some(job)` (202, managed) or `None`
    /// (204, done).
    pub async fn delete_service_credential_binding(
        &self,
        guid: &ServiceCredentialBindingGuid,
    ) -> Result<Option<JobGuid>, Error> {
        let url = self.url(&format!("/v3/service_credential_bindings/{guid}"))?;
        let resp = self.send(Method::DELETE, url, Body::Empty).await?;
        if resp.status == StatusCode::ACCEPTED {
            resp.job_location().map(Some)
        } else {
            Ok(None)
        }
    }
}
