//! Audit events: `GET /v3/audit_events`, read to notice instance crashes that happen between two
//! stats polls (Diego restarts a crashed instance at once, so a poll may never see `CRASHED`).
//!
//! A crash is recorded as `audit.app.process.crash` with the app as `target` and the process as
//! `actor` (`actor.guid` = process GUID, `actor.name` = process type); its `data` holds `index`,
//! `reason` (`CRASHED`), `exit_description`, `instance` (the instance GUID) and `cell_id`.
//! [`AuditEvent::crash`] reads those. Older platforms also write `app.crash` with the same data.
//!
//! Audit events are optional for this tool: a space developer may be refused (403) and the
//! caller degrades ([`Error::is_unavailable_optional`]).
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, app: cf_zero_downtime::cf::AppGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! use cf_zero_downtime::cf::AuditEventFilter;
//! let filter = AuditEventFilter::crashes_of(&app).created_after_unix(1_767_225_600);
//! for event in client.list_audit_events(filter).await? {
//!     if let Some(crash) = event.crash() {
//!         eprintln!("instance {:?} crashed: {:?}", crash.index, crash.exit_description);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: read more than [`AuditEventFilter::max_pages`] pages.

use super::nullable::null_as_default;
use serde::{Deserialize, Serialize};

use super::guid::AppGuid;
use super::request::join_filter;
use super::trace::rfc3339;
use super::{Client, Error};

/// The type of a process crash event.
pub const PROCESS_CRASH: &str = "audit.app.process.crash";

/// The legacy type of a crash event, written beside [`PROCESS_CRASH`] by older platforms.
pub const APP_CRASH: &str = "app.crash";

/// The type of the event Cloud Controller records when Diego reschedules an instance (a cell
/// evacuated during a platform upgrade): not a crash; the data names the instance, index,
/// cell and reason.
pub const PROCESS_RESCHEDULING: &str = "audit.app.process.rescheduling";

/// Default bound on pages read by one [`Client::list_audit_events`] (5000 events a page).
pub const DEFAULT_AUDIT_EVENT_PAGES: usize = 4;

/// The filters of `GET /v3/audit_events`. Empty lists send no filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEventFilter {
    /// `types=`, e.g. [`PROCESS_CRASH`].
    pub types: Vec<String>,
    /// `target_guids=` (app GUIDs for app events).
    pub target_guids: Vec<String>,
    pub space_guids: Vec<String>,
    /// `created_ats[gt]=`, an RFC 3339 timestamp. CC compares at second precision: an event in
    /// the same second as the bound is not returned, so pass a bound a second early.
    pub created_after: Option<String>,
    /// Pages read at most (newest events first, so a cut drops the oldest ones).
    pub max_pages: usize,
}

impl Default for AuditEventFilter {
    fn default() -> Self {
        Self {
            types: Vec::new(),
            target_guids: Vec::new(),
            space_guids: Vec::new(),
            created_after: None,
            max_pages: DEFAULT_AUDIT_EVENT_PAGES,
        }
    }
}

impl AuditEventFilter {
    /// Crash events (`audit.app.process.crash` and the legacy `app.crash`) of one app.
    pub fn crashes_of(app: &AppGuid) -> Self {
        Self {
            types: vec![PROCESS_CRASH.to_owned(), APP_CRASH.to_owned()],
            target_guids: vec![app.to_string()],
            ..Self::default()
        }
    }

    /// Crash events and rescheduling events ([`PROCESS_RESCHEDULING`]) of one app: what tells
    /// a crashed instance from one Diego moved to another cell.
    pub fn instance_events_of(app: &AppGuid) -> Self {
        Self {
            types: vec![
                PROCESS_CRASH.to_owned(),
                APP_CRASH.to_owned(),
                PROCESS_RESCHEDULING.to_owned(),
            ],
            target_guids: vec![app.to_string()],
            ..Self::default()
        }
    }

    /// The same filter for events created after `secs` seconds since the Unix epoch.
    pub fn created_after_unix(mut self, secs: i64) -> Self {
        self.created_after = Some(rfc3339(secs));
        self
    }

    fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if !self.types.is_empty() {
            q.push(("types", join_filter(&self.types)));
        }
        if !self.target_guids.is_empty() {
            q.push(("target_guids", join_filter(&self.target_guids)));
        }
        if !self.space_guids.is_empty() {
            q.push(("space_guids", join_filter(&self.space_guids)));
        }
        if let Some(after) = &self.created_after {
            q.push(("created_ats[gt]", after.clone()));
        }
        q.push(("order_by", "-created_at".to_owned()));
        q
    }
}

/// The `target` or `actor` of an audit event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEventParty {
    /// Its GUID (an app for a crash's target, a process for its actor).
    #[serde(default, deserialize_with = "null_as_default")]
    pub guid: String,
    /// Its kind, e.g. `app`, `process`, `user`.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// Its name (the app name; the process type for a crash's actor).
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Its GUID, as in `/v3/audit_events/:guid`.
    pub guid: String,
    /// E.g. `audit.app.process.crash`.
    #[serde(rename = "type")]
    pub type_: String,
    /// When it was recorded (RFC 3339, second precision).
    #[serde(default, deserialize_with = "null_as_default")]
    pub created_at: String,
    /// Who did it (for a crash: the process).
    #[serde(default, deserialize_with = "null_as_default")]
    pub actor: AuditEventParty,
    /// What it happened to (for a crash: the app).
    #[serde(default, deserialize_with = "null_as_default")]
    pub target: AuditEventParty,
    /// Type-specific details.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// The details of a crash event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashDetails {
    /// The instance index.
    pub index: Option<u32>,
    /// E.g. `CRASHED`.
    pub reason: Option<String>,
    /// E.g. `APP/PROC/WEB: Exited with status 1`, or the failed health check.
    pub exit_description: Option<String>,
    /// The crashed instance's GUID (compare with `InstanceStats::instance_guid`).
    pub instance: Option<String>,
    /// The Diego cell the instance ran on.
    pub cell_id: Option<String>,
    /// The process GUID (the event's actor), when the actor is a process.
    pub process_guid: Option<String>,
    /// The process type (the actor's name), when the actor is a process.
    pub process_type: Option<String>,
}

impl AuditEvent {
    /// True for `audit.app.process.crash` and `app.crash`.
    pub fn is_crash(&self) -> bool {
        self.type_ == PROCESS_CRASH || self.type_ == APP_CRASH
    }

    /// The crash details when this is a crash event (missing or mistyped fields are `None`).
    pub fn crash(&self) -> Option<CrashDetails> {
        self.is_crash().then(|| self.instance_details())
    }

    /// True for [`PROCESS_RESCHEDULING`].
    pub fn is_rescheduling(&self) -> bool {
        self.type_ == PROCESS_RESCHEDULING
    }

    /// The details of a rescheduling event (`reason` is e.g. `Cell is being evacuated`;
    /// `exit_description` is not set by Cloud Controller for these).
    pub fn rescheduling(&self) -> Option<CrashDetails> {
        self.is_rescheduling().then(|| self.instance_details())
    }

    fn instance_details(&self) -> CrashDetails {
        let text = |k: &str| {
            self.data
                .get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let is_process = self.actor.type_ == "process";
        CrashDetails {
            index: self
                .data
                .get("index")
                .and_then(serde_json::Value::as_u64)
                .and_then(|i| u32::try_from(i).ok()),
            reason: text("reason"),
            exit_description: text("exit_description"),
            instance: text("instance"),
            cell_id: text("cell_id"),
            process_guid: is_process.then(|| self.actor.guid.clone()),
            process_type: is_process.then(|| self.actor.name.clone()),
        }
    }
}

impl Client {
    /// `GET /v3/audit_events?types=..&target_guids=..&space_guids=..&created_ats[gt]=..
    /// &order_by=-created_at`, newest first, at most `filter.max_pages` pages.
    ///
    /// # Errors
    /// 403 when the user may not read audit events ([`Error::is_unavailable_optional`]).
    pub async fn list_audit_events(
        &self,
        filter: AuditEventFilter,
    ) -> Result<Vec<AuditEvent>, Error> {
        let (events, _complete) = self
            .list_pages(
                "/v3/audit_events",
                &filter.to_query(),
                filter.max_pages.max(1),
            )
            .await?;
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescheduling_is_told_apart_from_a_crash() {
        let e: AuditEvent = serde_json::from_value(serde_json::json!({
            "guid": "e2", "type": "audit.app.process.rescheduling",
            "created_at": "2026-01-01T00:00:00Z",
            "actor": {"guid": "proc-1", "type": "process", "name": "web"},
            "target": {"guid": "app-1", "type": "app", "name": "web-app"},
            "data": {"index": 1, "reason": "Cell is being evacuated", "instance": "ig-7",
                     "cell_id": "cell-3"}
        }))
        .unwrap();
        assert!(e.crash().is_none());
        let r = e.rescheduling().unwrap();
        assert_eq!(r.index, Some(1));
        assert_eq!(r.instance.as_deref(), Some("ig-7"));
        assert_eq!(r.cell_id.as_deref(), Some("cell-3"));
        assert_eq!(r.process_guid.as_deref(), Some("proc-1"));
        let f = AuditEventFilter::instance_events_of(&AppGuid::new("app-1")).to_query();
        assert!(
            f.iter()
                .any(|(k, v)| *k == "types" && v.contains(PROCESS_RESCHEDULING))
        );
    }

    #[test]
    fn crash_details_come_from_data_and_actor() {
        let e: AuditEvent = serde_json::from_value(serde_json::json!({
            "guid": "e1", "type": "audit.app.process.crash", "created_at": "2026-01-01T00:00:00Z",
            "actor": {"guid": "proc-1", "type": "process", "name": "web"},
            "target": {"guid": "app-1", "type": "app", "name": "web-app"},
            "data": {"index": 2, "reason": "CRASHED", "instance": "ig-1", "cell_id": "c",
                     "exit_description": "APP/PROC/WEB: Exited with status 1"},
            "space": {"guid": "s"}, "organization": {"guid": "o"}, "links": {}
        }))
        .unwrap();
        let c = e.crash().unwrap();
        assert_eq!(c.index, Some(2));
        assert_eq!(c.reason.as_deref(), Some("CRASHED"));
        assert_eq!(c.instance.as_deref(), Some("ig-1"));
        assert_eq!(c.process_guid.as_deref(), Some("proc-1"));
        assert_eq!(c.process_type.as_deref(), Some("web"));
        assert!(c.exit_description.unwrap().contains("status 1"));
    }

    #[test]
    fn other_events_have_no_crash_details_and_odd_data_is_tolerated() {
        let e: AuditEvent =
            serde_json::from_value(serde_json::json!({"guid": "e", "type": "audit.app.update"}))
                .unwrap();
        assert!(e.crash().is_none());
        let odd: AuditEvent = serde_json::from_value(serde_json::json!({
            "guid": "e", "type": "app.crash", "data": {"index": "x", "reason": 5}
        }))
        .unwrap();
        assert_eq!(odd.crash().unwrap(), CrashDetails::default());
    }

    #[test]
    fn filter_query_sends_only_set_filters_newest_first() {
        let q = AuditEventFilter::crashes_of(&AppGuid::new("a1")).created_after_unix(0);
        assert_eq!(
            q.to_query(),
            vec![
                ("types", "audit.app.process.crash,app.crash".to_owned()),
                ("target_guids", "a1".to_owned()),
                ("created_ats[gt]", "1970-01-01T00:00:00Z".to_owned()),
                ("order_by", "-created_at".to_owned()),
            ]
        );
    }
}
