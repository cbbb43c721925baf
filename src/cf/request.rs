//! What a request carries: its body ([`Body`]: JSON, YAML or a multipart package upload) and the
//! filter values of its query ([`join_filter`]). The client core sends these; the resource files
//! build them.
//!
//! Depends on: reqwest multipart, tokio fs, [`super::error`]. Must not: send anything.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::error::Error;

/// Upload chunk size.
const CHUNK: usize = 64 * 1024;

/// A request body.
pub(crate) enum Body<'a> {
    Empty,
    Json(Vec<u8>),
    Yaml(&'a str),
    Upload(&'a Upload<'a>),
}

/// A multipart package upload, rebuilt from the file for each attempt (a 401 refresh resends).
pub(crate) struct Upload<'a> {
    pub(crate) resources_json: Vec<u8>,
    pub(crate) zip: Option<&'a Path>,
    pub(crate) progress: Arc<dyn Fn(u64, u64) + Send + Sync>,
}

pub(crate) fn json_body(body: &impl Serialize) -> Result<Body<'static>, Error> {
    serde_json::to_vec(body)
        .map(Body::Json)
        // Serializing our own request types cannot fail in practice (string keys only).
        .map_err(|e| Error::Config(format!("could not encode request body: {e}")))
}

/// Builds the multipart form: `resources` first (always), then `bits` streamed from the file.
pub(crate) async fn upload_form(upload: &Upload<'_>) -> Result<Form, Error> {
    let resources = Part::bytes(upload.resources_json.clone());
    let form = Form::new().part("resources", resources);
    let Some(path) = upload.zip else {
        return Ok(form);
    };
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(io_err)?;
    let total = file.metadata().await.map_err(io_err)?.len();
    let progress = upload.progress.clone();
    let stream = futures::stream::unfold((Some(file), 0u64), move |(file, sent)| {
        let progress = progress.clone();
        async move {
            let mut file = file?;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let sent = sent + n as u64;
                    progress(sent, total);
                    Some((Ok(Bytes::from(buf)), (Some(file), sent)))
                }
                // End the stream after the error: the request fails with it.
                Err(e) => Some((Err::<Bytes, std::io::Error>(e), (None, sent))),
            }
        }
    });
    let bits = Part::stream_with_length(reqwest::Body::wrap_stream(stream), total)
        .file_name("package.zip")
        .mime_str("application/octet-stream")
        .map_err(|e| Error::Config(format!("multipart content type: {e}")))?;
    Ok(form.part("bits", bits))
}

/// Joins filter values with `,` after escaping commas inside a value as `%2C`, as the cf CLI does
/// (the server splits on `,` and URL-decodes each piece).
pub(crate) fn join_filter<S: AsRef<str>>(values: &[S]) -> String {
    values
        .iter()
        .map(|v| v.as_ref().replace(',', "%2C"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_in_filter_values_are_pre_escaped() {
        assert_eq!(join_filter(&["a,b", "c"]), "a%2Cb,c");
    }
}
