//! App bits: turns an app path (directory or zip/jar/war) into what Cloud Controller needs, uploading
//! only what the platform does not already have, in bounded memory.
//!
//! The flow mirrors `cf push` (v8):
//! 1. [`scan()`]: walk the directory (or read the archive) applying the default ignore list and
//!    `.cfignore` ([`CfIgnore`]), and fingerprint every file (SHA-1 hashed in parallel with rayon).
//! 2. [`push_bits`]: resource-match the non-empty files in chunks of [`MATCH_CHUNK_SIZE`] through
//!    [`BitsApi::match_resources`], zip what is unmatched (directories, symlinks, empty files and
//!    unknown files) into a temporary file, compressing entries in parallel, then call
//!    [`BitsApi::upload`] with the matched resources and the zip (none when everything matched).
//!
//! Depends on: `walkdir`, `regex`, `sha1`, `rayon`, `zip`, `tempfile`, `tokio` (`spawn_blocking`).
//! Must not: speak HTTP; the integrator implements [`BitsApi`] for the Cloud Controller client.

mod archive;
mod error;
mod hash;
mod ignore;
mod matching;
mod scan;
mod zip;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use archive::ArchiveLimits;
pub use error::{ApiError, Error};
pub use ignore::{CfIgnore, DEFAULT_IGNORE_LINES};
pub use matching::MATCH_CHUNK_SIZE;
pub use scan::{ScanOptions, scan, scan_with, scan_with_limits};

/// Where the app's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSource {
    /// A directory, walked with the ignore rules.
    Directory(PathBuf),
    /// A zip/jar/war archive whose entries are the app's files (the cf CLI treats any
    /// non-directory path as a zip).
    Archive(PathBuf),
}

impl AppSource {
    /// Classifies `path` the way the cf CLI does: a directory (symlinks followed) is a
    /// [`AppSource::Directory`], anything else an [`AppSource::Archive`].
    ///
    /// # Errors
    /// [`Error::NotFound`] when the path does not exist, [`Error::Read`] when it cannot be inspected.
    pub fn from_path(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Ok(AppSource::Directory(path)),
            Ok(_) => Ok(AppSource::Archive(path)),
            Err(e) => Err(Error::missing_or_read(path, e)),
        }
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        match self {
            AppSource::Directory(p) | AppSource::Archive(p) => p,
        }
    }
}

/// What kind of thing an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    Directory,
    /// A symbolic link, never followed; the zip stores the target string as the entry content.
    Symlink {
        /// The link target as written in the link.
        target: String,
    },
}

/// One file, directory or symlink of the app, as scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// App-relative path with `/` separators; directories end with `/`.
    pub path: String,
    /// Lowercase hex SHA-1 of the content for files, `""` for directories and symlinks.
    pub sha1: String,
    /// Byte size for files, 0 otherwise.
    pub size: u64,
    /// Unix permission bits (`0o644`, `0o755`...): the file's own for directory pushes, `0o744` for
    /// archive files, `0o755` for directories, the link's own (usually `0o777`) for symlinks.
    pub mode: u32,
    /// File, directory or symlink.
    pub kind: EntryKind,
}

/// Mode of every directory entry (the cf CLI's `DefaultFolderPermissions`).
const DIR_MODE: u32 = 0o755;

impl FileEntry {
    /// A directory entry; `path` ends with `/`.
    pub(crate) fn directory(path: String) -> Self {
        FileEntry {
            path,
            sha1: String::new(),
            size: 0,
            mode: DIR_MODE,
            kind: EntryKind::Directory,
        }
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }
}

/// The result of [`scan()`]: the app's entries in walk order (lexical, depth first).
#[derive(Debug, Clone)]
pub struct Scan {
    /// Where the entries came from.
    pub source: AppSource,
    /// Every entry that is not ignored, in walk order.
    pub entries: Vec<FileEntry>,
    /// For directory sources: the canonical root the entries are relative to.
    root: PathBuf,
    /// For archive sources: the index in the archive of each entry (same order as `entries`).
    archive_index: Vec<usize>,
}

impl Scan {
    /// Number of regular files.
    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| e.is_file()).count()
    }

    /// Total size of the regular files in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.is_file())
            .map(|e| e.size)
            .sum()
    }
}

/// A fingerprinted file as sent to resource matching and listed in the upload's `resources` field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// Lowercase hex SHA-1 of the content (`checksum.value`).
    pub sha1: String,
    /// Byte size (`size_in_bytes`).
    pub size: u64,
    /// App-relative path with `/` separators.
    pub path: String,
    /// Unix permission bits.
    pub mode: u32,
}

impl Resource {
    /// The `mode` as Cloud Controller expects it: octal without a leading zero (`"644"`).
    pub fn mode_string(&self) -> String {
        format!("{:o}", self.mode)
    }
}

/// Progress callback: `(bytes sent, total bytes)`.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// The two Cloud Controller calls the package layer needs, implemented by the integrator over the
/// cf client (and by fakes in tests). Used through generics only.
pub trait BitsApi: Sync {
    /// The error the implementation returns.
    type Error: std::error::Error + Send + Sync + 'static;

    /// `POST /v3/resource_matches` with at most [`MATCH_CHUNK_SIZE`] candidates; returns the
    /// subset Cloud Controller already has (matching is by SHA-1 and size).
    fn match_resources(
        &self,
        candidates: Vec<Resource>,
    ) -> impl Future<Output = Result<Vec<Resource>, Self::Error>> + Send;

    /// `POST /v3/packages/{guid}/upload`: a multipart body with the `resources` field (the matched
    /// resources, `[]` when none) and, when `zip` is `Some`, the `bits` field streamed from that file
    /// (named `package.zip`). The implementation reports `(bytes sent, total)` through `progress`.
    fn upload(
        &self,
        package_guid: &str,
        matched: Vec<Resource>,
        zip: Option<&Path>,
        progress: ProgressFn,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// What [`push_bits`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BitsSummary {
    /// Regular files in the scan.
    pub files: usize,
    /// Files Cloud Controller already had (listed in `resources`, not uploaded).
    pub matched: usize,
    /// Regular files written into the zip (unmatched and empty files).
    pub zipped_files: usize,
    /// Uncompressed content bytes of the files written into the zip.
    pub zipped_file_bytes: u64,
    /// Entries of any kind written into the zip (files, directories, symlinks).
    pub zip_entries: usize,
    /// Size of the zip in bytes (0 when there was none).
    pub zip_bytes: u64,
    /// The highest "bytes sent" the [`BitsApi::upload`] implementation reported through progress.
    pub uploaded_bytes: u64,
}

/// Uploads the app's bits to package `package_guid`: resource matching in chunks, a streamed zip of
/// the unmatched entries built on blocking threads, then one upload.
///
/// # Errors
/// [`Error::ResourceMatch`] / [`Error::Upload`] wrap the API's errors; zipping errors
/// ([`Error::Read`], [`Error::FileChanged`], [`Error::Zip`], [`Error::TempFile`]) happen before
/// any upload call.
pub async fn push_bits<A: BitsApi>(
    api: &A,
    package_guid: &str,
    scan: &Scan,
    progress: ProgressFn,
) -> Result<BitsSummary, Error> {
    let candidates = matching::candidates(&scan.entries);
    let chunks = candidates.len().div_ceil(MATCH_CHUNK_SIZE);
    let mut known = std::collections::HashSet::new();
    for (n, chunk) in candidates.chunks(MATCH_CHUNK_SIZE).enumerate() {
        let found =
            api.match_resources(chunk.to_vec())
                .await
                .map_err(|e| Error::ResourceMatch {
                    chunk: n + 1,
                    chunks,
                    source: Box::new(e),
                })?;
        known.extend(found.into_iter().map(|r| (r.sha1, r.size)));
    }
    let split = matching::split(&scan.entries, &known);
    let mut summary = BitsSummary {
        files: scan.file_count(),
        matched: split.matched.len(),
        ..BitsSummary::default()
    };

    let sent = Arc::new(AtomicU64::new(0));
    let observed: ProgressFn = {
        let sent = Arc::clone(&sent);
        Arc::new(move |done, total| {
            sent.fetch_max(done, Ordering::Relaxed);
            progress(done, total);
        })
    };

    if split.unmatched.is_empty() {
        api.upload(package_guid, split.matched, None, observed)
            .await
            .map_err(|e| upload_error(package_guid, e))?;
    } else {
        let job = zip::ZipJob::new(scan, &split.unmatched);
        let built = tokio::task::spawn_blocking(move || job.run())
            .await
            .map_err(|source| Error::Task { source })??;
        summary.zipped_files = built.files;
        summary.zipped_file_bytes = built.file_bytes;
        summary.zip_entries = built.entries;
        summary.zip_bytes = built.bytes;
        api.upload(
            package_guid,
            split.matched,
            Some(built.file.path()),
            observed,
        )
        .await
        .map_err(|e| upload_error(package_guid, e))?;
        // The temporary zip is removed when `built.file` drops here.
    }
    summary.uploaded_bytes = sent.load(Ordering::Relaxed);
    Ok(summary)
}

fn upload_error<E: std::error::Error + Send + Sync + 'static>(guid: &str, e: E) -> Error {
    Error::Upload {
        package_guid: guid.to_string(),
        source: Box::new(e),
    }
}
