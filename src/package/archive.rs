//! Archive input (zip/jar/war): the entries of the archive are the app's files.
//!
//! Mirrors the cf CLI's `GatherArchiveResources`: the first entry whose name ends in `.cfignore`
//! supplies ignore lines (after the defaults), names are matched as stored (directories keep their
//! trailing `/`), files get mode `0744` and the SHA-1 of their decompressed content, directories
//! `0755`, symlinks their stored mode; fewer than two entries is an empty archive. Entry names that
//! are absolute or contain `..` are rejected (Cloud Controller would refuse them after upload).
//!
//! Depends on: `zip`, `sha1`. Must not: do network I/O.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use zip::ZipArchive;

use super::ignore::CfIgnore;
use super::scan::{DIR_MODE, hash_reader};
use super::{AppSource, EntryKind, Error, FileEntry, Scan};

/// Mode of files read from an archive (the cf CLI's `DefaultArchiveFilePermissions`).
pub(crate) const ARCHIVE_FILE_MODE: u32 = 0o744;

/// Longest symlink target read from an archive entry.
const MAX_LINK_TARGET: u64 = 4096;

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

pub(crate) fn scan_archive(path: &Path) -> Result<Scan, Error> {
    let mut zip = open(path)?;
    let cfignore = read_cfignore(path, &mut zip)?;
    let ignore = CfIgnore::for_archive(cfignore.as_deref());

    let mut entries = Vec::new();
    let mut indices = Vec::new();
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
            FileEntry {
                path,
                sha1: String::new(),
                size: 0,
                mode: DIR_MODE,
                kind: EntryKind::Directory,
            }
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
                    let mut file = zip
                        .by_index(indices[k])
                        .map_err(|e| entry_error(path, name, e))?;
                    let (sha1, size) =
                        hash_reader(&mut file).map_err(|e| entry_error(path, name, e.into()))?;
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
) -> Result<Option<String>, Error> {
    let found = (0..zip.len()).find(|&i| {
        zip.name_for_index(i)
            .and_then(Result::ok)
            .is_some_and(|n| n.ends_with(".cfignore"))
    });
    let Some(index) = found else {
        return Ok(None);
    };
    let mut file = zip
        .by_index(index)
        .map_err(|e| entry_error(path, ".cfignore", e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| entry_error(path, ".cfignore", e.into()))?;
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
