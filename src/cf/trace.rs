//! `CF_TRACE`: request/response dumps like the cf CLI's, with secrets redacted.
//!
//! `CF_TRACE=true` writes to stderr, any other non-empty value except `false` is a file path the
//! dump is appended to. The `Authorization` header is always shown as `[PRIVATE DATA HIDDEN]`, and
//! JSON keys that carry secrets (`password`, `credentials`, ...) are masked in bodies.
//!
//! Depends on: std only. Must not: print anything when tracing is off.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
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

const SECRET_KEYS: &[&str] = &[
    "password",
    "credentials",
    "token",
    "access_token",
    "refresh_token",
    "client_secret",
];

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
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
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

/// A body as it may appear in a trace: JSON with secret keys masked, other text as is.
pub(crate) fn redact_body(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut v) => {
            mask(&mut v);
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

fn mask(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SECRET_KEYS.iter().any(|s| k.eq_ignore_ascii_case(s)) && !val.is_null() {
                    *val = serde_json::Value::String(REDACTED.to_owned());
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

    #[test]
    fn secret_json_keys_are_masked() {
        let out = redact_body(br#"{"type":"docker","data":{"image":"i","password":"hunter2"}}"#);
        assert!(!out.contains("hunter2"));
        assert!(out.contains(REDACTED));
        assert!(out.contains("\"image\": \"i\""));
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
