//! Archive input (zip/jar/war): the entries of the archive are the app's files.
//!
//! Mirrors the cf CLI's `GatherArchiveResources`: the first entry whose name ends in `.cfignore`
//! supplies ignore lines (after the defaults), names are matched as stored (directories keep their
//! trailing `/`), files get mode `0744` and the SHA-1 of their decompressed content, directories
//! `0755`, symlinks their stored mode; fewer than two entries is an empty archive. Entry names that
//! are absolute or contain `..` are rejected (Cloud Controller would refuse them after upload).
//!
//! Bounded input ([`ArchiveLimits`]): the entry count, the sum of the declared sizes of the entries
//! and the size of the `.cfignore` are capped before anything is decompressed, and every entry is
//! read through a cap at its declared size: an entry that inflates to more (a zip bomb lying in
//! its headers) or to less is an error as soon as it is seen, never a full read.
//!
//! Depends on: `zip`, [`super::hash`]. Must not: do network I/O.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use zip::ZipArchive;

use super::hash::hash_reader;
use super::ignore::CfIgnore;
use super::{AppSource, EntryKind, Error, FileEntry, Scan};

/// Mode of files read from an archive (the cf CLI's `DefaultArchiveFilePermissions`).
pub(crate) const ARCHIVE_FILE_MODE: u32 = 0o744;

/// Longest symlink target read from an archive entry.
const MAX_LINK_TARGET: u64 = 4096;

/// Bounds on an archive given as the app path; over any of them the push stops with
/// [`Error::ArchiveLimit`] before anything is uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Most entries (files, directories, symlinks) in the archive.
    pub max_entries: usize,
    /// Most bytes all entries may declare once decompressed, together.
    pub max_total_bytes: u64,
    /// Largest `.cfignore` read from the archive.
    pub max_cfignore_bytes: u64,
}

impl Default for ArchiveLimits {
    /// 500,000 entries, 8 GiB decompressed (Cloud Controller's default package limit is 1 GiB
    /// compressed; deflate rarely gains more than 8x on app files), a 1 MiB `.cfignore`.
    fn default() -> Self {
        Self {
            max_entries: 500_000,
            max_total_bytes: 8 << 30,
            max_cfignore_bytes: 1 << 20,
        }
    }
}

fn limit_error(archive: &Path, detail: String) -> Error {
    Error::ArchiveLimit {
        archive: archive.into(),
        detail,
    }
}

/// A failed read of an entry: content that does not match the entry's header (more bytes than
/// declared, a bad checksum) is reported against the declared size; anything else as it is.
fn read_error(archive: &Path, entry: &str, declared: u64, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        limit_error(
            archive,
            format!("entry '{entry}' does not decompress to its declared {declared} bytes ({e})"),
        )
    } else {
        entry_error(archive, entry, e.into())
    }
}

/// Opens an archive for reading.
pub(crate) fn open(path: &Path) -> Result<ZipArchive<BufReader<File>>, Error> {
    let file = File::open(path).map_err(|e| Error::missing_or_read(path, e))?;
    ZipArchive::new(BufReader::new(file)).map_err(|source| Error::InvalidArchive {
        path: path.into(),
        source,
    })
}

fn entry_error(archive: &Path, entry: &str, source: zip::result::ZipError) -> Error {
    Error::ArchiveEntry {
        archive: archive.into(),
        entry: entry.into(),
        source,
    }
}

pub(crate) fn scan_archive(path: &Path, limits: &ArchiveLimits) -> Result<Scan, Error> {
    let mut zip = open(path)?;
    if zip.len() > limits.max_entries {
        return Err(limit_error(
            path,
            format!(
                "it has {} entries, more than the limit of {}",
                zip.len(),
                limits.max_entries
            ),
        ));
    }
    let cfignore = read_cfignore(path, &mut zip, limits.max_cfignore_bytes)?;
    let ignore = CfIgnore::for_archive(cfignore.as_deref());

    let mut entries = Vec::new();
    let mut indices = Vec::new();
    let mut declared_total = 0u64;
    for index in 0..zip.len() {
        let mut file = zip
            .by_index(index)
            .map_err(|e| entry_error(path, &format!("#{index}"), e))?;
        let name = file
            .name()
            .map_err(|e| entry_error(path, &format!("#{index}"), e))?
            .into_owned();
        if ignore.is_ignored(&name) {
            continue;
        }
        if !is_safe_name(&name) {
            return Err(Error::UnsafeArchiveEntry {
                archive: path.into(),
                entry: name,
            });
        }
        let entry = if file.is_dir() {
            let path = if name.ends_with('/') {
                name
            } else {
                format!("{name}/")
            };
            FileEntry::directory(path)
        } else if file.is_symlink() {
            let mode = file.unix_mode().map_or(0o777, |m| m & 0o7777);
            let mut target = String::new();
            (&mut file)
                .take(MAX_LINK_TARGET)
                .read_to_string(&mut target)
                .map_err(|e| entry_error(path, &name, e.into()))?;
            FileEntry {
                path: name,
                sha1: String::new(),
                size: 0,
                mode,
                kind: EntryKind::Symlink { target },
            }
        } else {
            declared_total = declared_total.saturating_add(file.size());
            if declared_total > limits.max_total_bytes {
                return Err(limit_error(
                    path,
                    format!(
                        "its files declare more than {} bytes once decompressed (at entry '{name}')",
                        limits.max_total_bytes
                    ),
                ));
            }
            // Hashed below, in parallel.
            FileEntry {
                path: name,
                sha1: String::new(),
                size: file.size(),
                mode: ARCHIVE_FILE_MODE,
                kind: EntryKind::File,
            }
        };
        entries.push(entry);
        indices.push(index);
    }
    if entries.len() < 2 {
        return Err(Error::EmptyArchive { path: path.into() });
    }
    hash_files(path, &mut entries, &indices)?;
    Ok(Scan {
        source: AppSource::Archive(path.into()),
        entries,
        root: PathBuf::new(),
        archive_index: indices,
    })
}

/// SHA-1 and size of the decompressed content of every file entry, computed in parallel: each
/// rayon task opens its own reader on the archive and hashes a contiguous run of entries.
fn hash_files(path: &Path, entries: &mut [FileEntry], indices: &[usize]) -> Result<(), Error> {
    let files: Vec<usize> = (0..entries.len())
        .filter(|&k| entries[k].is_file())
        .collect();
    let per_task = files
        .len()
        .div_ceil(rayon::current_num_threads().saturating_mul(4))
        .max(1);
    let hashed: Vec<Vec<(usize, String, u64)>> = files
        .par_chunks(per_task)
        .map(|run| {
            let mut zip = open(path)?;
            run.iter()
                .map(|&k| {
                    let name = &entries[k].path;
                    let declared = entries[k].size;
                    let file = zip
                        .by_index(indices[k])
                        .map_err(|e| entry_error(path, name, e))?;
                    // One byte past the declared size is enough to see a lying header (the zip
                    // reader also stops there, with an InvalidData error).
                    let (sha1, size) = hash_reader(&mut file.take(declared.saturating_add(1)))
                        .map_err(|e| read_error(path, name, declared, e))?;
                    if size != declared {
                        return Err(limit_error(
                            path,
                            format!(
                                "entry '{name}' declares {declared} bytes but decompresses to {}",
                                if size > declared {
                                    "more".to_string()
                                } else {
                                    size.to_string()
                                }
                            ),
                        ));
                    }
                    Ok((k, sha1, size))
                })
                .collect::<Result<Vec<_>, Error>>()
        })
        .collect::<Result<_, Error>>()?;
    for (k, sha1, size) in hashed.into_iter().flatten() {
        entries[k].sha1 = sha1;
        entries[k].size = size;
    }
    Ok(())
}

/// The content of the first entry whose name ends in `.cfignore`, in any directory (cf CLI rule).
fn read_cfignore(
    path: &Path,
    zip: &mut ZipArchive<BufReader<File>>,
    max_bytes: u64,
) -> Result<Option<String>, Error> {
    let found = (0..zip.len()).find(|&i| {
        zip.name_for_index(i)
            .and_then(Result::ok)
            .is_some_and(|n| n.ends_with(".cfignore"))
    });
    let Some(index) = found else {
        return Ok(None);
    };
    let file = zip
        .by_index(index)
        .map_err(|e| entry_error(path, ".cfignore", e))?;
    let declared = file.size();
    if declared > max_bytes {
        return Err(limit_error(
            path,
            format!(".cfignore declares {declared} bytes, more than the limit of {max_bytes}"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, ".cfignore", declared, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(limit_error(
            path,
            format!(".cfignore decompresses to more than the limit of {max_bytes} bytes"),
        ));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Relative (no leading `/`, no drive letter) and without `..` components.
fn is_safe_name(name: &str) -> bool {
    let drive_letter = name.as_bytes().get(1) == Some(&b':');
    !(name.is_empty()
        || name.starts_with('/')
        || drive_letter
        || name.split('/').any(|part| part == ".."))
}

#[cfg(test)]
mod tests {
    use super::is_safe_name;

    #[test]
    fn unsafe_names_are_detected() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "C:/x", ""] {
            assert!(!is_safe_name(bad), "{bad}");
        }
        for good in ["a", "a/b/", "META-INF/MANIFEST.MF", "a..b", "x/.../y"] {
            assert!(is_safe_name(good), "{good}");
        }
    }
}
