//! Space and organization quotas and the usage counted against them: `GET
//! /v3/space_quotas/:guid`, `GET /v3/organization_quotas/:guid`, and the usage summaries
//! `GET /v3/spaces/:guid/usage_summary` (Cloud Controllers from mid-2025 on) and
//! `GET /v3/organizations/:guid/usage_summary`.
//!
//! Unlimited is `null` in every limit (Cloud Controller stores `-1` and presents `null`); a
//! `-1` from an older presenter reads as unlimited too.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, space: cf_zero_downtime::cf::SpaceGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! let s = client.get_space(&space).await?;
//! if let Some(q) = s.relationships.quota.guid() {
//!     let quota = client.get_space_quota(q).await?;
//!     let used = client.get_space_usage_summary(&space).await?;
//!     println!("{} MB of {:?} MB", used.memory_in_mb, quota.apps.total_memory_in_mb);
//! }
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: decide whether anything fits (deploy does).

use serde::{Deserialize, Deserializer, Serialize};

use super::guid::{OrganizationGuid, SpaceGuid};
use super::nullable::null_as_default;
use super::{Client, Error};

/// A limit: `null` or a negative number is unlimited.
fn limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v: Option<i64> = Option::deserialize(d)?;
    Ok(v.and_then(|n| u64::try_from(n).ok()))
}

/// `apps` limits of a quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaApps {
    /// Memory of every started instance together, MB.
    #[serde(default, deserialize_with = "limit")]
    pub total_memory_in_mb: Option<u64>,
    /// Memory of one instance, MB.
    #[serde(default, deserialize_with = "limit")]
    pub per_process_memory_in_mb: Option<u64>,
    /// Started instances of every process together (CC's `app_instance_limit`).
    #[serde(default, deserialize_with = "limit")]
    pub total_instances: Option<u64>,
    /// Running and pending tasks per app.
    #[serde(default, deserialize_with = "limit")]
    pub per_app_tasks: Option<u64>,
}

/// `routes` limits of a quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaRoutes {
    /// Routes.
    #[serde(default, deserialize_with = "limit")]
    pub total_routes: Option<u64>,
    /// Reserved TCP ports.
    #[serde(default, deserialize_with = "limit")]
    pub total_reserved_ports: Option<u64>,
}

/// A space or organization quota (the fields both have).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Its GUID, as in `/v3/space_quotas/:guid` or `/v3/organization_quotas/:guid`.
    pub guid: String,
    /// Its name (`cf space-quota NAME`).
    pub name: String,
    /// App limits.
    #[serde(default, deserialize_with = "null_as_default")]
    pub apps: QuotaApps,
    /// Route limits.
    #[serde(default, deserialize_with = "null_as_default")]
    pub routes: QuotaRoutes,
}

/// What counts against a quota now (`usage_summary`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSummary {
    #[serde(default, deserialize_with = "null_as_default")]
    pub started_instances: u64,
    /// Memory of started instances and running tasks, MB.
    #[serde(default, deserialize_with = "null_as_default")]
    pub memory_in_mb: u64,
    /// Routes (absent from older Cloud Controllers' org summary).
    #[serde(default)]
    pub routes: Option<u64>,
}

#[derive(Deserialize)]
struct SummaryBody {
    usage_summary: UsageSummary,
}

impl Client {
    /// `GET /v3/space_quotas/:guid`.
    pub async fn get_space_quota(&self, guid: &super::SpaceQuotaGuid) -> Result<Quota, Error> {
        self.get_json(self.url(&format!("/v3/space_quotas/{guid}"))?)
            .await
    }

    /// `GET /v3/organization_quotas/:guid`.
    pub async fn get_organization_quota(
        &self,
        guid: &super::OrganizationQuotaGuid,
    ) -> Result<Quota, Error> {
        self.get_json(self.url(&format!("/v3/organization_quotas/{guid}"))?)
            .await
    }

    /// `GET /v3/spaces/:guid/usage_summary` (a 404 on Cloud Controllers before mid-2025).
    pub async fn get_space_usage_summary(&self, guid: &SpaceGuid) -> Result<UsageSummary, Error> {
        let body: SummaryBody = self
            .get_json(self.url(&format!("/v3/spaces/{guid}/usage_summary"))?)
            .await?;
        Ok(body.usage_summary)
    }

    /// `GET /v3/organizations/:guid/usage_summary`.
    pub async fn get_organization_usage_summary(
        &self,
        guid: &OrganizationGuid,
    ) -> Result<UsageSummary, Error> {
        let body: SummaryBody = self
            .get_json(self.url(&format!("/v3/organizations/{guid}/usage_summary"))?)
            .await?;
        Ok(body.usage_summary)
    }

    /// `GET /v3/processes?space_guids=..`, every page: the space's processes (for the usage of
    /// a space whose Cloud Controller has no space usage summary).
    pub async fn list_space_processes(
        &self,
        space: &SpaceGuid,
    ) -> Result<Vec<super::Process>, Error> {
        self.list_all("/v3/processes", &[("space_guids", space.to_string())])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_read_null_and_minus_one_as_unlimited() {
        let q: Quota = serde_json::from_str(
            r#"{"guid":"q","name":"small","apps":{"total_memory_in_mb":200,
                "per_process_memory_in_mb":null,"total_instances":-1,"per_app_tasks":null,
                "log_rate_limit_in_bytes_per_second":null},
                "routes":{"total_routes":10,"total_reserved_ports":null},
                "services":{"paid_services_allowed":true}}"#,
        )
        .unwrap();
        assert_eq!(q.apps.total_memory_in_mb, Some(200));
        assert_eq!(q.apps.per_process_memory_in_mb, None);
        assert_eq!(q.apps.total_instances, None);
        assert_eq!(q.routes.total_routes, Some(10));
        let bare: Quota = serde_json::from_str(r#"{"guid":"q","name":"n"}"#).unwrap();
        assert_eq!(bare.apps, QuotaApps::default());
    }

    #[test]
    fn usage_summaries_parse_with_and_without_routes() {
        let b: SummaryBody = serde_json::from_str(
            r#"{"usage_summary":{"started_instances":3,"memory_in_mb":384,"routes":2,
                "service_instances":0},"links":{}}"#,
        )
        .unwrap();
        assert_eq!(
            b.usage_summary,
            UsageSummary {
                started_instances: 3,
                memory_in_mb: 384,
                routes: Some(2)
            }
        );
        let old: SummaryBody =
            serde_json::from_str(r#"{"usage_summary":{"started_instances":1,"memory_in_mb":64}}"#)
                .unwrap();
        assert_eq!(old.usage_summary.routes, None);
    }
}
