//! log-cache reads: `GET {log_cache}/api/v1/read/{source_id}`, the recent envelopes of an app
//! (source id = app GUID): its logs (`LOG`), and the router's HTTP timers (`TIMER` named `http`,
//! tagged `status_code`) used for canary analysis and to tell when a draining app is quiet.
//!
//! The base URL is the root document's `links.log_cache.href` ([`Client::discover`] runs first
//! when it has not). log-cache accepts the Cloud Controller token, so the same bearer token is
//! sent, but never over plain http when the API itself is https. When the platform does not
//! advertise log-cache the call fails with [`Error::Unavailable`]; that, a 403 and a 404 are
//! [`Error::is_unavailable_optional`], and callers degrade.
//!
//! The JSON is log-cache's rendering of loggregator v2 envelopes: 64-bit integers are strings
//! (`"timestamp": "1580428783743175424"`), bytes are base64 (`log.payload`), and exactly one of
//! `log`, `counter`, `gauge`, `timer`, `event` is set. Numbers given as JSON numbers are accepted
//! too; an absent `log.type` is `OUT` (the zero value is not rendered).
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, app: cf_zero_downtime::cf::AppGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! use cf_zero_downtime::cf::{EnvelopeKind, EnvelopeType, LogCacheQuery};
//! let query = LogCacheQuery::recent(&[EnvelopeType::Log, EnvelopeType::Timer], 500);
//! for e in client.read_log_cache(app.as_str(), query).await? {
//!     if let EnvelopeKind::Log(log) = &e.kind {
//!         println!("{} [{}] {}", e.timestamp, e.instance_id, log.text());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core, discovery, base64. Must not: send the token to a URL that does
//! not come from the API's root document.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::nullable::{map_without_nulls, null_as_default};
use base64::Engine as _;
use reqwest::Method;
use serde::Deserialize;
use url::Url;

use super::{Client, Error};

/// The most envelopes log-cache returns for one read.
pub const MAX_LOG_CACHE_LIMIT: u32 = 1000;

/// An envelope kind, for `envelope_types=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvelopeType {
    /// Log lines.
    Log,
    /// Counters.
    Counter,
    /// Gauges.
    Gauge,
    /// Timers (the router's `http` timer per request).
    Timer,
    /// Events.
    Event,
}

impl EnvelopeType {
    fn as_str(self) -> &'static str {
        match self {
            EnvelopeType::Log => "LOG",
            EnvelopeType::Counter => "COUNTER",
            EnvelopeType::Gauge => "GAUGE",
            EnvelopeType::Timer => "TIMER",
            EnvelopeType::Event => "EVENT",
        }
    }
}

/// The parameters of a log-cache read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCacheQuery {
    /// `start_time=`: envelopes at or after this time, in ns since the Unix epoch.
    pub start_time_ns: Option<i64>,
    /// `end_time=`: envelopes before this time, in ns since the Unix epoch.
    pub end_time_ns: Option<i64>,
    /// `envelope_types=` (repeated); empty means every kind.
    pub envelope_types: Vec<EnvelopeType>,
    /// `limit=`, capped at [`MAX_LOG_CACHE_LIMIT`].
    pub limit: Option<u32>,
    /// `descending=true`: newest first.
    pub descending: bool,
}

impl LogCacheQuery {
    /// The newest `limit` envelopes of the given kinds, newest first.
    pub fn recent(types: &[EnvelopeType], limit: u32) -> Self {
        Self {
            envelope_types: types.to_vec(),
            limit: Some(limit),
            descending: true,
            ..Self::default()
        }
    }

    /// The same query starting at `ns` nanoseconds since the Unix epoch.
    pub fn since_ns(mut self, ns: i64) -> Self {
        self.start_time_ns = Some(ns);
        self
    }

    fn apply(&self, url: &mut Url) {
        let mut q = url.query_pairs_mut();
        if let Some(t) = self.start_time_ns {
            q.append_pair("start_time", &t.to_string());
        }
        if let Some(t) = self.end_time_ns {
            q.append_pair("end_time", &t.to_string());
        }
        for t in &self.envelope_types {
            q.append_pair("envelope_types", t.as_str());
        }
        if let Some(limit) = self.limit {
            q.append_pair("limit", &limit.clamp(1, MAX_LOG_CACHE_LIMIT).to_string());
        }
        if self.descending {
            q.append_pair("descending", "true");
        }
    }
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// A log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage {
    /// The decoded payload.
    pub payload: Vec<u8>,
    pub stream: LogStream,
}

impl LogMessage {
    /// The payload as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.payload)
    }
}

/// A timer: `name` (the router's is `http`) from `start` to `stop`, in ns since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// E.g. `http`.
    pub name: String,
    /// Start, ns since the Unix epoch.
    pub start: i64,
    /// Stop, ns since the Unix epoch.
    pub stop: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub name: String,
    /// Change since the last emission.
    pub delta: u64,
    /// Running total.
    pub total: u64,
}

/// One gauge metric.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeValue {
    /// Unit, e.g. `bytes`.
    pub unit: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub title: String,
    pub body: String,
}

/// What an envelope carries.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvelopeKind {
    /// A log line.
    Log(LogMessage),
    Counter(Counter),
    /// Gauge metrics by name.
    Gauge(BTreeMap<String, GaugeValue>),
    Timer(Timer),
    Event(Event),
    /// A kind this client does not know.
    Other,
}

/// A loggregator v2 envelope from log-cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// When it was emitted, ns since the Unix epoch.
    pub timestamp: i64,
    /// The source (an app GUID for app envelopes).
    pub source_id: String,
    /// The instance index as text (`"0"`), empty when not from an instance.
    pub instance_id: String,
    /// Tags, e.g. `source_type: APP/PROC/WEB` or `RTR`, a timer's `status_code`.
    pub tags: BTreeMap<String, String>,
    /// The payload.
    pub kind: EnvelopeKind,
}

// ---- wire format ----

/// An int64 as log-cache renders it: a string, or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireInt {
    Text(String),
    Number(i64),
}

impl WireInt {
    fn parse(&self) -> Option<i64> {
        match self {
            WireInt::Text(s) => s.trim().parse().ok(),
            WireInt::Number(n) => Some(*n),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct WireRead {
    #[serde(default, deserialize_with = "null_as_default")]
    envelopes: WireBatch,
}

#[derive(Deserialize, Default)]
struct WireBatch {
    #[serde(default, deserialize_with = "null_as_default")]
    batch: Vec<WireEnvelope>,
}

#[derive(Deserialize)]
struct WireEnvelope {
    timestamp: Option<WireInt>,
    #[serde(default, deserialize_with = "null_as_default")]
    source_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    instance_id: String,
    #[serde(default, deserialize_with = "map_without_nulls")]
    tags: BTreeMap<String, String>,
    log: Option<WireLog>,
    counter: Option<WireCounter>,
    gauge: Option<WireGauge>,
    timer: Option<WireTimer>,
    event: Option<WireEvent>,
}

#[derive(Deserialize)]
struct WireLog {
    #[serde(default, deserialize_with = "null_as_default")]
    payload: String,
    #[serde(rename = "type", default)]
    type_: Option<String>,
}

#[derive(Deserialize)]
struct WireCounter {
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    delta: Option<WireInt>,
    total: Option<WireInt>,
}

#[derive(Deserialize)]
struct WireGauge {
    #[serde(default, deserialize_with = "map_without_nulls")]
    metrics: BTreeMap<String, WireGaugeValue>,
}

#[derive(Deserialize)]
struct WireGaugeValue {
    #[serde(default, deserialize_with = "null_as_default")]
    unit: String,
    #[serde(default, deserialize_with = "null_as_default")]
    value: f64,
}

#[derive(Deserialize)]
struct WireTimer {
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    start: Option<WireInt>,
    stop: Option<WireInt>,
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(default, deserialize_with = "null_as_default")]
    title: String,
    #[serde(default, deserialize_with = "null_as_default")]
    body: String,
}

/// Turns the wire envelopes into [`Envelope`]s; `Err` names what was malformed.
fn convert(batch: Vec<WireEnvelope>) -> Result<Vec<Envelope>, String> {
    let int = |v: &Option<WireInt>, what: &str| -> Result<i64, String> {
        match v {
            None => Ok(0),
            Some(w) => w.parse().ok_or_else(|| format!("{what} is not an integer")),
        }
    };
    let uint = |v: &Option<WireInt>, what: &str| -> Result<u64, String> {
        u64::try_from(int(v, what)?).map_err(|_| format!("{what} is negative"))
    };
    batch
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let at = |what: &str| format!("envelope {i}: {what}");
            let kind = if let Some(log) = w.log {
                let payload = base64::engine::general_purpose::STANDARD
                    .decode(log.payload.trim())
                    .map_err(|_| at("log.payload is not base64"))?;
                let stream = match log.type_.as_deref() {
                    Some("ERR") => LogStream::Err,
                    _ => LogStream::Out,
                };
                EnvelopeKind::Log(LogMessage { payload, stream })
            } else if let Some(t) = w.timer {
                EnvelopeKind::Timer(Timer {
                    start: int(&t.start, &at("timer.start"))?,
                    stop: int(&t.stop, &at("timer.stop"))?,
                    name: t.name,
                })
            } else if let Some(c) = w.counter {
                EnvelopeKind::Counter(Counter {
                    delta: uint(&c.delta, &at("counter.delta"))?,
                    total: uint(&c.total, &at("counter.total"))?,
                    name: c.name,
                })
            } else if let Some(g) = w.gauge {
                EnvelopeKind::Gauge(
                    g.metrics
                        .into_iter()
                        .map(|(k, v)| {
                            (
                                k,
                                GaugeValue {
                                    unit: v.unit,
                                    value: v.value,
                                },
                            )
                        })
                        .collect(),
                )
            } else if let Some(e) = w.event {
                EnvelopeKind::Event(Event {
                    title: e.title,
                    body: e.body,
                })
            } else {
                EnvelopeKind::Other
            };
            Ok(Envelope {
                timestamp: int(&w.timestamp, &at("timestamp"))?,
                source_id: w.source_id,
                instance_id: w.instance_id,
                tags: w.tags,
                kind,
            })
        })
        .collect()
}

impl Client {
    /// The log-cache base URL from the root document (read now if it was not yet).
    async fn log_cache_base(&self) -> Result<Url, Error> {
        let root = match self.discovered().filter(|d| d.root_known) {
            Some(d) => d.root,
            None => self.discover().await?,
        };
        let href = root
            .links
            .log_cache
            .map(|l| l.href)
            .filter(|h| !h.trim().is_empty())
            .ok_or(Error::Unavailable {
                service: "log-cache",
                link: "log_cache",
            })?;
        let url = Url::parse(href.trim()).map_err(|e| Error::Protocol {
            endpoint: "GET /".to_owned(),
            what: format!("log_cache link '{href}': {e}"),
        })?;
        super::links::check_token_link(self.api_endpoint(), &url).map_err(|why| {
            Error::Protocol {
                endpoint: "GET /".to_owned(),
                what: format!("log_cache link {why}"),
            }
        })?;
        Ok(url)
    }

    /// `GET {log_cache}/api/v1/read/{source_id}?start_time=..&envelope_types=..&limit=..
    /// &descending=true` → the envelopes, in the order log-cache returns them.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the platform advertises no log-cache; an API error with 403
    /// or 404 when log-cache refuses or lacks the source ([`Error::is_unavailable_optional`]);
    /// [`Error::Protocol`] for an envelope that is not log-cache's format.
    pub async fn read_log_cache(
        &self,
        source_id: &str,
        query: LogCacheQuery,
    ) -> Result<Vec<Envelope>, Error> {
        let mut url = self.log_cache_base().await?;
        let base = url.to_string();
        url.path_segments_mut()
            .map_err(|()| Error::Protocol {
                endpoint: "GET /".to_owned(),
                what: format!("log_cache link '{base}' cannot take a path"),
            })?
            .pop_if_empty()
            .extend(["api", "v1", "read", source_id]);
        query.apply(&mut url);
        let resp = self
            .send(Method::GET, url, super::request::Body::Empty)
            .await?;
        let read: WireRead = resp.json()?;
        convert(read.envelopes.batch).map_err(|what| Error::Protocol {
            endpoint: resp.endpoint.clone(),
            what,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(v: serde_json::Value) -> Result<Vec<Envelope>, String> {
        let read: WireRead = serde_json::from_value(v).unwrap();
        convert(read.envelopes.batch)
    }

    #[test]
    fn every_kind_decodes() {
        let out = decode(serde_json::json!({"envelopes": {"batch": [
            {"timestamp": "1700000000000000001", "source_id": "app", "instance_id": "1",
             "tags": {"source_type": "APP/PROC/WEB"}, "log": {"payload": "aGVsbG8=", "type": "ERR"}},
            {"timestamp": "2", "source_id": "app", "log": {"payload": "aGk="}},
            {"timestamp": 3, "source_id": "app", "tags": {"status_code": "502"},
             "timer": {"name": "http", "start": "10", "stop": "25"}},
            {"timestamp": "4", "counter": {"name": "c", "delta": "1", "total": "9"}},
            {"timestamp": "5", "gauge": {"metrics": {"cpu": {"unit": "percentage", "value": 1.5}}}},
            {"timestamp": "6", "event": {"title": "t", "body": "b"}},
            {"timestamp": "7", "something_new": {}}
        ]}}))
        .unwrap();
        assert_eq!(out.len(), 7);
        assert_eq!(out[0].timestamp, 1_700_000_000_000_000_001);
        assert_eq!(out[0].instance_id, "1");
        assert_eq!(out[0].tags["source_type"], "APP/PROC/WEB");
        let EnvelopeKind::Log(log) = &out[0].kind else {
            panic!("{:?}", out[0].kind)
        };
        assert_eq!(log.text(), "hello");
        assert_eq!(log.stream, LogStream::Err);
        assert_matches::assert_matches!(&out[1].kind, EnvelopeKind::Log(l) if l.stream == LogStream::Out && l.text() == "hi");
        assert_eq!(
            out[2].kind,
            EnvelopeKind::Timer(Timer {
                name: "http".into(),
                start: 10,
                stop: 25
            })
        );
        assert_matches::assert_matches!(&out[3].kind, EnvelopeKind::Counter(c) if c.total == 9 && c.delta == 1);
        assert_matches::assert_matches!(&out[4].kind, EnvelopeKind::Gauge(g) if g["cpu"].value == 1.5);
        assert_matches::assert_matches!(&out[5].kind, EnvelopeKind::Event(e) if e.title == "t");
        assert_eq!(out[6].kind, EnvelopeKind::Other);
    }

    #[test]
    fn malformed_envelopes_are_named() {
        let e = decode(serde_json::json!({"envelopes": {"batch": [
            {"timestamp": "1", "log": {"payload": "***"}}]}}))
        .unwrap_err();
        assert_eq!(e, "envelope 0: log.payload is not base64");
        let e = decode(serde_json::json!({"envelopes": {"batch": [
            {"timestamp": "soon"}]}}))
        .unwrap_err();
        assert_eq!(e, "envelope 0: timestamp is not an integer");
        assert!(decode(serde_json::json!({})).unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_token_is_not_sent_over_http_when_the_api_is_https() {
        use super::super::{ClientConfig, StaticToken};
        let token = std::sync::Arc::new(StaticToken(secrecy::SecretString::from("bearer t")));
        let client = Client::new(ClientConfig::new("https://api.example.org", token)).unwrap();
        let root: super::super::RootInfo = serde_json::from_value(serde_json::json!(
            {"links": {"log_cache": {"href": "http://log-cache.example.org"}}}
        ))
        .unwrap();
        client.store_root(root);
        let err = client
            .read_log_cache("app", LogCacheQuery::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is not an https URL"), "{err}");
    }

    #[test]
    fn query_parameters() {
        let mut url = Url::parse("https://lc/api/v1/read/x").unwrap();
        LogCacheQuery::recent(&[EnvelopeType::Log, EnvelopeType::Timer], 5000)
            .since_ns(42)
            .apply(&mut url);
        assert_eq!(
            url.query(),
            Some(
                "start_time=42&envelope_types=LOG&envelope_types=TIMER&limit=1000&descending=true"
            )
        );
    }
}
