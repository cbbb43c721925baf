//! What the platform records about apps besides their state: the per-app log-cache ring
//! buffers (Loggregator v2 envelopes in log-cache's JSON form) and Cloud Controller's audit
//! events.
//!
//! Envelopes are kept per source id (the app GUID), at most [`LOG_BUFFER`] each (the oldest
//! is dropped first, like log-cache's per-source cap). Timestamps are nanoseconds since the
//! epoch and strictly increasing across the whole store, so that `start_time`/`end_time`
//! windows and `descending` reads are deterministic. Audit events are kept in creation order,
//! at most [`MAX_AUDIT_EVENTS`] (the oldest tenth is forgotten when full).
//!
//! Depends on: `util`. Must not: do I/O or take the state lock (callers hold it).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::util::{new_guid, rfc3339};

/// Envelopes kept per source id.
pub(crate) const LOG_BUFFER: usize = 5000;

/// Audit events kept in all.
pub(crate) const MAX_AUDIT_EVENTS: usize = 20_000;

/// What an envelope carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Payload {
    /// A log line; `stream` is `OUT` or `ERR`.
    Log { text: Vec<u8>, stream: &'static str },
    /// An HTTP timer (gorouter's per-request `http` timer).
    Timer { name: String, start: i64, stop: i64 },
}

/// One Loggregator v2 envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    pub source_id: String,
    pub instance_id: String,
    pub tags: BTreeMap<String, String>,
    pub payload: Payload,
}

impl Envelope {
    /// log-cache's `envelope_types` name of this envelope.
    pub fn kind(&self) -> &'static str {
        match self.payload {
            Payload::Log { .. } => "LOG",
            Payload::Timer { .. } => "TIMER",
        }
    }

    /// The envelope as log-cache's JSON gateway renders it (int64 values as strings,
    /// log payloads base64).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "timestamp": self.timestamp.to_string(),
            "source_id": self.source_id,
            "instance_id": self.instance_id,
            "deprecated_tags": {},
            "tags": self.tags,
        });
        match &self.payload {
            Payload::Log { text, stream } => {
                v["log"] = json!({"payload": STANDARD.encode(text), "type": stream});
            }
            Payload::Timer { name, start, stop } => {
                v["timer"] =
                    json!({"name": name, "start": start.to_string(), "stop": stop.to_string()});
            }
        }
        v
    }
}

/// Nanoseconds since the epoch now.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or_default()
}

/// A read of one source's envelopes (log-cache's `/api/v1/read/{source_id}` parameters).
#[derive(Debug, Clone)]
pub(crate) struct ReadQuery {
    /// Inclusive lower bound (ns).
    pub start_time: i64,
    /// Exclusive upper bound (ns); `None` = now.
    pub end_time: Option<i64>,
    /// Empty = every type.
    pub types: Vec<String>,
    pub limit: usize,
    pub descending: bool,
}

/// The per-source ring buffers.
#[derive(Debug, Default)]
pub(crate) struct LogStore {
    buffers: HashMap<String, VecDeque<Envelope>>,
    last_ts: i64,
}

impl LogStore {
    /// Appends an envelope, giving it a timestamp after every earlier one.
    pub fn push(&mut self, mut e: Envelope) {
        e.timestamp = e.timestamp.max(self.last_ts.saturating_add(1));
        self.last_ts = e.timestamp;
        let buf = self.buffers.entry(e.source_id.clone()).or_default();
        buf.push_back(e);
        while buf.len() > LOG_BUFFER {
            buf.pop_front();
        }
    }

    /// Appends a log line of `source_type` (`APP/PROC/WEB`, `CELL`, `STG`, `RTR`, `API`).
    pub fn log(
        &mut self,
        source_id: &str,
        instance_id: &str,
        source_type: &str,
        text: &str,
        stream: &'static str,
    ) {
        let mut tags = BTreeMap::new();
        tags.insert("source_type".to_string(), source_type.to_string());
        self.push(Envelope {
            timestamp: now_ns(),
            source_id: source_id.to_string(),
            instance_id: instance_id.to_string(),
            tags,
            payload: Payload::Log {
                text: text.as_bytes().to_vec(),
                stream,
            },
        });
    }

    /// Envelopes of a source matching `q`: oldest first (newest first when descending), at
    /// most `limit`, as log-cache picks them (the first `limit` in the read direction).
    pub fn read(&self, source_id: &str, q: &ReadQuery) -> Vec<&Envelope> {
        let Some(buf) = self.buffers.get(source_id) else {
            return Vec::new();
        };
        let end = q.end_time.unwrap_or(i64::MAX);
        let matches = |e: &&Envelope| {
            e.timestamp >= q.start_time
                && e.timestamp < end
                && (q.types.is_empty() || q.types.iter().any(|t| t == e.kind()))
        };
        if q.descending {
            buf.iter().rev().filter(matches).take(q.limit).collect()
        } else {
            buf.iter().filter(matches).take(q.limit).collect()
        }
    }

    /// Every envelope of a source, oldest first.
    #[cfg(test)]
    pub fn all(&self, source_id: &str) -> Vec<&Envelope> {
        self.buffers
            .get(source_id)
            .map(|b| b.iter().collect())
            .unwrap_or_default()
    }
}

/// One CC audit event.
#[derive(Debug, Clone)]
pub(crate) struct AuditEvent {
    pub guid: String,
    /// Seconds since the epoch (CC's second precision).
    pub created: u64,
    pub kind: String,
    pub actor: Value,
    pub target: Value,
    pub data: Value,
    pub space_guid: String,
    pub org_guid: String,
}

impl AuditEvent {
    pub fn new(kind: &str, actor: Value, target: Value, data: Value) -> AuditEvent {
        AuditEvent {
            guid: new_guid(),
            created: super::util::unix_now(),
            kind: kind.to_string(),
            actor,
            target,
            data,
            space_guid: String::new(),
            org_guid: String::new(),
        }
    }

    /// The CC v3 audit event object.
    pub fn to_json(&self, base: &str) -> Value {
        let at = rfc3339(self.created);
        json!({
            "guid": self.guid, "created_at": at, "updated_at": at, "type": self.kind,
            "actor": self.actor, "target": self.target, "data": self.data,
            "space": {"guid": self.space_guid}, "organization": {"guid": self.org_guid},
            "links": {"self": {"href": format!("{base}/v3/audit_events/{}", self.guid)}},
        })
    }
}

/// Parses an ISO-8601 UTC timestamp as CC takes it in `created_ats` filters
/// (`YYYY-MM-DDThh:mm:ssZ`; fractional seconds are accepted too) into nanoseconds.
pub(crate) fn parse_timestamp(text: &str) -> Option<i128> {
    let t = text.trim().strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day) = (
        d.next()?.parse::<i64>().ok()?,
        d.next()?.parse::<i64>().ok()?,
        d.next()?.parse::<i64>().ok()?,
    );
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let mut p = hms.split(':');
    let (hh, mm, ss) = (
        p.next()?.parse::<i64>().ok()?,
        p.next()?.parse::<i64>().ok()?,
        p.next()?.parse::<i64>().ok()?,
    );
    if p.next().is_some() || hh > 23 || mm > 59 || ss > 60 || hh < 0 || mm < 0 || ss < 0 {
        return None;
    }
    let nanos: i128 = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<9}").parse().ok()?
        }
        Some(_) => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_nanoseconds() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_timestamp("2024-05-01T12:00:00Z"),
            Some(1_714_564_800_000_000_000)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T12:00:00.5Z"),
            Some(1_714_564_800_500_000_000)
        );
        assert_eq!(parse_timestamp("2024-05-01 12:00:00"), None);
        assert_eq!(parse_timestamp("2024-13-01T12:00:00Z"), None);
    }

    #[test]
    fn ring_buffer_is_bounded_and_ordered() {
        let mut s = LogStore::default();
        for i in 0..(LOG_BUFFER + 10) {
            s.log("app", "0", "APP/PROC/WEB", &format!("line {i}"), "OUT");
        }
        let all = s.all("app");
        assert_eq!(all.len(), LOG_BUFFER);
        assert!(all.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        let q = ReadQuery {
            start_time: 0,
            end_time: None,
            types: vec!["LOG".into()],
            limit: 2,
            descending: true,
        };
        let last = s.read("app", &q);
        assert_eq!(last.len(), 2);
        assert!(last[0].timestamp > last[1].timestamp);
        assert_eq!(
            last[0].payload,
            Payload::Log {
                text: format!("line {}", LOG_BUFFER + 9).into_bytes(),
                stream: "OUT"
            }
        );
        let q = ReadQuery {
            types: vec!["TIMER".into()],
            ..q
        };
        assert!(s.read("app", &q).is_empty());
    }
}
