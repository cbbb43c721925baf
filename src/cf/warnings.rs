//! `X-Cf-Warnings` parsing and the per-client warning buffer.
//!
//! Cloud Controller sends warnings as one header of comma-separated, URL-encoded messages; jobs
//! carry them in `warnings[].detail`. Both end up in one buffer drained by
//! [`crate::cf::Client::take_warnings`].
//!
//! Depends on: percent-encoding. Must not: print warnings (the ui layer does).

use std::sync::Mutex;

use reqwest::header::HeaderMap;

/// The header name.
pub(crate) const HEADER: &str = "x-cf-warnings";

/// Splits one header value on `,`, URL-decodes (`+` is a space) and trims each part, dropping
/// empty ones. Mirrors the cf CLI's warning reader.
pub(crate) fn parse_header_value(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|part| {
            let spaced = part.replace('+', " ");
            percent_encoding::percent_decode_str(&spaced)
                .decode_utf8_lossy()
                .trim()
                .to_owned()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// All warnings of a response's headers.
pub(crate) fn from_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_header_value)
        .collect()
}

/// A buffer shared by the clones of one client.
#[derive(Debug, Default)]
pub(crate) struct Warnings(Mutex<Vec<String>>);

impl Warnings {
    pub(crate) fn extend(&self, new: impl IntoIterator<Item = String>) {
        // The lock is never held across an await and nothing panics while holding it.
        if let Ok(mut w) = self.0.lock() {
            w.extend(new);
        }
    }

    pub(crate) fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_decodes_and_trims() {
        assert_eq!(
            parse_header_value("first%20warning, second+one%2C+with+comma ,,"),
            vec!["first warning", "second one, with comma"]
        );
    }

    #[test]
    fn empty_header_gives_nothing() {
        assert!(parse_header_value("").is_empty());
    }
}
