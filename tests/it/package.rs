//! The `package` layer end to end on real temporary trees and archives, against a fake `BitsApi`
//! that records every call (and can remember uploaded SHA-1s like Cloud Controller's cache).
#![cfg(unix)]

use std::collections::HashSet;
use std::io::{Cursor, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use assert_matches::assert_matches;
use cf_zero_downtime::package::{
    AppSource, ArchiveLimits, BitsApi, EntryKind, Error, ProgressFn, Resource, ScanOptions,
    push_bits, scan, scan_with, scan_with_limits,
};
use zip::write::SimpleFileOptions;

use crate::support::sha1_hex;

// ---------------------------------------------------------------- fake API

#[derive(Debug, thiserror::Error)]
#[error("fake cloud controller refused the call")]
struct FakeError;

#[derive(Debug, Clone)]
struct Upload {
    matched: Vec<Resource>,
    zip: Option<Vec<u8>>,
}

#[derive(Default)]
struct FakeBits {
    /// `(sha1, size)` pairs the fake "cache" holds.
    known: Mutex<HashSet<(String, u64)>>,
    /// Match everything that is asked about.
    match_all: bool,
    /// Add the files of every uploaded zip to `known`.
    remember: bool,
    /// Fail every resource-match call.
    fail_match: bool,
    match_calls: Mutex<Vec<Vec<Resource>>>,
    uploads: Mutex<Vec<Upload>>,
}

impl FakeBits {
    fn remembering() -> Self {
        FakeBits {
            remember: true,
            ..FakeBits::default()
        }
    }
    fn uploads(&self) -> Vec<Upload> {
        self.uploads.lock().unwrap().clone()
    }
    fn match_call_sizes(&self) -> Vec<usize> {
        self.match_calls
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect()
    }
}

impl BitsApi for FakeBits {
    type Error = FakeError;

    async fn match_resources(&self, candidates: Vec<Resource>) -> Result<Vec<Resource>, FakeError> {
        self.match_calls.lock().unwrap().push(candidates.clone());
        if self.fail_match {
            return Err(FakeError);
        }
        let known = self.known.lock().unwrap();
        Ok(candidates
            .into_iter()
            .filter(|r| self.match_all || known.contains(&(r.sha1.clone(), r.size)))
            .collect())
    }

    async fn upload(
        &self,
        _package_guid: &str,
        matched: Vec<Resource>,
        zip: Option<&Path>,
        progress: ProgressFn,
    ) -> Result<(), FakeError> {
        let bytes = zip.map(|p| std::fs::read(p).unwrap());
        if let Some(b) = &bytes {
            let total = b.len() as u64;
            progress(total / 2, total);
            progress(total, total);
            if self.remember {
                let mut archive = zip::ZipArchive::new(Cursor::new(b.clone())).unwrap();
                let mut known = self.known.lock().unwrap();
                for i in 0..archive.len() {
                    let mut f = archive.by_index(i).unwrap();
                    if f.is_file() {
                        let mut data = Vec::new();
                        f.read_to_end(&mut data).unwrap();
                        known.insert((sha1_hex(&data), data.len() as u64));
                    }
                }
            }
        }
        self.uploads.lock().unwrap().push(Upload {
            matched,
            zip: bytes,
        });
        Ok(())
    }
}

fn no_progress() -> ProgressFn {
    Arc::new(|_, _| {})
}

// ---------------------------------------------------------------- app trees

struct TempApp {
    dir: tempfile::TempDir,
}

impl TempApp {
    fn new() -> Self {
        TempApp {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    fn file(&self, rel: &str, content: &[u8]) -> &Self {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        self
    }
    fn mode(&self, rel: &str, mode: u32) -> &Self {
        let p = self.dir.path().join(rel);
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }
    fn dir(&self, rel: &str) -> &Self {
        std::fs::create_dir_all(self.dir.path().join(rel)).unwrap();
        self
    }
    fn symlink(&self, rel: &str, target: &str) -> &Self {
        symlink(target, self.dir.path().join(rel)).unwrap();
        self
    }
    fn source(&self) -> AppSource {
        AppSource::Directory(self.path())
    }
}

/// Entries of a zip: (name, unix mode, is_dir, is_symlink, content).
fn read_zip(bytes: &[u8]) -> Vec<(String, u32, bool, bool, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (
                f.name().unwrap().into_owned(),
                f.unix_mode().unwrap_or(0),
                f.is_dir(),
                f.is_symlink(),
                data,
            )
        })
        .collect()
}

fn sample_app() -> TempApp {
    let app = TempApp::new();
    app.file("app.js", b"console.log('hi')")
        .file("bin/run", b"#!/bin/sh\nexec node app.js\n")
        .mode("bin/run", 0o755)
        .file("empty.txt", b"")
        .dir("public/img")
        .symlink("current", "app.js")
        .file(".cfignore", b"*.log\nnode_modules/\n")
        .file("debug.log", b"noise")
        .file("node_modules/left-pad/index.js", b"module.exports = 1")
        .file("manifest.yml", b"applications: []")
        .file(".git/HEAD", b"ref: refs/heads/main")
        .file("config/.gitignore", b"*.tmp");
    app
}

// ---------------------------------------------------------------- scan

#[test]
fn scan_walks_in_lexical_order_and_applies_ignores() {
    let app = sample_app();
    let s = scan(&app.source()).unwrap();
    let paths: Vec<&str> = s.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "app.js",
            "bin/",
            "bin/run",
            "config/",
            "current",
            "empty.txt",
            // `node_modules/` ignores what is below, not the directory entry (cf CLI quirk).
            "node_modules/",
            "public/",
            "public/img/",
        ]
    );
    let by_path = |p: &str| s.entries.iter().find(|e| e.path == p).unwrap();
    let app_js = by_path("app.js");
    assert_eq!(app_js.sha1, sha1_hex(b"console.log('hi')"));
    assert_eq!(
        (app_js.size, app_js.mode, &app_js.kind),
        (17, 0o644, &EntryKind::File)
    );
    assert_eq!(by_path("bin/run").mode, 0o755);
    let dir = by_path("public/img/");
    assert_eq!((dir.sha1.as_str(), dir.size, dir.mode), ("", 0, 0o755));
    assert_eq!(dir.kind, EntryKind::Directory);
    let empty = by_path("empty.txt");
    assert_eq!(
        (empty.size, empty.sha1.as_str()),
        (0, "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    );
    let link = by_path("current");
    assert_eq!(
        link.kind,
        EntryKind::Symlink {
            target: "app.js".into()
        }
    );
    assert_eq!((link.sha1.as_str(), link.size), ("", 0));
    assert_eq!(s.file_count(), 3);
}

#[test]
fn negation_reincludes_a_file_below_an_ignored_directory() {
    let app = TempApp::new();
    app.file(".cfignore", b"logs\n!logs/keep.txt\n")
        .file("logs/keep.txt", b"keep")
        .file("logs/drop.txt", b"drop")
        .file("a.txt", b"a");
    let s = scan(&app.source()).unwrap();
    let paths: Vec<&str> = s.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["a.txt", "logs/keep.txt"]);
}

#[test]
fn trace_file_inside_the_app_is_ignored() {
    let app = TempApp::new();
    app.file("a.txt", b"a").file("cf-trace.txt", b"REQUEST ...");
    let options = ScanOptions {
        trace_file: Some(app.path().join("cf-trace.txt")),
    };
    let s = scan_with(&app.source(), &options).unwrap();
    assert_eq!(s.entries.len(), 1);
}

#[test]
fn nonexistent_path_is_a_clear_error() {
    let missing = PathBuf::from("/nonexistent/cf-zdt-app");
    assert_matches!(AppSource::from_path(&missing), Err(Error::NotFound { .. }));
    let err = scan(&AppSource::Directory(missing.clone())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "app path '/nonexistent/cf-zdt-app' does not exist"
    );
    assert_matches!(
        scan(&AppSource::Archive(missing)),
        Err(Error::NotFound { .. })
    );
}

#[test]
fn directory_with_only_ignored_files_has_no_app_files() {
    let app = TempApp::new();
    app.file("manifest.yml", b"---").file(".cfignore", b"");
    let err = scan(&app.source()).unwrap_err();
    assert_matches!(err, Error::NoAppFiles { .. });
    assert!(err.to_string().starts_with("no app files found in '"));
}

#[test]
fn dangling_symlink_is_a_clear_error() {
    let app = TempApp::new();
    app.file("a.txt", b"a").symlink("broken", "missing.txt");
    let err = scan(&app.source()).unwrap_err();
    assert_matches!(&err, Error::DanglingSymlink { target, .. } if target == "missing.txt");
    assert!(
        err.to_string()
            .contains("broken' points to 'missing.txt', which does not exist")
    );
}

#[test]
fn ignored_dangling_symlink_is_fine() {
    let app = TempApp::new();
    app.file("a.txt", b"a")
        .symlink("broken", "missing.txt")
        .file(".cfignore", b"broken");
    assert_eq!(scan(&app.source()).unwrap().entries.len(), 1);
}

#[test]
fn symlink_leaving_the_app_is_rejected() {
    let app = TempApp::new();
    app.file("a.txt", b"a").symlink("passwd", "/etc/passwd");
    assert_matches!(scan(&app.source()), Err(Error::SymlinkOutsideApp { .. }));
    let app = TempApp::new();
    app.file("sub/a.txt", b"a")
        .symlink("sub/up", "../../outside");
    assert_matches!(scan(&app.source()), Err(Error::SymlinkOutsideApp { .. }));
    let app = TempApp::new();
    app.file("sub/a.txt", b"a")
        .symlink("sub/sibling", "../sub/a.txt");
    assert!(scan(&app.source()).is_ok());
}

#[test]
fn socket_in_the_tree_is_a_clear_error() {
    let app = TempApp::new();
    app.file("a.txt", b"a");
    let _listener = std::os::unix::net::UnixListener::bind(app.path().join("app.sock")).unwrap();
    let err = scan(&app.source()).unwrap_err();
    assert_matches!(err, Error::UnsupportedFileType { kind: "socket", .. });
}

#[tokio::test]
async fn a_file_that_cannot_be_read_is_a_clear_error_without_upload() {
    // A file the scan listed whose read fails names the file. What fails for every user, root
    // included (root reads mode-000 files): a directory where the file was, which opens but
    // cannot be read as a file.
    let app = TempApp::new();
    app.file("a.txt", b"a").file("secret", b"s");
    let s = scan(&app.source()).unwrap();
    std::fs::remove_file(app.path().join("secret")).unwrap();
    std::fs::create_dir(app.path().join("secret")).unwrap();
    let api = FakeBits::default();
    let err = push_bits(&api, "p", &s, no_progress()).await.unwrap_err();
    assert_matches!(&err, Error::Read { path, .. } if path.ends_with("secret"));
    assert!(api.uploads().is_empty());
}

// ---------------------------------------------------------------- push: zip layout

#[tokio::test]
async fn first_push_zips_everything_with_modes_dirs_and_symlinks() {
    let app = sample_app();
    let s = scan(&app.source()).unwrap();
    let api = FakeBits::default();
    let summary = push_bits(&api, "pkg-1", &s, no_progress()).await.unwrap();

    assert_eq!(api.match_call_sizes(), [2]); // the non-empty files: app.js, bin/run
    let uploads = api.uploads();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].matched.is_empty());
    let zip = uploads[0].zip.as_deref().unwrap();
    let entries = read_zip(zip);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        s.entries
            .iter()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>()
    );

    let get = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
    let (_, mode, is_dir, is_link, data) = get("app.js");
    assert_eq!((mode & 0o7777, *is_dir, *is_link), (0o644, false, false));
    assert_eq!(data, b"console.log('hi')");
    assert_eq!(get("bin/run").1 & 0o7777, 0o755);
    let (_, mode, is_dir, _, _) = get("public/img/");
    assert!(*is_dir);
    assert_eq!(mode & 0o7777, 0o755);
    let (_, mode, _, is_link, data) = get("current");
    assert!(*is_link);
    assert_eq!(mode & 0o170000, 0o120000);
    assert_eq!(data, b"app.js");
    assert_eq!(get("empty.txt").4, b"");

    assert_eq!(summary.files, 3);
    assert_eq!(summary.matched, 0);
    assert_eq!(summary.zipped_files, 3);
    assert_eq!(summary.zip_entries, s.entries.len());
    assert_eq!(summary.zip_bytes, zip.len() as u64);
    assert_eq!(summary.uploaded_bytes, zip.len() as u64);
}

#[tokio::test]
async fn file_entries_are_deflated() {
    let app = TempApp::new();
    app.file("big.txt", "hello world ".repeat(10_000).as_bytes());
    let s = scan(&app.source()).unwrap();
    let api = FakeBits::default();
    push_bits(&api, "p", &s, no_progress()).await.unwrap();
    let zip = api.uploads()[0].zip.clone().unwrap();
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let f = archive.by_index(0).unwrap();
    assert_eq!(f.compression(), zip::CompressionMethod::Deflated);
    assert!(f.compressed_size() < f.size() / 10);
}

#[tokio::test]
async fn large_files_are_streamed_and_checked() {
    let app = TempApp::new();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    app.file("a-small.txt", b"small")
        .file("b-big.bin", &big)
        .file("c-small.txt", b"c");
    let s = scan(&app.source()).unwrap();
    let api = FakeBits::default();
    let summary = push_bits(&api, "p", &s, no_progress()).await.unwrap();
    let entries = read_zip(api.uploads()[0].zip.as_deref().unwrap());
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["a-small.txt", "b-big.bin", "c-small.txt"]);
    assert_eq!(entries[1].4, big);
    assert_eq!(entries[1].1 & 0o7777, 0o644);
    assert_eq!(summary.zipped_file_bytes, big.len() as u64 + 6);
}

// ---------------------------------------------------------------- push: matching

#[tokio::test]
async fn second_push_of_an_unchanged_tree_uploads_no_file_content() {
    let app = sample_app();
    let s = scan(&app.source()).unwrap();
    let api = FakeBits::remembering();
    push_bits(&api, "pkg-1", &s, no_progress()).await.unwrap();
    let again = scan(&app.source()).unwrap();
    let summary = push_bits(&api, "pkg-2", &again, no_progress())
        .await
        .unwrap();

    let second = &api.uploads()[1];
    let mut matched: Vec<&str> = second.matched.iter().map(|r| r.path.as_str()).collect();
    matched.sort_unstable();
    assert_eq!(matched, ["app.js", "bin/run"]);
    assert_eq!(
        second
            .matched
            .iter()
            .find(|r| r.path == "bin/run")
            .unwrap()
            .mode_string(),
        "755"
    );
    // Directories, the symlink and the empty file are always unmatched (cf CLI behaviour).
    let entries = read_zip(second.zip.as_deref().unwrap());
    let file_bytes: usize = entries
        .iter()
        .filter(|e| !e.2 && !e.3)
        .map(|e| e.4.len())
        .sum();
    assert_eq!(file_bytes, 0);
    assert_eq!(summary.matched, 2);
    assert_eq!(summary.zipped_files, 1); // empty.txt
    assert_eq!(summary.zipped_file_bytes, 0);
}

#[tokio::test]
async fn everything_matched_means_no_zip() {
    let app = TempApp::new();
    app.file("a.txt", b"a").file("b.txt", b"bb");
    let s = scan(&app.source()).unwrap();
    let api = FakeBits {
        match_all: true,
        ..FakeBits::default()
    };
    let summary = push_bits(&api, "p", &s, no_progress()).await.unwrap();
    let uploads = api.uploads();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].zip.is_none());
    assert_eq!(uploads[0].matched.len(), 2);
    assert_eq!((summary.zip_bytes, summary.uploaded_bytes), (0, 0));
}

#[tokio::test]
async fn only_empty_files_skip_matching() {
    let app = TempApp::new();
    app.file("a", b"").file("b", b"");
    let s = scan(&app.source()).unwrap();
    let api = FakeBits::default();
    push_bits(&api, "p", &s, no_progress()).await.unwrap();
    assert!(api.match_call_sizes().is_empty());
    assert_eq!(read_zip(api.uploads()[0].zip.as_deref().unwrap()).len(), 2);
}

#[tokio::test]
async fn matching_is_chunked_by_5000_and_split_by_sha1() {
    let app = TempApp::new();
    let root = app.path();
    for i in 0..12_001 {
        std::fs::write(root.join(format!("f{i:05}")), format!("content {i}")).unwrap();
    }
    let s = scan(&app.source()).unwrap();
    let api = FakeBits::default();
    // The "cache" knows every even-numbered file.
    {
        let mut known = api.known.lock().unwrap();
        for i in (0..12_001).step_by(2) {
            let body = format!("content {i}");
            known.insert((sha1_hex(body.as_bytes()), body.len() as u64));
        }
    }
    let summary = push_bits(&api, "p", &s, no_progress()).await.unwrap();
    assert_eq!(api.match_call_sizes(), [5000, 5000, 2001]);
    assert_eq!(summary.matched, 6001);
    assert_eq!(summary.zipped_files, 6000);
    let upload = &api.uploads()[0];
    assert_eq!(upload.matched.len(), 6001);
    assert!(
        upload
            .matched
            .iter()
            .all(|r| r.path.trim_start_matches('f').parse::<u32>().unwrap() % 2 == 0)
    );
    let names: Vec<String> = read_zip(upload.zip.as_deref().unwrap())
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(names.len(), 6000);
    assert_eq!(
        (names[0].as_str(), names[5999].as_str()),
        ("f00001", "f11999")
    );
}

// ---------------------------------------------------------------- push: failures mean no upload

#[tokio::test]
async fn file_changed_after_scan_aborts_without_upload() {
    let app = TempApp::new();
    app.file("a.txt", b"original");
    let s = scan(&app.source()).unwrap();
    app.file("a.txt", b"tampered"); // same size, other content
    let api = FakeBits::default();
    let err = push_bits(&api, "p", &s, no_progress()).await.unwrap_err();
    assert_matches!(&err, Error::FileChanged { path } if path == "a.txt");
    assert!(
        err.to_string()
            .contains("has been modified since the start of push")
    );
    assert!(api.uploads().is_empty());
}

#[tokio::test]
async fn large_file_changed_after_scan_aborts_without_upload() {
    let app = TempApp::new();
    app.file("big.bin", &vec![7u8; 3_000_000]);
    let s = scan(&app.source()).unwrap();
    app.file("big.bin", &vec![7u8; 3_000_001]);
    let api = FakeBits::default();
    assert_matches!(
        push_bits(&api, "p", &s, no_progress()).await,
        Err(Error::FileChanged { .. })
    );
    assert!(api.uploads().is_empty());
}

#[tokio::test]
async fn vanished_file_is_a_read_error_without_upload() {
    let app = TempApp::new();
    app.file("a.txt", b"a").file("b.txt", b"b");
    let s = scan(&app.source()).unwrap();
    std::fs::remove_file(app.path().join("b.txt")).unwrap();
    let api = FakeBits::default();
    let err = push_bits(&api, "p", &s, no_progress()).await.unwrap_err();
    assert_matches!(&err, Error::Read { path, .. } if path.ends_with("b.txt"));
    assert!(api.uploads().is_empty());
}

#[tokio::test]
async fn match_failure_is_reported_without_upload() {
    let app = TempApp::new();
    app.file("a.txt", b"a");
    let s = scan(&app.source()).unwrap();
    let api = FakeBits {
        fail_match: true,
        ..FakeBits::default()
    };
    let err = push_bits(&api, "p", &s, no_progress()).await.unwrap_err();
    assert_eq!(err.to_string(), "resource matching failed (chunk 1 of 1)");
    assert!(api.uploads().is_empty());
}

// ---------------------------------------------------------------- archives

fn write_archive(path: &Path, prefix: &[u8], entries: &[(&str, &[u8])]) {
    let mut out = std::fs::File::create(path).unwrap();
    out.write_all(prefix).unwrap();
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().unix_permissions(0o600);
    for (name, data) in entries {
        if name.ends_with('/') {
            zip.add_directory(*name, options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
    }
    out.write_all(&zip.finish().unwrap().into_inner()).unwrap();
}

#[tokio::test]
async fn archive_entries_are_the_app_files() {
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("app.jar");
    write_archive(
        &jar,
        b"",
        &[
            ("META-INF/", b""),
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
            ("WEB-INF/.cfignore", b"*.log\n"),
            ("WEB-INF/app.log", b"noise"),
            ("index.html", b"<h1>hi</h1>"),
            ("manifest.yml", b"---"),
        ],
    );
    let source = AppSource::from_path(&jar).unwrap();
    assert_eq!(source, AppSource::Archive(jar.clone()));
    let s = scan(&source).unwrap();
    let listed: Vec<(&str, u32)> = s
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.mode))
        .collect();
    assert_eq!(
        listed,
        [
            ("META-INF/", 0o755),
            ("META-INF/MANIFEST.MF", 0o744),
            ("index.html", 0o744)
        ]
    );
    assert_eq!(s.entries[2].sha1, sha1_hex(b"<h1>hi</h1>"));

    let api = FakeBits::remembering();
    push_bits(&api, "p", &s, no_progress()).await.unwrap();
    let entries = read_zip(api.uploads()[0].zip.as_deref().unwrap());
    let names: Vec<(&str, u32)> = entries
        .iter()
        .map(|e| (e.0.as_str(), e.1 & 0o7777))
        .collect();
    assert_eq!(
        names,
        [
            ("META-INF/", 0o755),
            ("META-INF/MANIFEST.MF", 0o744),
            ("index.html", 0o744)
        ]
    );
    assert_eq!(entries[2].4, b"<h1>hi</h1>");

    // Same matching and upload shape as a directory: the second push sends no file content.
    let summary = push_bits(&api, "p2", &s, no_progress()).await.unwrap();
    assert_eq!(summary.matched, 2);
    assert_eq!(summary.zipped_file_bytes, 0);
}

#[tokio::test]
async fn archive_symlinks_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = SimpleFileOptions::default();
    zip.start_file("bin/app", options).unwrap();
    zip.write_all(b"binary").unwrap();
    zip.add_symlink("current", "bin/app", options).unwrap();
    zip.finish().unwrap();

    let s = scan(&AppSource::Archive(path)).unwrap();
    assert_eq!(
        s.entries[1].kind,
        EntryKind::Symlink {
            target: "bin/app".into()
        }
    );
    let api = FakeBits::default();
    push_bits(&api, "p", &s, no_progress()).await.unwrap();
    let entries = read_zip(api.uploads()[0].zip.as_deref().unwrap());
    assert_eq!(entries[1].0, "current");
    assert!(entries[1].3);
    assert_eq!(entries[1].4, b"bin/app");
}

/// The integrator spawns pushes on tokio: the future must be `Send`.
#[test]
fn push_bits_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let app = TempApp::new();
    app.file("a.txt", b"a");
    let s = scan(&app.source()).unwrap();
    let api = FakeBits::default();
    let future = push_bits(&api, "p", &s, no_progress());
    assert_send(&future);
}

#[test]
fn archive_with_a_prefix_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let sfx = dir.path().join("app.zip");
    write_archive(
        &sfx,
        b"#!/bin/sh\nexit 0\n",
        &[("a.txt", b"a"), ("b.txt", b"b")],
    );
    assert_eq!(scan(&AppSource::Archive(sfx)).unwrap().entries.len(), 2);
}

#[test]
fn empty_and_invalid_archives_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.zip");
    write_archive(&one, b"", &[("a.txt", b"a"), ("manifest.yml", b"---")]);
    let err = scan(&AppSource::Archive(one)).unwrap_err();
    assert_matches!(err, Error::EmptyArchive { .. });
    assert!(err.to_string().ends_with("one.zip' is an empty archive"));

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a zip").unwrap();
    let err = scan(&AppSource::from_path(&text).unwrap()).unwrap_err();
    assert_matches!(err, Error::InvalidArchive { .. });
    // A file given as a directory is still read as an archive, as the cf CLI does.
    assert_matches!(
        scan(&AppSource::Directory(text)),
        Err(Error::InvalidArchive { .. })
    );
}

#[test]
fn archive_entries_escaping_the_root_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("evil.zip");
    write_archive(&evil, b"", &[("a.txt", b"a"), ("../../etc/cron.d/x", b"x")]);
    assert_matches!(
        scan(&AppSource::Archive(evil)),
        Err(Error::UnsafeArchiveEntry { .. })
    );
}

// ---------------------------------------------------------------- bounded archives

/// Sets the uncompressed size of every entry named `name` in a zip (local and central headers)
/// to `size`: a header that lies, as zip bombs do.
fn patch_declared_size(zip: &mut [u8], name: &str, size: u32) {
    let mut patched = 0;
    for at in 0..zip.len().saturating_sub(46) {
        // Local file header, central directory header: where the name length, name and size are.
        let (name_len_at, name_at, size_at) = match zip[at..at + 4] {
            [0x50, 0x4b, 0x03, 0x04] => (at + 26, at + 30, at + 22),
            [0x50, 0x4b, 0x01, 0x02] => (at + 28, at + 46, at + 24),
            _ => continue,
        };
        let name_len = u16::from_le_bytes([zip[name_len_at], zip[name_len_at + 1]]) as usize;
        if zip.get(name_at..name_at + name_len) == Some(name.as_bytes()) {
            zip[size_at..size_at + 4].copy_from_slice(&size.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "local and central header of {name}");
}

fn deflated_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn limit_detail(result: Result<cf_zero_downtime::package::Scan, Error>) -> String {
    match result {
        Err(e @ Error::ArchiveLimit { .. }) => e.to_string(),
        other => panic!("expected an archive limit error, got {other:?}"),
    }
}

#[test]
fn an_entry_inflating_past_its_declared_size_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.zip");
    // 16 MiB of zeros deflate to a few KB; the headers claim 100 bytes.
    let zeros = vec![0u8; 16 << 20];
    let mut bytes = deflated_zip(&[("a.txt", b"a"), ("zeros.bin", &zeros)]);
    patch_declared_size(&mut bytes, "zeros.bin", 100);
    std::fs::write(&bomb, &bytes).unwrap();
    let text = limit_detail(scan(&AppSource::Archive(bomb)));
    assert!(
        text.contains("bomb.zip' cannot be pushed: entry 'zeros.bin'")
            && text.contains("declared 100 bytes"),
        "{text}"
    );
}

#[test]
fn archives_over_the_entry_count_or_total_size_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let many = dir.path().join("many.zip");
    let names: Vec<String> = (0..11).map(|i| format!("f{i}.txt")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    std::fs::write(&many, deflated_zip(&entries)).unwrap();
    let limits = ArchiveLimits {
        max_entries: 10,
        ..ArchiveLimits::default()
    };
    let source = AppSource::Archive(many.clone());
    let text = limit_detail(scan_with_limits(&source, &ScanOptions::default(), &limits));
    assert!(
        text.ends_with("it has 11 entries, more than the limit of 10"),
        "{text}"
    );
    let limits = ArchiveLimits {
        max_total_bytes: 10,
        ..ArchiveLimits::default()
    };
    let text = limit_detail(scan_with_limits(&source, &ScanOptions::default(), &limits));
    assert!(
        text.ends_with(
            "its files declare more than 10 bytes once decompressed (at entry 'f10.txt')"
        ),
        "{text}"
    );
    // At the limits, the archive is read.
    let limits = ArchiveLimits {
        max_entries: 11,
        max_total_bytes: 11,
        ..ArchiveLimits::default()
    };
    assert_eq!(
        scan_with_limits(&source, &ScanOptions::default(), &limits)
            .unwrap()
            .entries
            .len(),
        11
    );

    // Declared sizes add up before anything is decompressed: 3 x 4 GiB - 1 > 8 GiB.
    let huge = dir.path().join("huge.zip");
    let mut bytes = deflated_zip(&[("a", b"a"), ("b", b"b"), ("c", b"c")]);
    for name in ["a", "b", "c"] {
        patch_declared_size(&mut bytes, name, u32::MAX);
    }
    std::fs::write(&huge, &bytes).unwrap();
    let text = limit_detail(scan(&AppSource::Archive(huge)));
    assert!(
        text.contains("its files declare more than 8589934592 bytes"),
        "{text}"
    );
}

#[test]
fn a_large_cfignore_in_an_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.zip");
    let big = "*.log\n".repeat(200_000);
    std::fs::write(
        &path,
        deflated_zip(&[
            ("a.txt", b"a"),
            ("b.txt", b"b"),
            (".cfignore", big.as_bytes()),
        ]),
    )
    .unwrap();
    let text = limit_detail(scan(&AppSource::Archive(path.clone())));
    assert!(
        text.ends_with(".cfignore declares 1200000 bytes, more than the limit of 1048576"),
        "{text}"
    );
    // The same .cfignore lying about its size is stopped at the limit while it is read.
    let mut bytes = deflated_zip(&[
        ("a.txt", b"a"),
        ("b.txt", b"b"),
        (".cfignore", big.as_bytes()),
    ]);
    patch_declared_size(&mut bytes, ".cfignore", 10);
    std::fs::write(&path, &bytes).unwrap();
    let text = limit_detail(scan(&AppSource::Archive(path)));
    assert!(
        text.contains("entry '.cfignore' does not decompress to its declared 10 bytes"),
        "{text}"
    );
}
