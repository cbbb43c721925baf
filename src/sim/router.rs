//! The router: an HTTP reverse proxy on its own port that sends a request to a RUNNING,
//! routable instance of the app(s) mapped to the route its `Host` header (and the longest
//! matching path prefix) names, round robin. Like gorouter it answers 404 with
//! `X-Cf-Routererror: unknown_route` when no route has a backend, 502 with
//! `endpoint_failure` when no backend could take the request (after trying up to three on
//! connection failures), honours `X-Cf-App-Instance: <app-guid>:<index>` (400
//! `invalid_cf_app_instance_header` when malformed, 404 `unknown_route` when the route has no
//! such instance) and `X-Cf-Process-Instance: <process-guid>[:<index>]`, and adds
//! `X-Vcap-Request-Id` / `X-Forwarded-*` headers. Every response carries `X-Sim-Backend:
//! <process-guid>:<index>` (simulator-specific) so tests can see who served.
//!
//! Every request that reaches an app (or fails at it: faults, 502) writes gorouter's `RTR`
//! access-log line and an `http` timer envelope (tags `status_code`, `method`, `uri`,
//! `peer_type: Client`, `request_id`, ...; `instance_id` = the instance index) into the app's
//! log-cache buffer. The `SlowResponses` and `Http5xxShare` faults act here, as if the app
//! answered late or with a 5xx.
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
    pub app_guid: String,
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
                                app_guid: p.app_guid.clone(),
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
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { cancel.cancelled().await });
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

/// `X-CF-App-Instance`: `APP_GUID:INDEX`, both parts required; `None` when malformed.
fn parse_app_instance(h: &HeaderValue) -> Option<(&str, u32)> {
    let text = h.to_str().ok()?.trim();
    let (g, i) = text.split_once(':')?;
    if g.is_empty() || g.contains(':') {
        return None;
    }
    Some((g, i.parse::<u32>().ok()?))
}

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

/// What the access log and the timer envelope need to know about a request.
struct Access {
    host: String,
    method: String,
    path_and_query: String,
    user_agent: String,
    referer: String,
    peer: String,
    forwarded_for: String,
    request_id: String,
    start_ns: i64,
    started: Instant,
}

/// Writes gorouter's `RTR` access-log line and `http` timer envelope for a request served
/// (or failed) by `backend` into its app's log-cache buffer.
fn record_access(shared: &Shared, access: &Access, backend: &Backend, status: u16, bytes: u64) {
    let stop_ns = super::telemetry::now_ns().max(access.start_ns);
    let secs = access.started.elapsed().as_secs_f64();
    let at = super::util::rfc3339_nanos(access.start_ns);
    let dest = format!("127.0.0.1:{}", backend.port);
    let line = format!(
        "{host} - [{at}] \"{method} {pq} HTTP/1.1\" {status} 0 {bytes} \"{referer}\" \"{ua}\" \"{peer}\" \"{dest}\" x_forwarded_for:\"{xff}\" x_forwarded_proto:\"http\" vcap_request_id:\"{rid}\" response_time:{secs:.6} gorouter_time:0.000100 app_id:\"{app}\" app_index:\"{index}\" instance_id:\"{pg}:{index}\" x_cf_routererror:\"-\"",
        host = access.host,
        method = access.method,
        pq = access.path_and_query,
        referer = access.referer,
        ua = access.user_agent,
        peer = access.peer,
        xff = access.forwarded_for,
        rid = access.request_id,
        app = backend.app_guid,
        index = backend.index,
        pg = backend.process_guid,
    );
    let index = backend.index.to_string();
    let mut tags = std::collections::BTreeMap::new();
    for (k, v) in [
        ("source_type", "RTR"),
        ("status_code", &status.to_string()),
        ("method", &access.method),
        (
            "uri",
            &format!("http://{}{}", access.host, access.path_and_query),
        ),
        ("peer_type", "Client"),
        ("request_id", &access.request_id),
        ("user_agent", &access.user_agent),
        ("remote_address", &access.peer),
        ("forwarded", &access.forwarded_for),
        ("app_id", &backend.app_guid),
        (
            "process_instance_id",
            &format!("{}:{}", backend.process_guid, backend.index),
        ),
    ] {
        tags.insert(k.to_string(), v.to_string());
    }
    let mut st = shared.lock();
    st.logs.log(&backend.app_guid, &index, "RTR", &line, "OUT");
    st.logs.push(super::telemetry::Envelope {
        timestamp: stop_ns,
        source_id: backend.app_guid.clone(),
        instance_id: index,
        tags,
        payload: super::telemetry::Payload::Timer {
            name: "http".to_string(),
            start: access.start_ns,
            stop: stop_ns,
        },
    });
}

async fn proxy(
    AxState(shared): AxState<Arc<Shared>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let start_ns = super::telemetry::now_ns();
    let host = request_host(req.headers());
    let candidates = match choose_backends(&shared, req.headers(), &host, req.uri().path()) {
        Ok(c) => c,
        Err(Refusal(status, kind, text)) => return router_error(status, kind, text),
    };
    let access = Access::of(&req, host, peer, start_ns, started);
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
    for backend in candidates.iter().take(3) {
        if let Some(resp) = injected_answer(&shared, &access, backend).await {
            return resp;
        }
        let forwarded = forward(
            &shared,
            &parts,
            body.clone(),
            backend,
            &access.host,
            &access.request_id,
        )
        .await;
        match forwarded {
            Ok(resp) => {
                let bytes = resp
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                record_access(&shared, &access, backend, resp.status().as_u16(), bytes);
                return resp;
            }
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
    if let Some(b) = candidates.first() {
        record_access(&shared, &access, b, 502, 0);
    }
    router_error(
        StatusCode::BAD_GATEWAY,
        "endpoint_failure",
        "502 Bad Gateway: Registered endpoint failed to handle the request.\n".to_string(),
    )
}

/// The request's `Host`, lowercase, without a port.
fn request_host(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_lowercase();
    match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h.to_string(),
        _ => host,
    }
}

/// The backends that may take a request to `host` + `path`, in the order to try them (round
/// robin per route), narrowed by `X-Cf-App-Instance` and `X-Cf-Process-Instance`; `Err` is
/// gorouter's answer when a header is malformed or nothing is left.
fn choose_backends(
    shared: &Shared,
    headers: &HeaderMap,
    host: &str,
    path: &str,
) -> Result<Vec<Backend>, Refusal> {
    // gorouter validates the app-instance header before it looks the route up.
    let app_instance = match headers.get("x-cf-app-instance") {
        None => None,
        Some(h) => match parse_app_instance(h) {
            Some((g, i)) => Some((g.to_string(), i)),
            None => {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "invalid_cf_app_instance_header",
                    "400 Bad Request: Invalid X-CF-App-Instance Header\n".to_string(),
                ));
            }
        },
    };
    let table = shared.router.published();
    let Some(entry) = table.lookup(host, path) else {
        return Err(unknown_route(format!(
            "404 Not Found: Requested route ('{host}') does not exist.\n"
        )));
    };
    let mut candidates: Vec<Backend> = entry.backends.clone();
    if let Some((guid, index)) = &app_instance {
        candidates.retain(|b| &b.app_guid == guid && b.index == *index);
        if candidates.is_empty() {
            return Err(unknown_route(format!(
                "404 Not Found: Requested instance ('{index}') with guid ('{guid}') does not exist for route ('{host}')\n"
            )));
        }
    }
    if let Some(h) = headers.get("x-cf-process-instance") {
        let Some((guid, index)) = parse_process_instance(h) else {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "invalid_cf_process_instance_header",
                "400 Bad Request: Invalid X-CF-Process-Instance Header\n".to_string(),
            ));
        };
        candidates.retain(|b| b.process_guid == guid && index.is_none_or(|i| b.index == i));
        if candidates.is_empty() {
            return Err(unknown_route(format!(
                "404 Not Found: Requested instance ('{}') with process guid ('{guid}') does not exist for route ('{host}')\n",
                index.map(|i| i.to_string()).unwrap_or_default()
            )));
        }
    }
    let start = shared
        .router
        .next_start(&format!("{}{}", entry.host, entry.path));
    let n = candidates.len();
    candidates.rotate_left(start % n);
    Ok(candidates)
}

/// gorouter's answer to a request it cannot route: the status, the `X-Cf-Routererror` kind
/// and the text.
struct Refusal(StatusCode, &'static str, String);

/// gorouter's 404 `unknown_route` with `text`.
fn unknown_route(text: String) -> Refusal {
    Refusal(StatusCode::NOT_FOUND, "unknown_route", text)
}

impl Access {
    /// What the access log will say about `req` (a new request id).
    fn of(
        req: &Request,
        host: String,
        peer: std::net::SocketAddr,
        start_ns: i64,
        started: Instant,
    ) -> Access {
        let header_text = |name: HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .unwrap_or("-")
                .to_string()
        };
        Access {
            host,
            method: req.method().as_str().to_string(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".to_string()),
            user_agent: header_text(header::USER_AGENT),
            referer: header_text(header::REFERER),
            peer: peer.to_string(),
            forwarded_for: header_text(HeaderName::from_static("x-forwarded-for")),
            request_id: new_guid(),
            start_ns,
            started,
        }
    }
}

/// Faults act as the app would: a `SlowResponses` delay is waited out here, and an
/// `Http5xxShare` failure is the answer (recorded like one from the app).
async fn injected_answer(shared: &Shared, access: &Access, backend: &Backend) -> Option<Response> {
    let (delay, failure) = {
        let mut st = shared.lock();
        let name = st
            .app(&backend.app_guid)
            .map(|a| a.name.to_lowercase())
            .unwrap_or_default();
        let delay = st.faults.slow_responses.get(&name).copied();
        (delay, st.faults.http_failure(&name))
    };
    if let Some(d) = delay {
        tokio::select! {
            () = shared.cancel.cancelled() => {}
            () = tokio::time::sleep(d) => {}
        }
    }
    let status = failure?;
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = format!("{code}\n");
    record_access(shared, access, backend, status, text.len() as u64);
    let mut resp = (code, text).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}:{}", backend.process_guid, backend.index)) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-sim-backend"), v);
    }
    Some(resp)
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
                app_guid: "app".into(),
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
