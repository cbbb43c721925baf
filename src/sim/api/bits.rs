//! App bits: resource matching against the simulator's resource cache, packages (bits with a
//! multipart upload, docker), builds and droplets.
//!
//! Depends on: `api` helpers, `state`, `staging`.

use std::io::{Cursor, Read};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use super::{
    ApiError, ApiResult, JsonBody, Q, SharedState, created, href, merge_metadata, metadata, ok,
    order, paginate, selector_matches,
};
use crate::sim::state::{Build, Droplet, FileEntry, Files, Package, State};
use crate::sim::{Shared, staging};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/resource_matches", post(resource_matches))
        .route("/v3/packages", get(list_packages).post(create_package))
        .route("/v3/packages/{guid}", get(get_package))
        .route("/v3/packages/{guid}/upload", post(upload_package))
        .route("/v3/packages/{guid}/droplets", get(package_droplets))
        .route("/v3/builds", get(list_builds).post(create_build))
        .route("/v3/builds/{guid}", get(get_build))
        .route("/v3/droplets", get(list_droplets))
        .route("/v3/droplets/{guid}", get(get_droplet))
}

/// The CC package object.
pub(crate) fn present_package(base: &str, p: &Package) -> Value {
    let g = &p.meta.guid;
    let data = if p.kind == "docker" {
        json!({"image": p.image, "username": p.username,
               "password": p.username.as_ref().map(|_| "***")})
    } else {
        json!({"checksum": {"type": "sha256", "value": null}, "error": null})
    };
    json!({
        "guid": g, "type": p.kind, "data": data, "state": p.state,
        "created_at": p.meta.created_at, "updated_at": p.meta.updated_at,
        "relationships": {"app": {"data": {"guid": p.app_guid}}},
        "metadata": metadata(&p.meta),
        "links": {
            "self": href(format!("{base}/v3/packages/{g}")),
            "upload": {"href": format!("{base}/v3/packages/{g}/upload"), "method": "POST"},
            "download": {"href": format!("{base}/v3/packages/{g}/download"), "method": "GET"},
            "app": href(format!("{base}/v3/apps/{}", p.app_guid)),
        },
    })
}

/// Finds a package or answers CC's 404 (`Package not found`).
fn find_package<'a>(st: &'a State, guid: &str) -> Result<&'a Package, ApiError> {
    st.packages
        .iter()
        .find(|p| p.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Package"))
}

/// [`find_package`], to change the package.
fn find_package_mut<'a>(st: &'a mut State, guid: &str) -> Result<&'a mut Package, ApiError> {
    st.packages
        .iter_mut()
        .find(|p| p.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Package"))
}

/// The CC build object.
pub(crate) fn present_build(base: &str, b: &Build) -> Value {
    let g = &b.meta.guid;
    let data = if b.lifecycle == "docker" {
        json!({})
    } else {
        json!({"buildpacks": b.buildpacks, "stack": b.stack})
    };
    json!({
        "guid": g, "created_at": b.meta.created_at, "updated_at": b.meta.updated_at,
        "created_by": {"guid": "", "name": b.user_name, "email": format!("{}@example.com", b.user_name)},
        "state": b.state, "staging_memory_in_mb": 1024, "staging_disk_in_mb": 1024,
        "staging_log_rate_limit_bytes_per_second": -1, "error": b.error,
        "lifecycle": {"type": b.lifecycle, "data": data},
        "package": {"guid": b.package_guid},
        "droplet": b.droplet_guid.as_ref().map(|d| json!({"guid": d})),
        "relationships": {"app": {"data": {"guid": b.app_guid}}},
        "metadata": metadata(&b.meta),
        "links": {"self": href(format!("{base}/v3/builds/{g}")),
                  "app": href(format!("{base}/v3/apps/{}", b.app_guid)),
                  "droplet": b.droplet_guid.as_ref().map(|d| href(format!("{base}/v3/droplets/{d}")))},
    })
}

/// The CC droplet object.
pub(crate) fn present_droplet(base: &str, d: &Droplet) -> Value {
    let g = &d.meta.guid;
    let (data, buildpacks) = if d.lifecycle == "docker" {
        (json!({}), json!([]))
    } else {
        (
            json!({}),
            json!(
                d.buildpacks
                    .iter()
                    .map(|b| json!({"name": b, "detect_output": null, "version": null, "buildpack_name": b}))
                    .collect::<Vec<_>>()
            ),
        )
    };
    let mut links = json!({
        "self": href(format!("{base}/v3/droplets/{g}")),
        "app": href(format!("{base}/v3/apps/{}", d.app_guid)),
        "assign_current_droplet": {"href": format!("{base}/v3/apps/{}/relationships/current_droplet", d.app_guid), "method": "PATCH"},
        "download": href(format!("{base}/v3/droplets/{g}/download")),
    });
    if let Some(p) = &d.package_guid {
        links["package"] = href(format!("{base}/v3/packages/{p}"));
    }
    json!({
        "guid": g, "state": d.state, "error": null,
        "lifecycle": {"type": d.lifecycle, "data": data},
        "execution_metadata": "", "process_types": d.process_types,
        "checksum": if d.lifecycle == "docker" { Value::Null } else { json!({"type": "sha256", "value": droplet_checksum(d)}) },
        "buildpacks": buildpacks, "stack": if d.lifecycle == "docker" { Value::Null } else { json!(d.stack) },
        "image": d.image,
        "created_at": d.meta.created_at, "updated_at": d.meta.updated_at,
        "relationships": {"app": {"data": {"guid": d.app_guid}}},
        "metadata": metadata(&d.meta),
        "links": links,
    })
}

fn droplet_checksum(d: &Droplet) -> String {
    let mut h = Sha1::new();
    for (path, f) in d.files.iter() {
        h.update(path.as_bytes());
        h.update(&f.data);
    }
    hex::encode(h.finalize())
}

/// A `(path, sha1, size, mode)` resource from a v3 (or v2) resource entry.
fn parse_resource(r: &Value) -> Option<(String, String, u64, String)> {
    let path = r["path"].as_str().or_else(|| r["fn"].as_str())?;
    let sha1 = r["checksum"]["value"]
        .as_str()
        .or_else(|| r["sha1"].as_str())?;
    let size = r["size_in_bytes"]
        .as_u64()
        .or_else(|| r["size"].as_u64())
        .unwrap_or(0);
    let mode = r["mode"].as_str().unwrap_or("644").to_string();
    Some((path.to_string(), sha1.to_lowercase(), size, mode))
}

async fn resource_matches(AxState(s): SharedState, JsonBody(v): JsonBody) -> ApiResult {
    let list = v["resources"]
        .as_array()
        .ok_or_else(|| ApiError::unprocessable("Resources must be an array"))?;
    let st = s.lock();
    let matched: Vec<Value> = list
        .iter()
        .filter(|r| {
            parse_resource(r).is_some_and(|(_, sha, size, _)| {
                st.blobs.get(&sha).is_some_and(|b| b.len() as u64 == size)
            })
        })
        .map(|r| {
            let mut r = r.clone();
            if r["mode"].as_str().is_none_or(str::is_empty) {
                r["mode"] = json!("644");
            }
            r
        })
        .collect();
    created(json!({ "resources": matched }))
}

async fn list_packages(AxState(s): SharedState, q: Q) -> ApiResult {
    let mut items = Vec::new();
    {
        let st = s.lock();
        for p in &st.packages {
            if q.accepts("app_guids", &p.app_guid)
                && q.accepts("guids", &p.meta.guid)
                && q.accepts("states", &p.state)
                && q.accepts("types", &p.kind)
                && selector_matches(q.get("label_selector"), &p.meta.labels)?
            {
                items.push(present_package(&s.base_url, p));
            }
        }
    }
    order(&mut items, &q)?;
    paginate(&s.base_url, "/v3/packages", &q, items)
}

async fn create_package(AxState(s): SharedState, JsonBody(v): JsonBody) -> ApiResult {
    let app_guid = v["relationships"]["app"]["data"]["guid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let kind = v["type"].as_str().unwrap_or("");
    if !matches!(kind, "bits" | "docker") {
        return Err(ApiError::unprocessable(
            "Type must be one of 'bits', 'docker'",
        ));
    }
    let mut st = s.lock();
    let lifecycle = st
        .app(&app_guid)
        .map(|a| a.lifecycle.clone())
        .ok_or_else(|| ApiError::unprocessable("App must exist"))?;
    if kind == "docker" && lifecycle != "docker" {
        return Err(ApiError::unprocessable(
            "Cannot create a docker package for a buildpack app.",
        ));
    }
    let mut meta = st.meta();
    merge_metadata(&mut meta, &v);
    let image = v["data"]["image"].as_str().map(str::to_string);
    if kind == "docker" && image.is_none() {
        return Err(ApiError::unprocessable("Image required"));
    }
    let p = Package {
        meta,
        app_guid,
        kind: kind.to_string(),
        state: if kind == "docker" {
            "READY".to_string()
        } else {
            "AWAITING_UPLOAD".to_string()
        },
        files: None,
        image,
        username: v["data"]["username"].as_str().map(str::to_string),
        polls: 0,
    };
    let body = present_package(&s.base_url, &p);
    st.packages.push(p);
    created(body)
}

async fn get_package(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let polls_needed = s.config.package_polls;
    let mut st = s.lock();
    let p = find_package_mut(&mut st, &guid)?;
    if p.state == "PROCESSING_UPLOAD" {
        p.polls += 1;
        if p.polls >= polls_needed {
            p.state = "READY".to_string();
            p.meta.touch();
        }
    }
    ok(present_package(&s.base_url, p))
}

/// One part of a `multipart/form-data` body.
#[derive(Debug)]
struct Part {
    name: String,
    data: Bytes,
}

/// A small `multipart/form-data` parser (the whole body is in memory already).
fn parse_multipart(content_type: &str, body: &Bytes) -> Option<Vec<Part>> {
    let boundary = content_type.split(';').find_map(|p| {
        p.trim()
            .strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_string())
    })?;
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let find = |from: usize| -> Option<usize> {
        body.get(from..)?
            .windows(d.len())
            .position(|w| w == d)
            .map(|i| i + from)
    };
    let mut parts = Vec::new();
    let mut pos = find(0)? + d.len();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            break;
        }
        // Skip the CRLF after the delimiter.
        let start = pos + 2;
        let next = find(start)?;
        // The part ends with CRLF before the next delimiter.
        let part = body.slice(start..next.saturating_sub(2).max(start));
        let sep = part.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&part[..sep]).to_string();
        let data = part.slice(sep + 4..);
        let name = head
            .split(';')
            .find_map(|p| {
                p.trim()
                    .strip_prefix("name=")
                    .map(|n| n.trim_matches('"').to_string())
            })
            .unwrap_or_default();
        parts.push(Part { name, data });
        pos = next + d.len();
    }
    Some(parts)
}

/// Why a package path (a `resources[].path` or a zip entry name) is refused, if it is: paths
/// are relative, `/`-separated, and stay inside the package.
pub(crate) fn bad_path(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("it is empty");
    }
    if path.contains('\0') {
        return Some("it contains a NUL character");
    }
    if path.contains('\\') {
        return Some("it contains a backslash");
    }
    if path.starts_with('/') {
        return Some("it is absolute");
    }
    let b = path.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Some("it starts with a drive letter");
    }
    if path.split('/').any(|c| c == "..") {
        return Some("it has a '..' component");
    }
    None
}

/// Most entries one uploaded zip may have.
const MAX_ZIP_ENTRIES: usize = 200_000;

/// Reads every file of a zip: `(path, data, mode)`. All files together may unzip to at most
/// `max_unzipped` bytes: each entry is read only up to what is left (its declared size is not
/// trusted), so a zip bomb costs no more memory than that.
fn read_zip(bytes: &[u8], max_unzipped: u64) -> Result<Vec<(String, Bytes, u32)>, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    if zip.len() > MAX_ZIP_ENTRIES {
        return Err(format!(
            "it has {} entries, more than {MAX_ZIP_ENTRIES}",
            zip.len()
        ));
    }
    let too_large = || format!("it unzips to more than {max_unzipped} bytes");
    let mut left = max_unzipped;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| e.to_string())?;
        if f.is_dir() {
            continue;
        }
        let name = f.name().map_err(|e| e.to_string())?.to_string();
        if let Some(why) = bad_path(&name) {
            return Err(format!("invalid path in zip: '{name}': {why}"));
        }
        let mode = f.unix_mode().map(|m| m & 0o777).unwrap_or(0o644);
        if f.size() > left {
            return Err(too_large());
        }
        let mut data = Vec::new();
        // One byte more than is left tells a lying header from an exact fit.
        (&mut f)
            .take(left.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| e.to_string())?;
        left = left.checked_sub(data.len() as u64).ok_or_else(too_large)?;
        out.push((name, Bytes::from(data), mode));
    }
    Ok(out)
}

async fn upload_package(
    AxState(s): SharedState,
    Path(guid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    {
        let st = s.lock();
        let p = find_package(&st, &guid)?;
        if p.kind != "bits" {
            return Err(ApiError::unprocessable("Package type must be bits."));
        }
        if p.state != "AWAITING_UPLOAD" {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                150004,
                "CF-PackageBitsAlreadyUploaded",
                "Bits may be uploaded only once. Create a new package to upload different bits.",
            ));
        }
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parts = parse_multipart(ct, &body)
        .ok_or_else(|| ApiError::unprocessable("Upload must include either resources or bits"))?;
    let resources_part = parts.iter().find(|p| p.name == "resources");
    let bits_part = parts.iter().find(|p| p.name == "bits");
    if resources_part.is_none() && bits_part.is_none() {
        return Err(ApiError::unprocessable(
            "Upload must include either resources or bits",
        ));
    }
    let resources: Vec<Value> = match resources_part {
        Some(p) => serde_json::from_slice(&p.data)
            .map_err(|_| ApiError::unprocessable("Resources must be valid JSON."))?,
        None => Vec::new(),
    };
    let refused: Vec<String> = resources
        .iter()
        .enumerate()
        .filter_map(|(n, r)| {
            let path = r["path"].as_str().or_else(|| r["fn"].as_str())?;
            bad_path(path).map(|why| format!("Resource {n} has an invalid path '{path}': {why}"))
        })
        .collect();
    if !refused.is_empty() {
        return Err(ApiError::unprocessable_many(refused));
    }
    let zipped = match bits_part {
        Some(p) => {
            let data = p.data.clone();
            let max_unzipped = s.config.max_unzipped_bytes;
            tokio::task::spawn_blocking(move || read_zip(&data, max_unzipped))
                .await
                .map_err(|_| ApiError::unprocessable("Bits could not be read"))?
                .map_err(|e| ApiError::unprocessable(format!("Bits must be a valid zip: {e}")))?
        }
        None => Vec::new(),
    };
    let mut st = s.lock();
    let mut files = Files::new();
    let mut missing = false;
    for r in &resources {
        let Some((path, sha, _, mode)) = parse_resource(r) else {
            return Err(ApiError::unprocessable("Resources must be valid JSON."));
        };
        match st.blobs.get(&sha) {
            Some(data) => {
                files.insert(
                    path,
                    FileEntry {
                        data: data.clone(),
                        mode: u32::from_str_radix(&mode, 8).unwrap_or(0o644) & 0o777,
                    },
                );
            }
            None => missing = true,
        }
    }
    for (path, data, mode) in zipped {
        let sha = hex::encode(Sha1::digest(&data));
        st.blobs.insert(sha, data.clone());
        files.insert(path, FileEntry { data, mode });
    }
    let p = find_package_mut(&mut st, &guid)?;
    p.files = Some(Arc::new(files));
    p.state = if missing {
        "FAILED"
    } else {
        "PROCESSING_UPLOAD"
    }
    .to_string();
    p.meta.touch();
    ok(present_package(&s.base_url, p))
}

async fn package_droplets(AxState(s): SharedState, Path(guid): Path<String>, q: Q) -> ApiResult {
    let items: Vec<Value> = {
        let st = s.lock();
        find_package(&st, &guid)?;
        st.droplets
            .iter()
            .filter(|d| d.package_guid.as_deref() == Some(&guid) && q.accepts("states", &d.state))
            .map(|d| present_droplet(&s.base_url, d))
            .collect()
    };
    paginate(
        &s.base_url,
        &format!("/v3/packages/{guid}/droplets"),
        &q,
        items,
    )
}

async fn list_builds(AxState(s): SharedState, q: Q) -> ApiResult {
    let mut items: Vec<Value> = {
        let st = s.lock();
        st.builds
            .iter()
            .filter(|b| {
                q.accepts("app_guids", &b.app_guid)
                    && q.accepts("package_guids", &b.package_guid)
                    && q.accepts("states", &b.state)
            })
            .map(|b| present_build(&s.base_url, b))
            .collect()
    };
    order(&mut items, &q)?;
    paginate(&s.base_url, "/v3/builds", &q, items)
}

async fn create_build(AxState(s): SharedState, JsonBody(v): JsonBody) -> ApiResult {
    let package_guid = v["package"]["guid"].as_str().unwrap_or("").to_string();
    let build = {
        let mut st = s.lock();
        let pkg = st
            .packages
            .iter()
            .find(|p| p.meta.guid == package_guid)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "Unable to use package. Ensure that the package exists and you have access to it.",
                )
            })?;
        if pkg.state != "READY" {
            return Err(ApiError::unprocessable(
                "Cannot stage package whose state is not ready.",
            ));
        }
        let app_guid = pkg.app_guid.clone();
        let app = st
            .app(&app_guid)
            .ok_or_else(|| ApiError::unprocessable("App must exist"))?;
        let (lifecycle, buildpacks, stack) = (
            app.lifecycle.clone(),
            app.buildpacks.clone(),
            app.stack.clone(),
        );
        let staging_mb = st
            .newest_process(&app_guid, "web")
            .map_or(0, |p| p.memory_mb);
        crate::sim::quotas::check_staging(&st, &app.space_guid, staging_mb)
            .map_err(ApiError::unprocessable)?;
        let mut meta = st.meta();
        merge_metadata(&mut meta, &v);
        let b = Build {
            meta,
            app_guid,
            package_guid,
            state: "STAGING".to_string(),
            error: None,
            droplet_guid: None,
            lifecycle,
            buildpacks,
            stack,
            user_name: s.config.username.clone(),
        };
        let out = present_build(&s.base_url, &b);
        let guid = b.meta.guid.clone();
        st.builds.push(b);
        (guid, out)
    };
    let shared = s.clone();
    s.tasks.spawn(staging::stage(shared, build.0));
    created(build.1)
}

async fn get_build(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let b = st
        .builds
        .iter()
        .find(|b| b.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Build"))?;
    ok(present_build(&s.base_url, b))
}

async fn list_droplets(AxState(s): SharedState, q: Q) -> ApiResult {
    let mut items: Vec<Value> = {
        let st = s.lock();
        st.droplets
            .iter()
            .filter(|d| {
                q.accepts("app_guids", &d.app_guid)
                    && q.accepts("guids", &d.meta.guid)
                    && q.accepts("states", &d.state)
            })
            .map(|d| present_droplet(&s.base_url, d))
            .collect()
    };
    order(&mut items, &q)?;
    paginate(&s.base_url, "/v3/droplets", &q, items)
}

async fn get_droplet(AxState(s): SharedState, Path(guid): Path<String>) -> ApiResult {
    let st = s.lock();
    let d = st
        .droplet(&guid)
        .ok_or_else(|| ApiError::not_found("Droplet"))?;
    ok(present_droplet(&s.base_url, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_with_resources_and_bits() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"resources\"\r\n\r\n[]\r\n--XyZ\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"package.zip\"\r\nContent-Type: application/octet-stream\r\n\r\nPK\r\n\x01\r\n--XyZ--\r\n",
        );
        let parts = parse_multipart("multipart/form-data; boundary=XyZ", &body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "resources");
        assert_eq!(&parts[0].data[..], b"[]");
        assert_eq!(parts[1].name, "bits");
        assert_eq!(&parts[1].data[..], b"PK\r\n\x01");
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write as _;
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(
                *name,
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated),
            )
            .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn what_a_zip_unzips_to_is_bounded() {
        // 4 MiB of zeros deflate to a few KiB: a small upload, a large unzip.
        let zeros = vec![0u8; 4 << 20];
        let bomb = zip_of(&[("a", &zeros)]);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let err = read_zip(&bomb, 1 << 20).unwrap_err();
        assert!(err.contains("unzips to more than 1048576 bytes"), "{err}");
        // The limit is over all entries together; an exact fit is fine.
        let two = zip_of(&[("a", &zeros[..600 << 10]), ("b", &zeros[..600 << 10])]);
        assert!(read_zip(&two, 1 << 20).is_err());
        let fit = zip_of(&[("a", &zeros[..512 << 10]), ("b", &zeros[..512 << 10])]);
        let files = read_zip(&fit, 1 << 20).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].1.len(), 512 << 10);
    }

    #[test]
    fn v2_and_v3_resources_parse() {
        let v3 =
            json!({"path": "a", "mode": "644", "checksum": {"value": "AB"}, "size_in_bytes": 3});
        assert_eq!(
            parse_resource(&v3),
            Some(("a".into(), "ab".into(), 3, "644".into()))
        );
        let v2 = json!({"fn": "b", "sha1": "cd", "size": 4});
        assert_eq!(
            parse_resource(&v2),
            Some(("b".into(), "cd".into(), 4, "644".into()))
        );
    }
}
