//! Helpers for tests against a wiremock Cloud Controller: the recorded fixtures of
//! tests/fixtures/cc, JSON answers, the requests received and the parts of a multipart upload.

use serde_json::Value;
use wiremock::{MockServer, Request, ResponseTemplate};

/// A fixture from tests/fixtures/cc with BASE_URL pointing at the mock server.
pub(crate) fn fixture(name: &str, server: &MockServer) -> Value {
    let path = format!("{}/tests/fixtures/cc/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text.replace("BASE_URL", &server.uri())).unwrap()
}

/// A 200 answer with `v` as its JSON body.
pub(crate) fn ok_json(v: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(v)
}

/// Every request the mock server received, in order.
pub(crate) async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

/// One part of a multipart body.
#[derive(Debug)]
pub(crate) struct Part {
    /// The `name` of its Content-Disposition.
    pub(crate) name: String,
    /// The `filename` of its Content-Disposition, if any.
    pub(crate) filename: Option<String>,
    pub(crate) content: Vec<u8>,
}

/// The parts of a request's multipart body, in order.
pub(crate) fn multipart_parts(req: &Request) -> Vec<Part> {
    let ct = req
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let boundary = ct
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let delim = format!("--{boundary}");
    let body = &req.body;
    let mut parts = Vec::new();
    let mut pos = 0;
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    while let Some(start) = find(body, delim.as_bytes(), pos) {
        let after = start + delim.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        let head_end = find(body, b"\r\n\r\n", after).unwrap();
        let head = String::from_utf8_lossy(&body[after..head_end]).into_owned();
        let next = find(body, delim.as_bytes(), head_end).unwrap();
        let content = body[head_end + 4..next - 2].to_vec();
        let disp = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap();
        let attr = |key: &str| {
            disp.split(';')
                .map(str::trim)
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .map(|v| v.trim_matches('"').to_owned())
        };
        parts.push(Part {
            name: attr("name").unwrap(),
            filename: attr("filename"),
            content,
        });
        pos = next;
    }
    parts
}
