//! The Cloud Controller API server: the axum router, the middleware every call goes through
//! (request id, call log, injected failures, authentication, warnings), CC error bodies,
//! query parsing (CC's list filters, label selectors) and pagination with absolute links.
//!
//! Nothing of a request body is read before the request is authenticated (public paths
//! excepted), and every body is bounded: package uploads by `SimConfig::max_upload_bytes`,
//! other bodies by [`MAX_BODY_BYTES`], public ones by [`MAX_PUBLIC_BODY_BYTES`] (413 beyond).
//! The call log masks bodies as a `CF_TRACE` dump does.
//!
//! Depends on: `state`, `uaa`, `fault_switches`, `cf::trace` (body masking). Must not: hold
//! the state lock across an `.await`.

mod apps;
mod bits;
mod deployments;
mod manifest;
mod processes;
mod quotas;
mod root;
mod routes;
mod services;
mod tasks;
mod telemetry;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request, State as AxState};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::Shared;
use super::state::{CallRecord, State};
use super::uaa::{self, TokenError};
use super::util::new_guid;

/// A CC error response.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub errors: Vec<(u32, String, String)>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, title: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            errors: vec![(code, title.to_string(), detail.into())],
            retry_after: None,
        }
    }

    /// 404 CF-ResourceNotFound `"<what> not found"`.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            10010,
            "CF-ResourceNotFound",
            format!("{what} not found"),
        )
    }

    /// 422 CF-UnprocessableEntity.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            10008,
            "CF-UnprocessableEntity",
            detail,
        )
    }

    /// 422 with one entry per message.
    pub fn unprocessable_many(details: Vec<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors: details
                .into_iter()
                .map(|d| (10008, "CF-UnprocessableEntity".to_string(), d))
                .collect(),
            retry_after: None,
        }
    }

    /// 422 CF-UniquenessError.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            10016,
            "CF-UniquenessError",
            detail,
        )
    }

    /// 400 CF-BadQueryParameter.
    pub fn bad_query(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            10005,
            "CF-BadQueryParameter",
            format!("The query parameter is invalid: {}", detail.into()),
        )
    }

    /// 404 CF-NotFound `Unknown request` (no such endpoint or action).
    pub fn unknown_request() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            10000,
            "CF-NotFound",
            "Unknown request",
        )
    }

    /// 400 CF-MessageParseError (body is not valid JSON).
    pub fn parse_error() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            1001,
            "CF-MessageParseError",
            "Request invalid due to parse error: invalid request body",
        )
    }

    /// The error CC would send for an injected failure with this status.
    pub fn for_status(status: u16, retry_after: Option<u64>) -> Self {
        let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (code, title, detail) = match status {
            400 => (10004, "CF-InvalidRequest", "The request is invalid"),
            401 => (1000, "CF-InvalidAuthToken", "Invalid Auth Token"),
            403 => (
                10003,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            ),
            404 => (10000, "CF-NotFound", "Unknown request"),
            409 => (
                10001,
                "CF-ConcurrencyError",
                "The resource was changed concurrently",
            ),
            422 => (10008, "CF-UnprocessableEntity", "injected failure"),
            429 => (10013, "CF-RateLimitExceeded", "Rate Limit Exceeded"),
            503 => (
                10015,
                "CF-ServiceUnavailable",
                "Service unavailable (injected)",
            ),
            _ => (
                10001,
                "UnknownError",
                "An unknown error occurred (injected failure).",
            ),
        };
        let mut e = Self::new(s, code, title, detail);
        e.retry_after = retry_after;
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|(c, t, d)| json!({"code": c, "title": t, "detail": d}))
            .collect();
        let mut resp = (self.status, axum::Json(json!({ "errors": errors }))).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Result of a handler.
pub(crate) type ApiResult = Result<Response, ApiError>;

/// 200 with a JSON body.
pub(crate) fn ok(v: Value) -> ApiResult {
    Ok((StatusCode::OK, axum::Json(v)).into_response())
}

/// 201 with a JSON body.
pub(crate) fn created(v: Value) -> ApiResult {
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

/// 202 with `Location: <job url>` and no body.
pub(crate) fn accepted_job(base: &str, job_guid: &str) -> ApiResult {
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/v3/jobs/{job_guid}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The state every handler takes: the simulator the request reached.
pub(crate) type SharedState = AxState<Arc<Shared>>;

/// A request body read as CC reads a JSON body (see [`parse_json`]): a handler that takes it
/// answers CC's 400 `CF-MessageParseError` before it runs when the body is not a JSON object.
pub(crate) struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        parse_json(&body)
            .map(JsonBody)
            .map_err(IntoResponse::into_response)
    }
}

/// Parses a JSON request body; an empty body is `{}`.
pub(crate) fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| ApiError::parse_error())?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::parse_error())
    }
}

/// The body's `name`, which must be a non-empty string (CC's `Name can't be blank` otherwise).
pub(crate) fn required_name(v: &Value) -> Result<&str, ApiError> {
    v["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::unprocessable("Name can't be blank"))
}

/// The space a new resource goes in must exist (CC's 422 `Invalid space` otherwise).
pub(crate) fn check_space(st: &State, guid: &str) -> Result<(), ApiError> {
    if st.space(guid).is_none() {
        return Err(ApiError::unprocessable(
            "Invalid space. Ensure that the space exists and you have access to it.",
        ));
    }
    Ok(())
}

/// `{"href": url}`.
pub(crate) fn href(url: String) -> Value {
    json!({ "href": url })
}

/// The `metadata` object of a resource.
pub(crate) fn metadata(m: &super::state::Meta) -> Value {
    json!({"labels": m.labels, "annotations": m.annotations})
}

/// Merges a request's `metadata` (`null` values delete keys).
pub(crate) fn merge_metadata(m: &mut super::state::Meta, body: &Value) {
    for (key, target) in [
        ("labels", &mut m.labels),
        ("annotations", &mut m.annotations),
    ] {
        if let Some(obj) = body["metadata"][key].as_object() {
            for (k, v) in obj {
                match v {
                    Value::Null => {
                        target.remove(k);
                    }
                    Value::String(s) => {
                        target.insert(k.clone(), s.clone());
                    }
                    other => {
                        target.insert(k.clone(), other.to_string());
                    }
                }
            }
        }
    }
}

/// A parsed query string.
#[derive(Debug, Default, Clone)]
pub(crate) struct Q(Vec<(String, String)>);

/// A handler takes the request's query as a `Q` (never refused).
impl<S: Send + Sync> FromRequestParts<S> for Q {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Q::parse(parts.uri.query()))
    }
}

impl Q {
    pub fn parse(raw: Option<&str>) -> Q {
        Q(raw
            .map(|r| {
                url::form_urlencoded::parse(r.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A comma list filter: split on `,`, then percent-decode each element (the cf CLI
    /// pre-escapes commas inside names as `%2C`). An empty value is the list `[""]`.
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).map(|v| {
            v.split(',')
                .map(|p| {
                    percent_encoding::percent_decode_str(p)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .collect()
        })
    }

    /// Does the (optional) list filter `key` contain `value`?
    pub fn accepts(&self, key: &str, value: &str) -> bool {
        self.list(key).is_none_or(|l| l.iter().any(|x| x == value))
    }

    /// Case-insensitive variant of [`Q::accepts`].
    pub fn accepts_ci(&self, key: &str, value: &str) -> bool {
        self.list(key)
            .is_none_or(|l| l.iter().any(|x| x.eq_ignore_ascii_case(value)))
    }
}

/// Applies `label_selector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`,
/// comma-separated requirements that must all hold).
pub(crate) fn selector_matches(
    selector: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<bool, ApiError> {
    let Some(sel) = selector else { return Ok(true) };
    let mut reqs = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in sel.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                reqs.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    reqs.push(cur);
    for req in reqs {
        let r = req.trim();
        if r.is_empty() {
            return Err(ApiError::bad_query("Invalid label_selector value"));
        }
        let ok = if let Some(k) = r.strip_prefix('!') {
            !labels.contains_key(k.trim())
        } else if let Some((k, v)) = r.split_once("!=") {
            labels.get(k.trim()).map(String::as_str) != Some(v.trim())
        } else if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
            labels.get(k.trim()).map(String::as_str) == Some(v.trim())
        } else if let Some((k, set)) = r.split_once(" notin ") {
            let set = parse_set(set)?;
            labels.get(k.trim()).is_none_or(|v| !set.contains(v))
        } else if let Some((k, set)) = r.split_once(" in ") {
            let set = parse_set(set)?;
            labels.get(k.trim()).is_some_and(|v| set.contains(v))
        } else {
            labels.contains_key(r)
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn parse_set(s: &str) -> Result<Vec<String>, ApiError> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_query("Invalid label_selector value"))?;
    Ok(inner.split(',').map(|x| x.trim().to_string()).collect())
}

/// Sorts by `order_by` (`name`, `created_at`, `updated_at`, `state`, `-` = descending). The
/// default order is creation order (the order `items` come in).
pub(crate) fn order(items: &mut [Value], q: &Q) -> Result<(), ApiError> {
    let Some(ob) = q.get("order_by") else {
        return Ok(());
    };
    let (desc, field) = match ob.strip_prefix('-') {
        Some(f) => (true, f),
        None => (false, ob.strip_prefix('+').unwrap_or(ob)),
    };
    if !matches!(
        field,
        "name" | "created_at" | "updated_at" | "state" | "position" | "host"
    ) {
        return Err(ApiError::bad_query(format!(
            "Order by can only be: 'created_at', 'updated_at', 'name', 'state', got '{field}'"
        )));
    }
    // Items come in creation order and timestamps have second precision: ties keep creation
    // order, newest first when descending (so `-created_at&per_page=1` is the newest).
    if desc {
        items.reverse();
    }
    items.sort_by(|a, b| {
        let x = a[field].as_str().unwrap_or("");
        let y = b[field].as_str().unwrap_or("");
        if desc { y.cmp(x) } else { x.cmp(y) }
    });
    Ok(())
}

/// Builds a CC list response for `path` (`/v3/apps`), honouring `page` and `per_page`, with
/// absolute `first`/`last`/`next`/`previous` links that keep the other query parameters.
pub(crate) fn paginate(base: &str, path: &str, q: &Q, items: Vec<Value>) -> ApiResult {
    let per_page: usize = match q.get("per_page") {
        None => 50,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=5000).contains(n))
            .ok_or_else(|| ApiError::bad_query("Per page must be between 1 and 5000"))?,
    };
    let page: usize = match q.get("page") {
        None => 1,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::bad_query("Page must be greater than 0"))?,
    };
    let total = items.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let link = |p: usize| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &q.0 {
            if k != "page" && k != "per_page" {
                ser.append_pair(k, v);
            }
        }
        ser.append_pair("page", &p.to_string());
        ser.append_pair("per_page", &per_page.to_string());
        href(format!("{base}{path}?{}", ser.finish()))
    };
    let resources: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    ok(json!({
        "pagination": {
            "total_results": total, "total_pages": total_pages,
            "first": link(1), "last": link(total_pages),
            "next": if page < total_pages { link(page + 1) } else { Value::Null },
            "previous": if page > 1 { link(page - 1) } else { Value::Null },
        },
        "resources": resources,
    }))
}

fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/v3" | "/v3/" | "/v3/info" | "/login" | "/oauth/token" | "/api/v1/info"
    ) || path.starts_with("/_sim")
}

/// How many API calls the call log keeps.
const MAX_CALLS: usize = 20_000;

/// Largest body of a request that is not a package upload, once authenticated (a manifest, a
/// JSON document).
const MAX_BODY_BYTES: usize = 16 << 20;

/// Largest body of an unauthenticated request to a public path (the token endpoint's form).
const MAX_PUBLIC_BODY_BYTES: usize = 64 << 10;

/// Most bytes of a body kept in the call log.
const MAX_LOGGED_BODY: usize = 4096;

/// A request body as the call log keeps it: masked by the rule of a `CF_TRACE` dump (JSON with
/// secret-looking keys and env values hidden; any other body, such as an interpolated
/// `apply_manifest` YAML, hidden behind its media type), then cut at [`MAX_LOGGED_BODY`]. A
/// body without a `Content-Type` that parses as JSON is read as JSON.
fn logged_body(path: &str, content_type: Option<&str>, bytes: &[u8]) -> String {
    if path == "/oauth/token" {
        return "<credentials>".to_string();
    }
    let json = content_type.is_none() && serde_json::from_slice::<Value>(bytes).is_ok();
    let text = crate::cf::trace::render_body(
        if json {
            Some("application/json")
        } else {
            content_type
        },
        bytes,
    );
    if text.len() > MAX_LOGGED_BODY {
        let mut cut = MAX_LOGGED_BODY;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}... <{} bytes>", &text[..cut], text.len())
    } else {
        text
    }
}

/// The 401 for a request that failed authentication.
fn unauthenticated(e: &TokenError) -> Response {
    match e {
        TokenError::Missing => ApiError::new(
            StatusCode::UNAUTHORIZED,
            10002,
            "CF-NotAuthenticated",
            "Authentication error",
        ),
        TokenError::Invalid | TokenError::Expired => ApiError::new(
            StatusCode::UNAUTHORIZED,
            1000,
            "CF-InvalidAuthToken",
            "Invalid Auth Token",
        ),
    }
    .into_response()
}

/// Reads a request body of at most `limit` bytes (refused at once when `Content-Length` says
/// more); the error is the response to send.
async fn read_body(body: Body, declared: Option<u64>, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            10004,
            "CF-InvalidRequest",
            format!("request body is larger than {limit} bytes"),
        )
        .into_response()
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = e
            .into_inner()
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some();
        if over {
            too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                10004,
                "CF-InvalidRequest",
                "request body could not be read",
            )
            .into_response()
        }
    })
}

/// Every API request passes here: the admin API checks the admin's token; the rest meet the
/// outage, rate-limit and failing-call faults, authentication and the body limits, get their
/// `X-Vcap-Request-Id` and `X-Cf-Warnings`, and go into the call log.
async fn middleware(AxState(s): SharedState, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_sim") {
        return admin_only(&s, req, next).await;
    }
    let mut call = CallRecord {
        method: req.method().as_str().to_string(),
        path,
        query: req.uri().query().unwrap_or("").to_string(),
        status: 0,
        body: String::new(),
        request_id: new_guid(),
    };
    // Outage and rate-limit faults meet the request before Cloud Controller (or UAA) would:
    // nothing is read, nothing is done.
    let unreachable = s.lock().faults.unreachable();
    if let Some(u) = unreachable {
        let (status, resp) = unreachable_response(u);
        call.status = status;
        s.lock().log_call(call);
        return resp;
    }
    let (injected, warnings) = {
        let mut st = s.lock();
        (
            st.faults.check_call(&call.method, &call.path),
            st.faults.warnings.clone(),
        )
    };
    let (mut resp, body) = answer(&s, req, next, injected).await;
    stamp(&mut resp, &call.request_id, &warnings);
    call.status = resp.status().as_u16();
    call.body = body;
    s.lock().log_call(call);
    resp
}

/// A header's value as text, if it is text.
fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The admin API (`/_sim/...`) answers only a request with the admin's access token from the
/// simulator's UAA.
async fn admin_only(s: &Shared, req: Request, next: Next) -> Response {
    let auth = header_text(req.headers(), header::AUTHORIZATION).unwrap_or("");
    if uaa::verify(s, auth, false).is_err() {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "the admin API needs 'Authorization: bearer <admin access token>'"})),
        )
            .into_response();
    }
    next.run(req).await
}

/// Authenticates a request (unless it is public or an injected failure answers it), reads its
/// body within the limit for its kind, and has the handler (or the injected failure) answer;
/// with what the call log shows of the body.
async fn answer(
    s: &Shared,
    req: Request,
    next: Next,
    injected: Option<(u16, Option<u64>)>,
) -> (Response, String) {
    let path = req.uri().path().to_string();
    let public = is_public(&path);
    if injected.is_none() && !public {
        let auth = header_text(req.headers(), header::AUTHORIZATION).unwrap_or("");
        if let Err(e) = uaa::verify(s, auth, false) {
            // Nothing of an unauthenticated request's body is read.
            return (
                unauthenticated(&e),
                "<not read: not authenticated>".to_string(),
            );
        }
    }
    let content_type = header_text(req.headers(), header::CONTENT_TYPE).map(str::to_string);
    let declared =
        header_text(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let limit = if public {
        MAX_PUBLIC_BODY_BYTES
    } else if content_type
        .as_deref()
        .is_some_and(|v| v.starts_with("multipart/"))
    {
        s.config.max_upload_bytes
    } else {
        MAX_BODY_BYTES
    };
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body, declared, limit).await {
        Ok(bytes) => bytes,
        Err(resp) => return (resp, "<not read: too large>".to_string()),
    };
    let logged = logged_body(&path, content_type.as_deref(), &bytes);
    let resp = match injected {
        Some((status, retry_after)) => ApiError::for_status(status, retry_after).into_response(),
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    (resp, logged)
}

/// Adds `X-Vcap-Request-Id` and the injected `X-Cf-Warnings` (percent-encoded, comma-joined).
fn stamp(resp: &mut Response, request_id: &str, warnings: &[String]) {
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-vcap-request-id", v);
    }
    if !warnings.is_empty() {
        let joined: Vec<String> = warnings
            .iter()
            .map(|w| {
                percent_encoding::utf8_percent_encode(w, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&joined.join(",")) {
            headers.insert("x-cf-warnings", v);
        }
    }
}

/// What gorouter or the rate limiter answers under an outage or rate-limit fault, and the
/// status the call log shows (0 for a reset connection).
fn unreachable_response(u: crate::sim::fault_switches::Unreachable) -> (u16, Response) {
    use crate::sim::fault_switches::Unreachable;
    match u {
        Unreachable::NoEndpoints => {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: Requested route ('api') has no available endpoints.\n",
            )
                .into_response();
            r.headers_mut()
                .insert("x-cf-routererror", HeaderValue::from_static("no_endpoints"));
            (503, r)
        }
        Unreachable::Reset => {
            // The head goes out, then the connection breaks: the client sees the request
            // fail after it was sent, as with a reset.
            let body = axum::body::Body::from_stream(futures::stream::once(async {
                Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset (simulated outage)",
                ))
            }));
            (0, Response::new(body))
        }
        Unreachable::RateLimited(after) => {
            (429, ApiError::for_status(429, Some(after)).into_response())
        }
    }
}

impl State {
    /// Adds a call to the call log, forgetting the oldest tenth when it is full (bounded
    /// memory for long-running simulators).
    fn log_call(&mut self, call: CallRecord) {
        if self.calls.len() >= MAX_CALLS {
            self.calls.drain(..MAX_CALLS / 10);
        }
        self.calls.push(call);
    }
}

async fn unknown() -> ApiError {
    ApiError::unknown_request()
}

/// The whole API router.
pub(crate) fn routes(shared: &Arc<Shared>) -> Router {
    let mut r = Router::new()
        .route("/login", get(uaa::login_info))
        .route("/oauth/token", post(uaa::token))
        .merge(root::routes())
        .merge(apps::routes())
        .merge(manifest::routes())
        .merge(bits::routes())
        .merge(processes::routes())
        .merge(quotas::routes())
        .merge(routes::routes())
        .merge(services::routes())
        .merge(telemetry::routes())
        .merge(deployments::routes())
        .merge(tasks::routes());
    if shared.config.admin_api {
        r = r.merge(super::faults::admin_routes());
    }
    r.fallback(unknown)
        // The middleware bounds every body (after authentication) before a handler sees it.
        .layer(axum::extract::DefaultBodyLimit::max(
            shared.config.max_upload_bytes,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), middleware))
        .with_state(shared.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("zdt", "candidate"), ("env", "prod")]);
        assert!(selector_matches(Some("zdt=candidate"), &l).unwrap());
        assert!(selector_matches(Some("zdt==candidate,env"), &l).unwrap());
        assert!(!selector_matches(Some("zdt!=candidate"), &l).unwrap());
        assert!(selector_matches(Some("!missing"), &l).unwrap());
        assert!(selector_matches(Some("env in (dev,prod)"), &l).unwrap());
        assert!(!selector_matches(Some("env notin (dev,prod)"), &l).unwrap());
        assert!(selector_matches(Some(""), &l).is_err());
    }

    #[test]
    fn list_filters_decode_each_element() {
        let q = Q::parse(Some("names=a%252Cb,c&hosts="));
        assert_eq!(q.list("names").unwrap(), vec!["a,b", "c"]);
        assert_eq!(q.list("hosts").unwrap(), vec![""]);
        assert!(q.accepts("guids", "x"));
    }

    #[tokio::test]
    async fn pagination_links_are_absolute_and_keep_filters() {
        let items: Vec<Value> = (0..5).map(|i| json!({"i": i})).collect();
        let q = Q::parse(Some("names=x&per_page=2&page=2"));
        let resp = paginate("http://h", "/v3/apps", &q, items).unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["resources"], json!([{"i": 2}, {"i": 3}]));
        assert_eq!(v["pagination"]["total_pages"], 3);
        assert_eq!(
            v["pagination"]["next"]["href"],
            "http://h/v3/apps?names=x&page=3&per_page=2"
        );
        assert_eq!(
            v["pagination"]["previous"]["href"],
            "http://h/v3/apps?names=x&page=1&per_page=2"
        );
        assert!(
            paginate(
                "http://h",
                "/v3/apps",
                &Q::parse(Some("per_page=5001")),
                vec![]
            )
            .is_err()
        );
    }

    #[test]
    fn logged_bodies_hide_secrets() {
        let body = json!({"type": "docker", "data": {"image": "i", "password": "hunter2"},
                          "credentials": {"uri": "x"}, "list": [{"client_secret": "s3"}],
                          "var": {"DB_URL": "postgres://u:pw-4@h"}})
        .to_string();
        for ct in [Some("application/json"), None] {
            let logged = logged_body("/v3/apps", ct, body.as_bytes());
            for planted in ["hunter2", "s3", "pw-4", "\"x\""] {
                assert!(!logged.contains(planted), "{planted} in {logged}");
            }
            let v: Value = serde_json::from_str(&logged).unwrap();
            assert_eq!(v["data"]["image"], "i");
            assert!(v["var"]["DB_URL"].is_string());
        }
        // An interpolated apply_manifest body: hidden whole, as in a CF_TRACE dump.
        let yaml = b"applications:\n- name: web\n  env:\n    DB_PASSWORD: hunter2\n";
        let logged = logged_body(
            "/v3/spaces/s/actions/apply_manifest",
            Some("application/x-yaml"),
            yaml,
        );
        assert_eq!(logged, "[application/x-yaml Content Hidden]");
        assert_eq!(
            logged_body("/oauth/token", None, b"password=hunter2"),
            "<credentials>"
        );
    }

    #[test]
    fn descending_order_puts_the_newest_of_a_second_first() {
        let mut items = vec![
            json!({"n": 1, "created_at": "2024-01-01T00:00:00Z"}),
            json!({"n": 2, "created_at": "2024-01-01T00:00:00Z"}),
            json!({"n": 3, "created_at": "2023-01-01T00:00:00Z"}),
        ];
        order(&mut items, &Q::parse(Some("order_by=-created_at"))).unwrap();
        let ns: Vec<i64> = items.iter().map(|v| v["n"].as_i64().unwrap()).collect();
        assert_eq!(ns, vec![2, 1, 3]);
        assert!(order(&mut items, &Q::parse(Some("order_by=bogus"))).is_err());
    }
}
