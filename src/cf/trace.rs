//! `CF_TRACE`: request/response dumps like the cf CLI's, with secrets redacted.
//!
//! `CF_TRACE=true` writes to stderr, any other non-empty value except `false` is a file path the
//! dump is appended to. The rules, the cf CLI's and some more:
//! - headers `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, and any header whose
//!   name looks secret (see below), show `[PRIVATE DATA HIDDEN]`;
//! - only JSON bodies are shown. Any other body, e.g. the `apply_manifest` YAML that holds
//!   interpolated secrets or an app manifest read back, shows as `[application/x-yaml Content
//!   Hidden]` (its media type), a multipart upload as `[MULTIPART/FORM-DATA CONTENT HIDDEN]`;
//! - in JSON, the value of every key matching `(?i)token|password|secret|credential|key` is
//!   `[PRIVATE DATA HIDDEN]` at any depth; every value directly under `var`,
//!   `environment_variables`, `system_env_json`, `application_env_json`, `staging_env_json` and
//!   `running_env_json` is hidden (names stay, values go: app env and `/v3/apps/:guid/env`);
//!   a `manifest_diff` entry whose `path` is under `env` or looks secret has `value`/`was`
//!   hidden;
//! - a trace file is created with mode 0600, and an existing regular file readable by others is
//!   set to 0600 before anything is written.
//!
//! Depends on: std, regex, serde_json. Must not: print anything when tracing is off.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where trace output goes (cheap to clone; writes are serialized).
#[derive(Clone, Default)]
pub struct Trace {
    sink: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.sink.is_some() {
            "Trace(on)"
        } else {
            "Trace(off)"
        })
    }
}

/// Shown instead of secret values, as the cf CLI does.
pub const REDACTED: &str = "[PRIVATE DATA HIDDEN]";

/// Shown instead of a multipart body, as the cf CLI does.
pub(crate) const MULTIPART_HIDDEN: &str = "[MULTIPART/FORM-DATA CONTENT HIDDEN]";

/// JSON keys and header names whose values are secret.
static SECRET_NAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    // A fixed, valid pattern: building it cannot fail.
    regex::Regex::new("(?i)token|password|secret|credential|key").expect("valid regex")
});

/// JSON objects whose every value is an environment value (names shown, values hidden).
const ENV_OBJECTS: &[&str] = &[
    "var",
    "environment_variables",
    "system_env_json",
    "application_env_json",
    "staging_env_json",
    "running_env_json",
];

/// Headers always hidden, besides those whose names match [`SECRET_NAME`].
const PRIVATE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Whether a header's value must not be shown.
pub(crate) fn is_private_header(name: &str) -> bool {
    PRIVATE_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) || SECRET_NAME.is_match(name)
}

impl Trace {
    /// No tracing.
    pub fn off() -> Self {
        Self { sink: None }
    }

    /// Trace to stderr (`CF_TRACE=true`).
    pub fn stderr() -> Self {
        Self::to_writer(std::io::stderr())
    }

    /// Trace to any writer (tests use an in-memory buffer).
    pub fn to_writer(w: impl Write + Send + 'static) -> Self {
        Self {
            sink: Some(Arc::new(Mutex::new(Box::new(w)))),
        }
    }

    /// Append to a file.
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    /// A new file is created with mode 0600; an existing regular file that others may read is
    /// set to 0600 first (devices such as `/dev/stderr` are left alone).
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let f = opts.open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = f.metadata()?;
            if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                f.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!(
                                "could not make the trace file {} private (mode 0600): {e}",
                                path.display()
                            ),
                        )
                    })?;
            }
        }
        Ok(Self::to_writer(f))
    }

    /// From a `CF_TRACE` value: unset, empty or `false` → off; `true` → stderr; else a file path.
    ///
    /// # Errors
    /// When the named file cannot be opened.
    pub fn from_value(value: Option<&str>) -> std::io::Result<Self> {
        match value.map(str::trim) {
            None | Some("") => Ok(Self::off()),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Self::off()),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Self::stderr()),
            Some(path) => Self::to_file(Path::new(path)),
        }
    }

    /// From the `CF_TRACE` environment variable (see [`Trace::from_value`]).
    ///
    /// # Errors
    /// When the named file cannot be opened.
    pub fn from_env() -> std::io::Result<Self> {
        Self::from_value(std::env::var("CF_TRACE").ok().as_deref())
    }

    /// Whether tracing is on.
    pub fn is_on(&self) -> bool {
        self.sink.is_some()
    }

    pub(crate) fn write(&self, text: &str) {
        if let Some(sink) = &self.sink {
            // A poisoned lock only means another writer panicked mid-dump; tracing is best
            // effort, so the dump is skipped rather than propagating the panic.
            if let Ok(mut w) = sink.lock() {
                // Trace output is diagnostics: a failing sink must not fail the API call.
                let _ = w.write_all(text.as_bytes());
                let _ = w.flush();
            }
        }
    }
}

/// `[2026-01-02T03:04:05Z]` for the current time, as the cf CLI stamps its dumps.
pub(crate) fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("[{}]", rfc3339(i64::try_from(secs).unwrap_or(i64::MAX)))
}

/// `2026-01-02T03:04:05Z` for seconds since the Unix epoch (UTC, proleptic Gregorian).
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Seconds since the Unix epoch of `2026-01-02T03:04:05Z` (UTC, second precision, the shape
/// [`rfc3339`] writes; fractions of a second are ignored), `None` for any other text.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |from: usize, to: usize| -> Option<i64> {
        let part = text.get(from..to)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b.last() != Some(&b'Z') {
        return None;
    }
    if b.len() > 20 && (b[19] != b'.' || !b[20..b.len() - 1].iter().all(u8::is_ascii_digit)) {
        return None;
    }
    let (y, m, d) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let (hh, mm, ss) = (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days-from-civil (Howard Hinnant's algorithm), the inverse of the one in `rfc3339`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// A body as it may appear in a trace, given its `Content-Type`: JSON with secrets masked;
/// anything else hidden behind its media type.
pub(crate) fn render_body(content_type: Option<&str>, body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or("application/octet-stream");
    let lower = media.to_ascii_lowercase();
    if lower.starts_with("multipart/") {
        return MULTIPART_HIDDEN.to_owned();
    }
    if lower.contains("json")
        && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body)
    {
        mask(&mut v);
        if let Ok(text) = serde_json::to_string_pretty(&v) {
            return text;
        }
    }
    format!("[{media} Content Hidden]")
}

fn hide(v: &mut serde_json::Value) {
    if !v.is_null() {
        *v = serde_json::Value::String(REDACTED.to_owned());
    }
}

/// Hides every value of an env object (or the value itself when it is not an object).
fn hide_children(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => map.values_mut().for_each(hide),
        other => hide(other),
    }
}

/// A manifest_diff entry (`{"op", "path", "value", "was"}`) about env or a secret-looking field.
fn is_secret_diff_entry(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    map.contains_key("op")
        && map
            .get("path")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|p| p.split('/').any(|seg| seg == "env") || SECRET_NAME.is_match(p))
}

fn mask(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            let secret_diff = is_secret_diff_entry(map);
            for (k, val) in map.iter_mut() {
                if SECRET_NAME.is_match(k) || (secret_diff && (k == "value" || k == "was")) {
                    hide(val);
                } else if ENV_OBJECTS.iter().any(|e| k.eq_ignore_ascii_case(e)) {
                    hide_children(val);
                } else {
                    mask(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    #[test]
    fn secret_json_keys_are_masked_at_any_depth() {
        let out = render_body(
            JSON,
            br#"{"type":"docker","data":{"image":"i","password":"hunter2"},
                "deep":[{"x":{"Client_Secret":"s3cr3t-1","api_key":"k3y-2","refresh_token":"t0k-3",
                "credentials":{"user":"u","pw":"cr3d-4"},"token":null}}]}"#,
        );
        for planted in ["hunter2", "s3cr3t-1", "k3y-2", "t0k-3", "cr3d-4"] {
            assert!(!out.contains(planted), "{planted} in {out}");
        }
        assert!(out.contains(REDACTED));
        assert!(out.contains("\"image\": \"i\""));
        assert!(out.contains("\"token\": null"), "{out}");
    }

    #[test]
    fn env_objects_keep_names_and_hide_values() {
        let out = render_body(
            JSON,
            br#"{"var":{"DB_URL":"postgres://u:envpw-1@h"},
                "environment_variables":{"PLAIN":"envval-2"},
                "system_env_json":{"VCAP_SERVICES":{"db":[{"credentials":{"uri":"vcap-3"}}]}},
                "application_env_json":{"VCAP_APPLICATION":{"name":"appname-4"}},
                "staging_env_json":{"S":"stg-5"},"running_env_json":{"R":"run-6"}}"#,
        );
        for planted in [
            "envpw-1",
            "envval-2",
            "vcap-3",
            "appname-4",
            "stg-5",
            "run-6",
        ] {
            assert!(!out.contains(planted), "{planted} in {out}");
        }
        assert!(
            out.contains("DB_URL") && out.contains("VCAP_SERVICES"),
            "{out}"
        );
    }

    #[test]
    fn manifest_diff_env_values_are_hidden() {
        let out = render_body(
            JSON,
            br#"{"diff":[{"op":"replace","path":"/applications/0/env/DB_PASS","was":"old-1","value":"new-2"},
                {"op":"add","path":"/applications/0/docker/password","value":"dock-3"},
                {"op":"replace","path":"/applications/0/instances","was":1,"value":2}]}"#,
        );
        for planted in ["old-1", "new-2", "dock-3"] {
            assert!(!out.contains(planted), "{planted} in {out}");
        }
        assert!(out.contains("\"was\": 1"), "{out}");
    }

    #[test]
    fn non_json_bodies_are_hidden_by_media_type() {
        assert_eq!(
            render_body(
                Some("application/x-yaml"),
                b"applications:\n- env: {PW: yaml-secret}"
            ),
            "[application/x-yaml Content Hidden]"
        );
        assert_eq!(
            render_body(Some("multipart/form-data; boundary=x"), b"--x"),
            MULTIPART_HIDDEN
        );
        assert_eq!(
            render_body(None, b"raw"),
            "[application/octet-stream Content Hidden]"
        );
        // Labelled JSON but not parseable: hidden, not printed raw.
        assert_eq!(
            render_body(JSON, b"{\"password\": broken"),
            "[application/json Content Hidden]"
        );
        assert_eq!(render_body(JSON, b""), "");
    }

    #[test]
    fn private_headers() {
        for h in [
            "Authorization",
            "set-cookie",
            "Cookie",
            "Proxy-Authorization",
            "X-Auth-Token",
        ] {
            assert!(is_private_header(h), "{h}");
        }
        for h in ["Content-Type", "X-Vcap-Request-Id", "Location"] {
            assert!(!is_private_header(h), "{h}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn trace_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new.log");
        let t = Trace::to_file(&fresh).unwrap();
        t.write("x");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o600);
        let old = dir.path().join("old.log");
        std::fs::write(&old, "before\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        Trace::to_file(&old).unwrap().write("after\n");
        assert_eq!(mode(&old), 0o600);
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "before\nafter\n");
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_parses_what_it_writes() {
        for secs in [0, 951_782_400, -1, 1_767_323_045, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs), "{secs}");
        }
        assert_eq!(
            parse_rfc3339("2026-01-02T03:04:05.123Z"),
            Some(1_767_323_045)
        );
        for bad in [
            "",
            "2026-01-02 03:04:05Z",
            "2026-01-02T03:04:05",
            "2026-13-02T03:04:05Z",
            "2026-01-02T03:04:05+01:00",
            "2026-01-02T03:04:05.Z1",
            "２026-01-02T03:04:05Z",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamp_has_rfc3339_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 22, "{t}");
        assert!(t.starts_with("[20") && t.ends_with("Z]"));
    }

    #[test]
    fn from_value_turns_false_and_empty_off() {
        assert!(!Trace::from_value(None).unwrap().is_on());
        assert!(!Trace::from_value(Some("false")).unwrap().is_on());
        assert!(!Trace::from_value(Some("")).unwrap().is_on());
        assert!(Trace::from_value(Some("true")).unwrap().is_on());
    }
}
