//! Routes and their destinations: find by host/domain/path/port, list, create, delete (job), and
//! list/insert/remove destinations (how an app is mapped to a route).
//!
//! `find_route` always sends `hosts=` and `paths=`, even empty: an empty value filters for the
//! empty host/path, as the cf CLI relies on.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, space: cf_zero_downtime::cf::SpaceGuid,
//! #            domain: cf_zero_downtime::cf::DomainGuid, app: cf_zero_downtime::cf::AppGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! use cf_zero_downtime::cf::{NewDestination, NewRoute, PollOptions};
//! let route = match client.find_route(&domain, "web-temp", "", None).await? {
//!     Some(r) => r,
//!     None => client.create_route(&NewRoute::http(space, domain, "web-temp", "")).await?,
//! };
//! client.insert_route_destinations(&route.guid, &[NewDestination::app(app.clone())]).await?;
//! for d in client.list_route_destinations(&route.guid).await? {
//!     if d.app.guid == app {
//!         client.remove_route_destination(&route.guid, &d.guid).await?;
//!     }
//! }
//! let job = client.delete_route(&route.guid).await?;
//! client.wait_for_job(&job, PollOptions::default()).await?;
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: parse manifest route strings.

use super::nullable::null_as_default;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::domains::Domain;
use super::guid::{AppGuid, DestinationGuid, DomainGuid, JobGuid, RouteGuid, SpaceGuid};
use super::metadata::Metadata;
use super::relationships::ToOne;
use super::request::{Body, join_filter};
use super::{Client, Error, Idempotency};

/// The process a destination points at: `{"type": "web"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationProcess {
    /// Process type.
    #[serde(rename = "type")]
    pub type_: String,
}

/// The app of a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationApp {
    /// The app it belongs to, as Cloud Controller links it.
    pub guid: AppGuid,
    /// The process (default `web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<DestinationProcess>,
}

/// A route destination (an app process mapped to the route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Its GUID, as in `/v3/routes/:route_guid/destinations/:guid`.
    pub guid: DestinationGuid,
    /// The app and process.
    pub app: DestinationApp,
    /// Weight (unused by current CCs).
    #[serde(default)]
    pub weight: Option<u32>,
    /// App port.
    #[serde(default)]
    pub port: Option<u16>,
    /// `http1`, `http2` or `tcp`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// A destination to insert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewDestination {
    /// The app and optional process type.
    pub app: DestinationApp,
    /// App port (server default when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `http1`, `http2` or `tcp` (server default when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl NewDestination {
    /// The app's `web` process with server defaults.
    pub fn app(app: AppGuid) -> Self {
        Self {
            app: DestinationApp {
                guid: app,
                process: None,
            },
            port: None,
            protocol: None,
        }
    }

    /// The same, with a process type.
    pub fn process(mut self, type_: impl Into<String>) -> Self {
        self.app.process = Some(DestinationProcess {
            type_: type_.into(),
        });
        self
    }

    /// The same, with a protocol.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }
}

/// `relationships` of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRelationships {
    #[serde(default, deserialize_with = "null_as_default")]
    pub space: ToOne<SpaceGuid>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub domain: ToOne<DomainGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Its GUID, as in `/v3/routes/:guid`.
    pub guid: RouteGuid,
    /// `http` or `tcp`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub protocol: String,
    /// Host (`""` when none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub host: String,
    /// Path (`""` when none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: String,
    /// Port (TCP routes).
    #[serde(default)]
    pub port: Option<u16>,
    /// E.g. `myapp.example.com/api`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub url: String,
    /// Mapped app processes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub destinations: Vec<Destination>,
    /// Space and domain.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: RouteRelationships,
    /// Labels and annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
}

/// Filters of `GET /v3/routes`. Empty lists are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteQuery {
    pub app_guids: Vec<AppGuid>,
    pub space_guids: Vec<SpaceGuid>,
    pub domain_guids: Vec<DomainGuid>,
    /// `hosts` (an empty string filters for "no host").
    pub hosts: Option<Vec<String>>,
    /// `paths` (an empty string filters for "no path").
    pub paths: Option<Vec<String>>,
    pub ports: Vec<u16>,
    pub label_selector: Option<String>,
}

impl RouteQuery {
    fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if !self.app_guids.is_empty() {
            q.push(("app_guids", join_filter(&self.app_guids)));
        }
        if !self.space_guids.is_empty() {
            q.push(("space_guids", join_filter(&self.space_guids)));
        }
        if !self.domain_guids.is_empty() {
            q.push(("domain_guids", join_filter(&self.domain_guids)));
        }
        if let Some(hosts) = &self.hosts {
            q.push(("hosts", join_filter(hosts)));
        }
        if let Some(paths) = &self.paths {
            q.push(("paths", join_filter(paths)));
        }
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            q.push(("ports", ports.join(",")));
        }
        if let Some(sel) = &self.label_selector {
            q.push(("label_selector", sel.clone()));
        }
        q
    }
}

/// Body of `POST /v3/routes`. Empty host/path and `None` port are not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewRoute {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Path, starting with `/`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Port (TCP domains; random when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Space and domain.
    pub relationships: RouteRelationships,
    /// Labels and annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

impl NewRoute {
    /// An HTTP route `host.domain/path` in `space`.
    pub fn http(
        space: SpaceGuid,
        domain: DomainGuid,
        host: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            path: path.into(),
            port: None,
            relationships: RouteRelationships {
                space: ToOne::to(space),
                domain: ToOne::to(domain),
            },
            metadata: None,
        }
    }

    /// A TCP route on `domain` (random port when `None`).
    pub fn tcp(space: SpaceGuid, domain: DomainGuid, port: Option<u16>) -> Self {
        Self {
            port,
            ..Self::http(space, domain, "", "")
        }
    }
}

#[derive(Serialize, Deserialize)]
// A `default` field would otherwise make serde require `T: Default`.
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub(super) struct Destinations<T> {
    #[serde(default, deserialize_with = "null_as_default")]
    destinations: Vec<T>,
}

impl Client {
    /// `GET /v3/routes?domain_guids=..&hosts=..&paths=..[&ports=..]` → the matching route.
    pub async fn find_route(
        &self,
        domain: &DomainGuid,
        host: &str,
        path: &str,
        port: Option<u16>,
    ) -> Result<Option<Route>, Error> {
        let query = RouteQuery {
            domain_guids: vec![domain.clone()],
            hosts: Some(vec![host.to_owned()]),
            paths: Some(vec![path.to_owned()]),
            ports: port.into_iter().collect(),
            ..RouteQuery::default()
        };
        self.first("/v3/routes", &query.to_query()).await
    }

    /// `GET /v3/routes` with filters, every page.
    pub async fn list_routes(&self, query: &RouteQuery) -> Result<Vec<Route>, Error> {
        self.list_all("/v3/routes", &query.to_query()).await
    }

    /// `GET /v3/apps/:guid/routes`, every page.
    pub async fn list_app_routes(&self, app: &AppGuid) -> Result<Vec<Route>, Error> {
        self.list_all(&format!("/v3/apps/{app}/routes"), &[]).await
    }

    /// `GET /v3/routes?app_guids=:guid&include=domain`, every page: the routes mapped to the
    /// app (each with its destinations) and their domains. Not `/v3/apps/:guid/routes`: Cloud
    /// Controller accepts `include=domain` there but answers without `included`.
    pub async fn list_app_routes_with_domains(
        &self,
        app: &AppGuid,
    ) -> Result<(Vec<Route>, Vec<Domain>), Error> {
        let query = [
            ("app_guids", app.to_string()),
            ("include", "domain".to_owned()),
        ];
        self.list_all_including("/v3/routes", &query, "domains")
            .await
    }

    /// `GET /v3/routes/:guid`.
    pub async fn get_route(&self, guid: &RouteGuid) -> Result<Route, Error> {
        self.get_json(self.url(&format!("/v3/routes/{guid}"))?)
            .await
    }

    /// `POST /v3/routes`.
    pub async fn create_route(&self, route: &NewRoute) -> Result<Route, Error> {
        self.send_json(Method::POST, self.url("/v3/routes")?, route)
            .await
    }

    /// `DELETE /v3/routes/:guid` → the deletion job.
    pub async fn delete_route(&self, guid: &RouteGuid) -> Result<JobGuid, Error> {
        let url = self.url(&format!("/v3/routes/{guid}"))?;
        self.delete_for_job(url).await
    }

    /// `GET /v3/routes/:guid/destinations`.
    pub async fn list_route_destinations(
        &self,
        route: &RouteGuid,
    ) -> Result<Vec<Destination>, Error> {
        let url = self.url(&format!("/v3/routes/{route}/destinations"))?;
        Ok(self
            .get_json::<Destinations<Destination>>(url)
            .await?
            .destinations)
    }

    /// `POST /v3/routes/:guid/destinations` (adds; existing destinations are kept) → all
    /// destinations of the route.
    pub async fn insert_route_destinations(
        &self,
        route: &RouteGuid,
        destinations: &[NewDestination],
    ) -> Result<Vec<Destination>, Error> {
        self.send_destinations(Method::POST, route, destinations)
            .await
    }

    /// `PATCH /v3/routes/:guid/destinations` (replaces all: destinations not listed are removed)
    /// → the new destinations.
    pub async fn replace_route_destinations(
        &self,
        route: &RouteGuid,
        destinations: &[NewDestination],
    ) -> Result<Vec<Destination>, Error> {
        self.send_destinations(Method::PATCH, route, destinations)
            .await
    }

    /// Sends `destinations` to `/v3/routes/:guid/destinations` with `method` (POST adds, PATCH
    /// replaces) → all destinations of the route.
    async fn send_destinations(
        &self,
        method: Method,
        route: &RouteGuid,
        destinations: &[NewDestination],
    ) -> Result<Vec<Destination>, Error> {
        let url = self.url(&format!("/v3/routes/{route}/destinations"))?;
        let body = Destinations {
            destinations: destinations.to_vec(),
        };
        // POST adds (an existing destination is kept, not doubled) and PATCH replaces: both
        // leave the same destinations when sent twice.
        let out: Destinations<Destination> = self
            .send_json_as(method, url, &body, Idempotency::Idempotent)
            .await?;
        Ok(out.destinations)
    }

    /// `DELETE /v3/routes/:guid/destinations/:destination_guid` (204).
    pub async fn remove_route_destination(
        &self,
        route: &RouteGuid,
        destination: &DestinationGuid,
    ) -> Result<(), Error> {
        let url = self.url(&format!("/v3/routes/{route}/destinations/{destination}"))?;
        self.send(Method::DELETE, url, Body::Empty).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_query_keeps_empty_hosts_and_paths() {
        let q = RouteQuery {
            domain_guids: vec![DomainGuid::new("d")],
            hosts: Some(vec![String::new()]),
            paths: Some(vec![String::new()]),
            ports: vec![1234],
            ..RouteQuery::default()
        };
        assert_eq!(
            q.to_query(),
            vec![
                ("domain_guids", "d".to_owned()),
                ("hosts", String::new()),
                ("paths", String::new()),
                ("ports", "1234".to_owned()),
            ]
        );
    }

    #[test]
    fn new_tcp_route_omits_host_and_path() {
        let r = NewRoute::tcp(SpaceGuid::new("s"), DomainGuid::new("d"), Some(6666));
        assert_eq!(
            serde_json::to_value(r).unwrap(),
            serde_json::json!({"port": 6666, "relationships": {
                "space": {"data": {"guid": "s"}}, "domain": {"data": {"guid": "d"}}}})
        );
    }
}
