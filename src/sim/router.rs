//! The router: an HTTP reverse proxy on its own port that sends a request to a RUNNING,
//! routable instance of the app(s) mapped to the route its `Host` header (and the longest
//! matching path prefix) names, round robin. Like gorouter it answers 404 with
//! `X-Cf-Routererror: unknown_route` when no route has a backend, 502 with
//! `endpoint_failure` when no backend could take the request (after trying up to three on
//! connection failures), honours `X-Cf-Process-Instance: <process-guid>[:<index>]`, and adds
//! `X-Vcap-Request-Id` / `X-Forwarded-*` headers. Every response carries `X-Sim-Backend:
//! <process-guid>:<index>` (simulator-specific) so tests can see who served.
//!
//! The routing table is recomputed from the model on every tick; a changed table becomes the
//! one in use only after the route-propagation delay, as a real router is eventually
//! consistent.
//!
//! Depends on: `state`, `mod.rs` (`Shared`). Must not: hold a lock across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::Shared;
use super::state::{InstState, State};
use super::util::new_guid;

/// One instance that can take requests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Backend {
    pub process_guid: String,
    pub index: u32,
    pub port: u16,
}

/// One route with its backends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    /// Lowercase `host.domain` (or `*.domain`, or the bare domain).
    pub host: String,
    pub path: String,
    pub backends: Vec<Backend>,
}

/// A routing table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Routes {
    pub entries: Vec<Entry>,
}

impl Routes {
    /// The table the model implies now.
    pub fn compute(st: &State) -> Routes {
        let mut entries = Vec::new();
        for r in &st.routes {
            if r.protocol == "tcp" {
                continue;
            }
            let Some(domain) = st.domain(&r.domain_guid) else {
                continue;
            };
            let host = if r.host.is_empty() {
                domain.name.to_lowercase()
            } else {
                format!("{}.{}", r.host, domain.name).to_lowercase()
            };
            let mut backends = Vec::new();
            for d in &r.destinations {
                for p in st
                    .processes
                    .iter()
                    .filter(|p| p.app_guid == d.app_guid && p.kind == d.process_type)
                {
                    for i in st.instances.iter().filter(|i| {
                        i.process_guid == p.meta.guid && i.state == InstState::Running && i.routable
                    }) {
                        if let Some(port) = i.port {
                            backends.push(Backend {
                                process_guid: p.meta.guid.clone(),
                                index: i.index,
                                port,
                            });
                        }
                    }
                }
            }
            backends.sort();
            backends.dedup();
            if !backends.is_empty() {
                entries.push(Entry {
                    host,
                    path: r.path.clone(),
                    backends,
                });
            }
        }
        entries.sort();
        Routes { entries }
    }

    /// The entry for a host and path: exact host first, then a wildcard host of the parent
    /// domain; the longest path prefix (on a segment boundary) wins.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Entry> {
        let wildcard = host.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        for candidate in std::iter::once(host.to_string()).chain(wildcard) {
            let best = self
                .entries
                .iter()
                .filter(|e| e.host == candidate && path_prefix(&e.path, path))
                .max_by_key(|e| e.path.len());
            if best.is_some() {
                return best;
            }
        }
        None
    }
}

fn path_prefix(route_path: &str, path: &str) -> bool {
    route_path.is_empty()
        || path == route_path
        || path
            .strip_prefix(route_path)
            .is_some_and(|rest| rest.starts_with('/'))
}

struct Inner {
    delay: Duration,
    published: Arc<Routes>,
    last: Arc<Routes>,
    pending: VecDeque<(Instant, Arc<Routes>)>,
    counters: HashMap<String, usize>,
}

/// The router's table with its propagation delay.
pub(crate) struct Table {
    inner: Mutex<Inner>,
}

impl Table {
    pub fn new(delay: Duration) -> Table {
        Table {
            inner: Mutex::new(Inner {
                delay,
                published: Arc::default(),
                last: Arc::default(),
                pending: VecDeque::new(),
                counters: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the propagation delay (it applies to changes still pending too).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    fn promote(&self, inner: &mut Inner) {
        let now = Instant::now();
        let delay = inner.delay;
        while inner
            .pending
            .front()
            .is_some_and(|(t, _)| t.checked_add(delay).is_some_and(|due| due <= now))
        {
            if let Some((_, table)) = inner.pending.pop_front() {
                inner.published = table;
            }
        }
    }

    /// Recomputes the table from the model; a change is queued behind the delay.
    pub fn refresh(&self, shared: &Shared) {
        let computed = Arc::new(Routes::compute(&shared.lock()));
        let mut inner = self.lock();
        if *computed != *inner.last {
            inner.last = computed.clone();
            inner.pending.push_back((Instant::now(), computed));
        }
        self.promote(&mut inner);
    }

    /// The table in use now.
    pub fn published(&self) -> Arc<Routes> {
        self.promote_now()
    }

    fn promote_now(&self) -> Arc<Routes> {
        let mut inner = self.lock();
        self.promote(&mut inner);
        inner.published.clone()
    }

    /// How many table changes are still propagating.
    pub fn pending_len(&self) -> usize {
        let mut inner = self.lock();
        self.promote(&mut inner);
        inner.pending.len()
    }

    fn next_start(&self, key: &str) -> usize {
        let mut inner = self.lock();
        let c = inner.counters.entry(key.to_string()).or_insert(0);
        let v = *c;
        *c = c.wrapping_add(1);
        v
    }

    /// `(url, ["process:index", ...])` of the table in use.
    pub fn published_summary(&self) -> Vec<(String, Vec<String>)> {
        summary(&self.published())
    }

    /// JSON of the table in use and the changes still propagating.
    pub fn dump(&self) -> Value {
        let published = self.published();
        let inner = self.lock();
        let pending: Vec<Value> = inner
            .pending
            .iter()
            .map(|(t, r)| {
                json!({"visible_in_ms": t.checked_add(inner.delay).map(|due| due.saturating_duration_since(Instant::now()).as_millis() as u64),
                       "routes": summary_json(r)})
            })
            .collect();
        json!({"published": summary_json(&published), "pending": pending,
               "propagation_ms": inner.delay.as_millis() as u64})
    }
}

fn summary(r: &Routes) -> Vec<(String, Vec<String>)> {
    r.entries
        .iter()
        .map(|e| {
            (
                format!("{}{}", e.host, e.path),
                e.backends
                    .iter()
                    .map(|b| format!("{}:{}", b.process_guid, b.index))
                    .collect(),
            )
        })
        .collect()
}

fn summary_json(r: &Routes) -> Value {
    json!(
        summary(r)
            .into_iter()
            .map(|(url, b)| json!({"url": url, "backends": b}))
            .collect::<Vec<_>>()
    )
}

/// Serves the router until the simulator stops.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let cancel = shared.cancel.clone();
    let app = Router::new().fallback(proxy).with_state(shared);
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await });
    if let Err(e) = server.await {
        tracing::warn!("simulator router ended: {e}");
    }
}

fn router_error(status: StatusCode, kind: &str, body: String) -> Response {
    let mut resp = (status, body).into_response();
    if let Ok(v) = HeaderValue::from_str(kind) {
        resp.headers_mut().insert("x-cf-routererror", v);
    }
    resp
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// `X-CF-Process-Instance`: `PROCESS_GUID` or `PROCESS_GUID:INDEX`; `None` when malformed.
fn parse_process_instance(h: &HeaderValue) -> Option<(&str, Option<u32>)> {
    let text = h.to_str().ok().map(str::trim).filter(|t| !t.is_empty())?;
    match text.split_once(':') {
        Some((g, i)) => Some((g, Some(i.parse::<u32>().ok()?))),
        None => Some((text, None)),
    }
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            to.append(k.clone(), v.clone());
        }
    }
}

async fn proxy(AxState(shared): AxState<Arc<Shared>>, req: Request) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_lowercase();
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h.to_string(),
        _ => host,
    };
    let path = req.uri().path().to_string();
    let table = shared.router.published();
    let Some(entry) = table.lookup(&host, &path) else {
        return router_error(
            StatusCode::NOT_FOUND,
            "unknown_route",
            format!("404 Not Found: Requested route ('{host}') does not exist.\n"),
        );
    };
    let mut candidates: Vec<Backend> = entry.backends.clone();
    if let Some(h) = req.headers().get("x-cf-process-instance") {
        let Some((guid, index)) = parse_process_instance(h) else {
            return router_error(
                StatusCode::BAD_REQUEST,
                "invalid_cf_process_instance_header",
                "400 Bad Request: Invalid X-CF-Process-Instance Header\n".to_string(),
            );
        };
        candidates.retain(|b| b.process_guid == guid && index.is_none_or(|i| b.index == i));
        if candidates.is_empty() {
            return router_error(
                StatusCode::NOT_FOUND,
                "unknown_route",
                format!(
                    "404 Not Found: Requested instance ('{}') with process guid ('{guid}') does not exist for route ('{host}')\n",
                    index.map(|i| i.to_string()).unwrap_or_default()
                ),
            );
        }
    }
    let start = shared
        .router
        .next_start(&format!("{}{}", entry.host, entry.path));
    let n = candidates.len();
    candidates.rotate_left(start % n);
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return router_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "400 Bad Request: body could not be read\n".to_string(),
        );
    };
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    );
    let request_id = new_guid();
    for backend in candidates.iter().take(3) {
        match forward(&shared, &parts, body.clone(), backend, &host, &request_id).await {
            Ok(resp) => return resp,
            Err(e) if e.is_connect() || idempotent => {
                tracing::debug!(
                    "router: backend {}:{} failed: {e}",
                    backend.process_guid,
                    backend.index
                );
            }
            Err(_) => break,
        }
    }
    router_error(
        StatusCode::BAD_GATEWAY,
        "endpoint_failure",
        "502 Bad Gateway: Registered endpoint failed to handle the request.\n".to_string(),
    )
}

async fn forward(
    shared: &Shared,
    parts: &axum::http::request::Parts,
    body: Bytes,
    backend: &Backend,
    host: &str,
    request_id: &str,
) -> Result<Response, reqwest::Error> {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("http://127.0.0.1:{}{pq}", backend.port);
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    headers.remove(header::CONTENT_LENGTH);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-vcap-request-id", v);
    }
    // One connection per request (the router keeps no pool, so a stopped instance never
    // leaves a stale connection behind); the instance closes it after answering.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.insert("x-forwarded-for", HeaderValue::from_static("127.0.0.1"));
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, v);
    }
    let resp = shared
        .http
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await?;
    let status = resp.status();
    let mut out_headers = HeaderMap::new();
    copy_headers(resp.headers(), &mut out_headers);
    if let Ok(v) = HeaderValue::from_str(&format!("{}:{}", backend.process_guid, backend.index)) {
        out_headers.insert(HeaderName::from_static("x-sim-backend"), v);
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, path: &str) -> Entry {
        Entry {
            host: host.into(),
            path: path.into(),
            backends: vec![Backend {
                process_guid: format!("{host}{path}"),
                index: 0,
                port: 1,
            }],
        }
    }

    #[test]
    fn lookup_prefers_exact_host_and_longest_path() {
        let r = Routes {
            entries: vec![
                entry("a.example.com", ""),
                entry("a.example.com", "/api"),
                entry("*.example.com", ""),
            ],
        };
        assert_eq!(r.lookup("a.example.com", "/api/x").unwrap().path, "/api");
        assert_eq!(r.lookup("a.example.com", "/apix").unwrap().path, "");
        assert_eq!(
            r.lookup("b.example.com", "/").unwrap().host,
            "*.example.com"
        );
        assert!(r.lookup("b.other.com", "/").is_none());
    }

    #[test]
    fn changes_become_visible_only_after_the_delay() {
        let t = Table::new(Duration::from_secs(3600));
        let mut inner = t.lock();
        inner.pending.push_back((
            Instant::now(),
            Arc::new(Routes {
                entries: vec![entry("a.example.com", "")],
            }),
        ));
        drop(inner);
        assert!(t.published().entries.is_empty());
        let t = Table::new(Duration::ZERO);
        t.lock().pending.push_back((
            Instant::now(),
            Arc::new(Routes {
                entries: vec![entry("a.example.com", "")],
            }),
        ));
        assert_eq!(t.published().entries.len(), 1);
    }
}
