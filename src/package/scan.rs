//! Directory scanning: the walk (lexical order, symlinks never followed, `.cfignore` applied) and
//! the parallel SHA-1 fingerprinting of files. Blocking: async callers use `spawn_blocking`.
//!
//! Mirrors the cf CLI's `GatherDirectoryResources` (`actor/sharedaction/resource.go`): directories
//! get mode `0755`, files their own permission bits, symlinks their own mode and no checksum. Two
//! deliberate differences: an ignored directory with no `!` rule around is not descended into (the
//! result is the same, the walk is faster), and symlinks that dangle or point outside the app are
//! rejected here instead of after upload.
//!
//! Depends on: `walkdir`, `rayon`, [`super::archive`] (an archive source is read there),
//! [`super::hash`]. Must not: do network I/O.

use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use walkdir::WalkDir;

use super::archive::ArchiveLimits;
use super::hash::hash_file;
use super::ignore::CfIgnore;
use super::{AppSource, EntryKind, Error, FileEntry, Scan, archive};

/// Extra scan settings.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// The cf CLI trace file (`CF_TRACE` set to a path): ignored when it lies inside the app dir.
    pub trace_file: Option<PathBuf>,
}

/// Scans `source` with default options; see [`scan_with`].
///
/// # Errors
/// See [`scan_with`].
pub fn scan(source: &AppSource) -> Result<Scan, Error> {
    scan_with(source, &ScanOptions::default())
}

/// Walks a directory (or reads an archive), applies the ignore rules and fingerprints every file.
/// Blocking and CPU-heavy: call it from `spawn_blocking` in async code.
///
/// # Errors
/// [`Error::NotFound`] for a missing path, [`Error::Read`] for unreadable files or directories,
/// [`Error::UnsupportedFileType`], [`Error::NonUtf8Path`], [`Error::DanglingSymlink`],
/// [`Error::SymlinkOutsideApp`], [`Error::NoAppFiles`], and for archives
/// [`Error::InvalidArchive`], [`Error::ArchiveEntry`], [`Error::UnsafeArchiveEntry`],
/// [`Error::EmptyArchive`], [`Error::ArchiveLimit`] (over the default [`ArchiveLimits`]).
pub fn scan_with(source: &AppSource, options: &ScanOptions) -> Result<Scan, Error> {
    scan_with_limits(source, options, &ArchiveLimits::default())
}

/// As [`scan_with`], with the given bounds for an archive source (a directory source is not
/// affected).
///
/// # Errors
/// As [`scan_with`], and [`Error::ArchiveLimit`] for an archive over `limits` or whose entries do
/// not decompress to their declared sizes.
pub fn scan_with_limits(
    source: &AppSource,
    options: &ScanOptions,
    limits: &ArchiveLimits,
) -> Result<Scan, Error> {
    match source {
        AppSource::Directory(dir) => scan_directory(dir, options, limits),
        AppSource::Archive(path) => archive::scan_archive(path, limits),
    }
}

fn scan_directory(
    dir: &Path,
    options: &ScanOptions,
    limits: &ArchiveLimits,
) -> Result<Scan, Error> {
    let root = std::fs::canonicalize(dir).map_err(|e| Error::missing_or_read(dir, e))?;
    if !root.is_dir() {
        // The cf CLI reads any non-directory app path as a zip archive.
        return archive::scan_archive(dir, limits);
    }
    let cfignore_path = root.join(".cfignore");
    let cfignore = match std::fs::read(&cfignore_path) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::read(cfignore_path, e)),
    };
    let extra: Vec<String> = options
        .trace_file
        .as_deref()
        .and_then(|t| relative_inside(&root, dir, t))
        .into_iter()
        .collect();
    let ignore = CfIgnore::for_directory(cfignore.as_deref(), &extra);
    let may_prune = !ignore.has_negations();

    let mut entries = Vec::new();
    let mut walker = WalkDir::new(&root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(item) = walker.next() {
        let dent = item.map_err(|e| {
            let path = e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| root.clone());
            walk_io(&path, e)
        })?;
        let full = dent.path();
        let rel = full
            .strip_prefix(&root)
            .ok()
            .and_then(slash_path)
            .ok_or_else(|| Error::NonUtf8Path { path: full.into() })?;
        let ft = dent.file_type();
        if ignore.is_ignored(&rel) {
            if ft.is_dir() && may_prune {
                walker.skip_current_dir();
            }
            continue;
        }
        let entry = if ft.is_dir() {
            FileEntry::directory(format!("{rel}/"))
        } else if ft.is_symlink() {
            let meta = dent.metadata().map_err(|e| walk_io(full, e))?;
            let target = symlink_target(full, &rel)?;
            FileEntry {
                path: rel,
                sha1: String::new(),
                size: 0,
                mode: permissions(&meta),
                kind: EntryKind::Symlink { target },
            }
        } else if ft.is_file() {
            let meta = dent.metadata().map_err(|e| walk_io(full, e))?;
            FileEntry {
                path: rel,
                sha1: String::new(),
                size: meta.len(),
                mode: permissions(&meta),
                kind: EntryKind::File,
            }
        } else {
            return Err(Error::UnsupportedFileType {
                path: full.into(),
                kind: special_kind(&ft),
            });
        };
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(Error::NoAppFiles { path: dir.into() });
    }

    entries
        .par_iter_mut()
        .filter(|e| e.is_file())
        .try_for_each(|e| {
            let path = root.join(&e.path);
            let (sha1, size) = hash_file(&path)?;
            e.sha1 = sha1;
            e.size = size;
            Ok::<(), Error>(())
        })?;

    Ok(Scan {
        source: AppSource::Directory(dir.into()),
        entries,
        root,
        archive_index: Vec::new(),
    })
}

fn walk_io(path: &Path, e: walkdir::Error) -> Error {
    let source = e
        .into_io_error()
        .unwrap_or_else(|| std::io::Error::other("file system loop"));
    Error::read(path, source)
}

/// `path` relative to `base` with `/` separators, if every component is valid UTF-8.
fn slash_path(path: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = path.components().map(|c| c.as_os_str().to_str()).collect();
    parts.map(|p| p.join("/"))
}

/// The trace file's path relative to the app root, if it lies inside it.
fn relative_inside(root: &Path, given: &Path, trace: &Path) -> Option<String> {
    let canonical = std::fs::canonicalize(trace).ok();
    let candidates = [canonical.as_deref(), Some(trace)];
    candidates
        .into_iter()
        .flatten()
        .find_map(|t| t.strip_prefix(root).or_else(|_| t.strip_prefix(given)).ok())
        .and_then(slash_path)
        .filter(|r| !r.is_empty())
}

/// Reads a symlink and checks that it resolves to something inside the app.
fn symlink_target(full: &Path, rel: &str) -> Result<String, Error> {
    let target_path = std::fs::read_link(full).map_err(|e| Error::read(full, e))?;
    let target = target_path
        .to_str()
        .ok_or_else(|| Error::NonUtf8Path { path: full.into() })?
        .to_string();
    // Cloud Controller expands targets relative to the link's directory inside the extracted
    // package and rejects anything that leaves it; absolute targets always do.
    let mut depth: usize = rel.matches('/').count();
    let mut escapes = target_path.is_absolute();
    for component in target_path.components() {
        match component {
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => escapes = true,
            },
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    if escapes {
        return Err(Error::SymlinkOutsideApp {
            path: full.into(),
            target,
        });
    }
    match std::fs::metadata(full) {
        Ok(_) => Ok(target),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::DanglingSymlink {
            path: full.into(),
            target,
        }),
        Err(e) => Err(Error::read(full, e)),
    }
}

#[cfg(unix)]
fn permissions(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn permissions(meta: &std::fs::Metadata) -> u32 {
    // The cf CLI ORs 0700 into Windows modes (`fixMode`).
    if meta.permissions().readonly() {
        0o444 | 0o700
    } else {
        0o666 | 0o700
    }
}

#[cfg(unix)]
fn special_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_ft: &std::fs::FileType) -> &'static str {
    "special file"
}
