//! Packaging benchmark: scan + zip of a generated tree against `zip -q -r`, single- vs
//! multi-threaded compression, peak RSS while packaging a large tree, and bytes uploaded on a
//! second push of an unchanged tree. Figures are recorded in docs/package-bench.md.
//!
//! Run: `cargo bench --bench package`. Sizes: `PACKAGE_BENCH_FILES` (default 10000),
//! `PACKAGE_BENCH_MB` (default 200), `PACKAGE_BENCH_RSS_MB` (default 256, the recorded figure uses 1024; 0 skips the RSS run),
//! `PACKAGE_BENCH_DIR` (where trees are generated; default the system temp dir),
//! `PACKAGE_BENCH_KEEP` (set: keep the generated trees).
//!
//! Each packaging run happens in a child process (this binary with `--package-child <dir>`) so
//! its peak RSS (`VmHWM`) covers packaging only. The large tree's child also uploads: it
//! matches resources and streams the zip with the plugin's own Cloud Controller client
//! (`cf::Client`, multipart upload from the file) to a sink on 127.0.0.1 that this process
//! serves and that counts and drops the bytes, so its peak RSS covers packing and uploading.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use std::sync::atomic::{AtomicU64, Ordering};

use cf_zero_downtime::cf;
use cf_zero_downtime::package::{AppSource, BitsApi, ProgressFn, Resource, push_bits, scan};
use futures::StreamExt;
use secrecy::SecretString;
use sha1::{Digest, Sha1};

const MB: u64 = 1024 * 1024;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------------ tree generation

/// Deterministic xorshift64* generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const WORDS: &[&str] = &[
    "function", "return", "const", "let", "var", "if", "else", "for", "while", "class", "import",
    "export", "default", "async", "await", "new", "this", "null", "true", "false", "string",
    "number", "object", "array", "map", "filter", "reduce", "value", "key", "index", "length",
    "request", "response", "error", "config", "server", "client", "route", "handler", "module",
    "{", "}", "(", ")", ";", "=", "=>", "\n", "\n    ", ".", ",", "0", "1", "42", "\"id\"", "user",
];

/// Writes `size` bytes: source-like text (compressible) or random bytes (like images/jars).
fn write_content(path: &Path, size: u64, text: bool, rng: &mut Rng) {
    let mut out = BufWriter::new(File::create(path).expect("create bench file"));
    let mut written = 0u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    while written < size {
        buf.clear();
        let want = (size - written).min(64 * 1024) as usize;
        if text {
            while buf.len() < want {
                let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
                buf.extend_from_slice(w.as_bytes());
                buf.push(b' ');
            }
            buf.truncate(want);
        } else {
            while buf.len() < want {
                buf.extend_from_slice(&rng.next().to_le_bytes());
            }
            buf.truncate(want);
        }
        out.write_all(&buf).expect("write bench file");
        written += want as u64;
    }
    out.flush().expect("flush bench file");
}

/// A tree of `files` files totalling about `total` bytes (70% text, 30% random), 100 per
/// directory, plus `large` files of `large_size` bytes.
fn generate(root: &Path, files: u64, total: u64, large: u64, large_size: u64, seed: u64) -> u64 {
    let mut rng = Rng(seed | 1);
    let spread = total.saturating_sub(large * large_size);
    let avg = spread / files.max(1);
    let mut bytes = 0;
    for i in 0..files {
        let dir = root.join(format!("d{:03}/s{}", i / 1000, (i / 100) % 10));
        std::fs::create_dir_all(&dir).expect("create bench dir");
        let u = rng.unit();
        let size = ((3.0 * avg as f64) * u * u) as u64;
        let text = rng.next() % 10 < 7;
        let name = if text {
            format!("f{i}.js")
        } else {
            format!("f{i}.png")
        };
        write_content(&dir.join(name), size, text, &mut rng);
        bytes += size;
    }
    for i in 0..large {
        write_content(
            &root.join(format!("large{i}.bin")),
            large_size,
            i % 2 == 0,
            &mut rng,
        );
        bytes += large_size;
    }
    bytes
}

// ------------------------------------------------------------------ fake API

#[derive(Debug)]
struct NoError;

impl std::fmt::Display for NoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never happens")
    }
}

impl std::error::Error for NoError {}

/// Remembers the SHA-1 of every file it receives, like Cloud Controller's resource cache.
#[derive(Default)]
struct CachingApi {
    known: Mutex<HashSet<(String, u64)>>,
    /// Hash the received files into `known` (off for timing runs: it is the server's work).
    remember: bool,
}

impl BitsApi for CachingApi {
    type Error = NoError;

    async fn match_resources(&self, candidates: Vec<Resource>) -> Result<Vec<Resource>, NoError> {
        let known = self.known.lock().map_err(|_| NoError)?;
        Ok(candidates
            .into_iter()
            .filter(|r| known.contains(&(r.sha1.clone(), r.size)))
            .collect())
    }

    async fn upload(
        &self,
        _guid: &str,
        _matched: Vec<Resource>,
        zip: Option<&Path>,
        progress: ProgressFn,
    ) -> Result<(), NoError> {
        let Some(path) = zip else { return Ok(()) };
        // "Send" the file in 64 KiB pieces, as a streaming upload would.
        let total = std::fs::metadata(path).map_err(|_| NoError)?.len();
        let mut file = File::open(path).map_err(|_| NoError)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0;
        loop {
            let n = file.read(&mut buf).map_err(|_| NoError)?;
            if n == 0 {
                break;
            }
            sent += n as u64;
            progress(sent, total);
        }
        if !self.remember {
            return Ok(());
        }
        // Cache the files it received.
        let mut archive =
            zip::ZipArchive::new(File::open(path).map_err(|_| NoError)?).map_err(|_| NoError)?;
        let mut known = self.known.lock().map_err(|_| NoError)?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(|_| NoError)?;
            if !entry.is_file() {
                continue;
            }
            let mut hasher = Sha1::new();
            let mut size = 0u64;
            loop {
                let n = entry.read(&mut buf).map_err(|_| NoError)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            known.insert((hex::encode(hasher.finalize()), size));
        }
        Ok(())
    }
}

/// Uploads through the plugin's Cloud Controller client, as a push does.
struct HttpApi {
    client: cf::Client,
}

impl HttpApi {
    fn new(url: &str) -> Self {
        let token = Arc::new(cf::StaticToken(SecretString::from("bench-token")));
        HttpApi {
            client: cf::Client::new(cf::ClientConfig::new(url, token)).expect("client"),
        }
    }
}

/// An error of the client, shown as text.
#[derive(Debug)]
struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

impl BitsApi for HttpApi {
    type Error = HttpError;

    async fn match_resources(&self, candidates: Vec<Resource>) -> Result<Vec<Resource>, HttpError> {
        let asked: Vec<cf::Resource> = candidates
            .iter()
            .map(|r| cf::Resource::new(r.path.clone(), r.sha1.clone(), r.size, r.mode))
            .collect();
        let found = self
            .client
            .match_resources(&asked)
            .await
            .map_err(|e| HttpError(e.to_string()))?;
        // The sink knows no file: a first push.
        assert!(found.is_empty(), "the sink matched {} files", found.len());
        Ok(Vec::new())
    }

    async fn upload(
        &self,
        guid: &str,
        _matched: Vec<Resource>,
        zip: Option<&Path>,
        progress: ProgressFn,
    ) -> Result<(), HttpError> {
        self.client
            .upload_package_bits(&cf::PackageGuid::new(guid), &[], zip, move |sent, total| {
                progress(sent, total)
            })
            .await
            .map_err(|e| HttpError(e.to_string()))?;
        Ok(())
    }
}

/// Serves on 127.0.0.1 (in a thread of this process) what the upload needs: an empty resource
/// match and a package upload whose body is counted and dropped. Returns its URL and the count
/// of upload body bytes received.
fn start_sink() -> (String, Arc<AtomicU64>) {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::{Path as UrlPath, State};
    use axum::routing::post;

    let received = Arc::new(AtomicU64::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the sink");
    listener.set_nonblocking(true).expect("nonblocking sink");
    let addr = listener.local_addr().expect("sink address");
    let count = Arc::clone(&received);
    std::thread::spawn(move || {
        let rt = runtime();
        rt.block_on(async move {
            let app = Router::new()
                .route(
                    "/v3/resource_matches",
                    post(|| async { axum::Json(serde_json::json!({ "resources": [] })) }),
                )
                .route(
                    "/v3/packages/{guid}/upload",
                    post(
                        |State(count): State<Arc<AtomicU64>>,
                         UrlPath(guid): UrlPath<String>,
                         body: Body| async move {
                            let mut stream = body.into_data_stream();
                            while let Some(chunk) = stream.next().await {
                                let Ok(chunk) = chunk else { break };
                                count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            }
                            axum::Json(serde_json::json!({
                                "guid": guid,
                                "type": "bits",
                                "state": "PROCESSING_UPLOAD",
                            }))
                        },
                    ),
                )
                .with_state(count);
            let listener = tokio::net::TcpListener::from_std(listener).expect("sink listener");
            axum::serve(listener, app).await.expect("sink serves");
        });
    });
    (format!("http://{addr}"), received)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) in ms from `/proc/<pid>/stat`: this process's own (`children =
/// false`) or that of its waited-for children. Assumes the usual 100 clock ticks per second.
fn cpu_ms_from_stat(stat: &str, children: bool) -> u64 {
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let (a, b) = if children { (13, 14) } else { (11, 12) };
    (fields.get(a).copied().unwrap_or(0) + fields.get(b).copied().unwrap_or(0)) * 10
}

// ------------------------------------------------------------------ child: one packaging run

/// Scans and zips `dir` (first push against an empty cache), prints timings and peak RSS.
/// With `upload_to`, the zip is uploaded there over HTTP with the plugin's client; without, it
/// is read back locally in upload-sized pieces.
fn package_child(dir: &Path, upload_to: Option<&str>) {
    let rt = runtime();
    let t0 = Instant::now();
    let s = scan(&AppSource::Directory(dir.into())).expect("scan");
    let scan_ms = t0.elapsed().as_millis();
    let t1 = Instant::now();
    let summary = match upload_to {
        Some(url) => rt
            .block_on(push_bits(
                &HttpApi::new(url),
                "bench",
                &s,
                Arc::new(|_, _| {}),
            ))
            .map_err(|e| e.to_string()),
        None => rt
            .block_on(push_bits(
                &CachingApi::default(),
                "bench",
                &s,
                Arc::new(|_, _| {}),
            ))
            .map_err(|e| e.to_string()),
    }
    .expect("push_bits");
    let push_ms = t1.elapsed().as_millis();
    let cpu_ms = cpu_ms_from_stat(
        &std::fs::read_to_string("/proc/self/stat").unwrap_or_default(),
        false,
    );
    println!(
        "scan_ms={scan_ms} push_ms={push_ms} cpu_ms={cpu_ms} zip_bytes={} files={} vmhwm_kb={}",
        summary.zip_bytes,
        summary.files,
        vm_hwm_kb()
    );
}

#[derive(Debug, Default)]
struct ChildRun {
    scan_ms: u64,
    push_ms: u64,
    cpu_ms: u64,
    zip_bytes: u64,
    files: u64,
    vmhwm_kb: u64,
}

fn run_child(dir: &Path, threads: Option<usize>, upload_to: Option<&str>) -> ChildRun {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.arg("--package-child").arg(dir);
    if let Some(url) = upload_to {
        cmd.arg("--upload-to").arg(url);
    }
    if let Some(n) = threads {
        cmd.env("RAYON_NUM_THREADS", n.to_string());
    }
    let out = cmd.output().expect("run child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut run = ChildRun::default();
    for kv in text.split_whitespace() {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let v: u64 = v.parse().unwrap_or(0);
        match k {
            "scan_ms" => run.scan_ms = v,
            "push_ms" => run.push_ms = v,
            "cpu_ms" => run.cpu_ms = v,
            "zip_bytes" => run.zip_bytes = v,
            "files" => run.files = v,
            "vmhwm_kb" => run.vmhwm_kb = v,
            _ => {}
        }
    }
    run
}

// ------------------------------------------------------------------ main

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--package-child") {
        let dir = args
            .get(pos + 1)
            .expect("--package-child needs a directory");
        let upload_to = args
            .iter()
            .position(|a| a == "--upload-to")
            .and_then(|i| args.get(i + 1));
        package_child(Path::new(dir), upload_to.map(String::as_str));
        return;
    }

    let files = env_u64("PACKAGE_BENCH_FILES", 10_000);
    let mb = env_u64("PACKAGE_BENCH_MB", 200);
    let rss_mb = env_u64("PACKAGE_BENCH_RSS_MB", 256);
    let base: PathBuf = std::env::var_os("PACKAGE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("cf-zdt-bench-")
        .tempdir_in(&base)
        .expect("bench temp dir");
    let work_path = work.path().to_path_buf();
    if std::env::var_os("PACKAGE_BENCH_KEEP").is_some() {
        println!("keeping {}", work.keep().display());
    }
    let work_dir = work_path.as_path();
    println!(
        "# package bench ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.trim());
    }

    // 1. Scan + zip of FILES files / MB megabytes vs `zip -q -r`.
    let tree = work_dir.join("tree");
    let t = Instant::now();
    let bytes = generate(&tree, files, mb * MB, 0, 0, 42);
    println!(
        "generated {files} files, {:.1} MB in {:.1}s",
        bytes as f64 / MB as f64,
        t.elapsed().as_secs_f64()
    );

    let ours = run_child(&tree, None, None);
    let single = run_child(&tree, Some(1), None);
    let zip_out = work_dir.join("info-zip.zip");
    // Through a shell so its children's CPU time can be read from its /proc stat.
    let t = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg("zip -q -r \"$1\" . && cat /proc/$$/stat")
        .arg("sh")
        .arg(&zip_out)
        .current_dir(&tree)
        .output();
    let zip_ms = t.elapsed().as_millis();
    let status = out.as_ref().map(|o| o.status);
    let zip_cpu_ms = out
        .as_ref()
        .map(|o| cpu_ms_from_stat(&String::from_utf8_lossy(&o.stdout), true))
        .unwrap_or(0);
    let zip_size = std::fs::metadata(&zip_out).map(|m| m.len()).unwrap_or(0);
    let zip_ok = status.map(|s| s.success()).unwrap_or(false);
    let _ = std::fs::remove_file(&zip_out);

    println!();
    println!(
        "| run ({files} files, {mb} MB) | scan ms | zip ms | total ms (wall) | CPU ms | zip MB | peak RSS MB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("ours, rayon default threads", &ours),
        ("ours, RAYON_NUM_THREADS=1", &single),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {:.1} | {:.1} |",
            r.scan_ms,
            r.push_ms,
            r.scan_ms + r.push_ms,
            r.cpu_ms,
            r.zip_bytes as f64 / MB as f64,
            r.vmhwm_kb as f64 / 1024.0
        );
    }
    if zip_ok {
        println!(
            "| `zip -q -r` | - | - | {zip_ms} | {zip_cpu_ms} | {:.1} | - |",
            zip_size as f64 / MB as f64
        );
    } else {
        println!("| `zip -q -r` | not available | | | | |");
    }

    // 2. Second push of the unchanged tree against a caching fake.
    let rt = runtime();
    let api = CachingApi {
        remember: true,
        ..CachingApi::default()
    };
    let s = scan(&AppSource::Directory(tree.clone())).expect("scan");
    let first = rt
        .block_on(push_bits(&api, "p1", &s, Arc::new(|_, _| {})))
        .expect("first push");
    let s = scan(&AppSource::Directory(tree.clone())).expect("rescan");
    let second = rt
        .block_on(push_bits(&api, "p2", &s, Arc::new(|_, _| {})))
        .expect("second push");
    println!();
    println!(
        "| push | matched files | zipped files | zipped file bytes | zip entries | uploaded bytes |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r) in [("first", first), ("second (unchanged)", second)] {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            r.matched, r.zipped_files, r.zipped_file_bytes, r.zip_entries, r.uploaded_bytes
        );
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&tree);

    // 3. Peak RSS while packaging a large tree.
    if rss_mb > 0 {
        let big = work_dir.join("big");
        let large = 4;
        let large_size = (rss_mb * MB / 16).max(MB);
        let small_files = (rss_mb * 3).max(100);
        let t = Instant::now();
        let bytes = generate(&big, small_files, rss_mb * MB, large, large_size, 7);
        println!();
        println!(
            "generated {} files ({large} of {} MB), {:.1} MB in {:.1}s",
            small_files + large,
            large_size / MB,
            bytes as f64 / MB as f64,
            t.elapsed().as_secs_f64()
        );
        let (url, received) = start_sink();
        let r = run_child(&big, None, Some(&url));
        let uploaded = received.load(Ordering::Relaxed);
        assert!(
            uploaded >= r.zip_bytes,
            "the sink received {uploaded} bytes of a {} byte zip",
            r.zip_bytes
        );
        println!();
        println!(
            "| large tree | files | MB | scan ms | zip + upload ms | CPU ms | zip MB | uploaded MB (HTTP body) | peak RSS (VmHWM) MB |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {rss_mb} MB | {} | {:.0} | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
            r.files,
            bytes as f64 / MB as f64,
            r.scan_ms,
            r.push_ms,
            r.cpu_ms,
            r.zip_bytes as f64 / MB as f64,
            uploaded as f64 / MB as f64,
            r.vmhwm_kb as f64 / 1024.0
        );
    }
}
