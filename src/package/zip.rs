//! The upload zip: the unmatched entries, in walk order, streamed to a temporary file.
//!
//! Layout as the cf CLI writes it (`ZipDirectoryResources` / `ZipArchiveResources`): entry names are
//! the app-relative paths, directories end in `/`, files are deflated with their unix permission bits
//! (`0744` for archive sources), symlinks store their target string as content. Directories carry
//! the directory type bit and symlink entries are stored rather than deflated (the zip crate's
//! conventions; Go's writer deflates the target and marks 0755 directories as regular files — both
//! read back the same). Every file's SHA-1 and size are recomputed while it is compressed and
//! compared with the scan: a file that changed since is an error, never a corrupt upload.
//!
//! Parallelism and memory: entries are cut into batches of at most [`BATCH_BYTES`] of input; the
//! small files of a batch are read and deflated in parallel on the rayon pool into memory
//! ([`zip::write::ZipFileBuilder`]), while a writer thread appends the previous batch to the file
//! verbatim. Files above [`SMALL_FILE_MAX`] are deflated by a rayon worker into a one-entry spool
//! zip on disk, which the writer copies over raw (so large files also compress in parallel; for
//! archive sources, whose entries come from one reader, the writer streams large entries itself).
//! At most three batches exist at once (being compressed, queued, being written), so memory stays
//! bounded by a few tens of MB whatever the app size.
//!
//! Depends on: `zip`, `rayon`, `sha1`, `tempfile`. Blocking: run through `spawn_blocking`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::SystemTime;

use rayon::prelude::*;
use tempfile::NamedTempFile;
use zip::write::{PreparedZipFile, SimpleFileOptions, ZipFileBuilder};
use zip::{CompressionMethod, DateTime, System, ZipArchive, ZipWriter};

use super::archive;
use super::hash::hash_through;
use super::{AppSource, EntryKind, Error, FileEntry, Scan};

/// Files up to this size are compressed in memory on the rayon pool; larger ones are streamed.
const SMALL_FILE_MAX: u64 = 2 * 1024 * 1024;
/// Input bytes per batch.
const BATCH_BYTES: u64 = 8 * 1024 * 1024;
/// Entries per batch (bounds per-entry overhead for trees of tiny files).
const BATCH_ENTRIES: usize = 1024;
/// Buffer size for reading and writing zip files.
const COPY_BUFFER: usize = 64 * 1024;

/// Where entry content is read from.
#[derive(Debug, Clone)]
enum Source {
    Directory(PathBuf),
    Archive(PathBuf),
}

/// One entry to write, with its index in the source archive (archives only).
#[derive(Debug, Clone)]
struct Item {
    entry: FileEntry,
    archive_index: usize,
}

/// Everything the blocking zip task needs, owned.
#[derive(Debug)]
pub(crate) struct ZipJob {
    source: Source,
    items: Vec<Item>,
}

/// The finished temporary zip.
#[derive(Debug)]
pub(crate) struct BuiltZip {
    /// The temporary file; removed on drop.
    pub file: NamedTempFile,
    /// Its size in bytes.
    pub bytes: u64,
    /// Regular files written.
    pub files: usize,
    /// Uncompressed bytes of those files.
    pub file_bytes: u64,
    /// Entries of any kind written.
    pub entries: usize,
}

impl ZipJob {
    /// The entries of `scan` at `unmatched` (indices), in that order.
    pub(crate) fn new(scan: &Scan, unmatched: &[usize]) -> Self {
        let source = match &scan.source {
            AppSource::Directory(_) => Source::Directory(scan.root.clone()),
            AppSource::Archive(p) => Source::Archive(p.clone()),
        };
        let items = unmatched
            .iter()
            .filter_map(|&i| {
                let entry = scan.entries.get(i)?.clone();
                let archive_index = scan.archive_index.get(i).copied().unwrap_or(0);
                Some(Item {
                    entry,
                    archive_index,
                })
            })
            .collect();
        ZipJob { source, items }
    }

    /// Writes the zip to a new temporary file.
    pub(crate) fn run(self) -> Result<BuiltZip, Error> {
        let (file, out) = temp_zip("cf-zero-downtime-")?;
        let stats = write_zip(&self.source, &self.items, out)?;
        Ok(BuiltZip {
            file,
            bytes: stats.bytes,
            files: stats.files,
            file_bytes: stats.file_bytes,
            entries: stats.entries,
        })
    }
}

#[derive(Debug, Default)]
struct Stats {
    bytes: u64,
    files: usize,
    file_bytes: u64,
    entries: usize,
}

/// An entry ready for the writer thread.
enum Ready {
    /// A small file, already deflated in memory.
    Prepared(usize, PreparedZipFile),
    /// A large file, already deflated into a one-entry spool zip on disk; copied raw.
    Spooled(usize, NamedTempFile),
    /// A directory, symlink or (archive sources) large file the writer handles itself.
    Direct(usize),
}

fn is_small_file(e: &FileEntry) -> bool {
    e.kind == EntryKind::File && e.size <= SMALL_FILE_MAX
}

/// Cuts items into consecutive batches bounded by bytes and entry count. A large file counts as
/// [`SMALL_FILE_MAX`] bytes: it is compressed to a spool file on disk, not into memory, so several
/// can compress in parallel.
fn batches(items: &[Item]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, item) in items.iter().enumerate() {
        bytes += item.entry.size.min(SMALL_FILE_MAX);
        if bytes >= BATCH_BYTES || i + 1 - start >= BATCH_ENTRIES {
            out.push(start..i + 1);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < items.len() {
        out.push(start..items.len());
    }
    out
}

fn write_zip(source: &Source, items: &[Item], out: File) -> Result<Stats, Error> {
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Vec<Ready>>(1);
        let writer = scope.spawn(move || write_entries(source, items, rx, out));
        let mut archive = None;
        let mut prepared = Ok(());
        for range in batches(items) {
            match prepare_batch(source, items, range, &mut archive) {
                Ok(ready) => {
                    if tx.send(ready).is_err() {
                        // The writer stopped on an error; it is reported below.
                        break;
                    }
                }
                Err(e) => {
                    prepared = Err(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.join().unwrap_or_else(|_| {
            Err(Error::TempFile {
                source: std::io::Error::other("the zip writer thread panicked"),
            })
        });
        prepared.and(written)
    })
}

/// Compresses the small files of a batch in parallel.
fn prepare_batch(
    source: &Source,
    items: &[Item],
    range: std::ops::Range<usize>,
    archive: &mut Option<ZipArchive<BufReader<File>>>,
) -> Result<Vec<Ready>, Error> {
    match source {
        Source::Directory(root) => range
            .into_par_iter()
            .map(|i| {
                let entry = &items[i].entry;
                if entry.kind != EntryKind::File {
                    return Ok(Ready::Direct(i));
                }
                if !is_small_file(entry) {
                    return spool_file(root, i, entry);
                }
                let path = root.join(&entry.path);
                let mut file = File::open(&path).map_err(|e| Error::read(&path, e))?;
                let mtime = file.metadata().ok().and_then(|m| m.modified().ok());
                let options = file_options(entry.mode, mtime.and_then(dos_time));
                let mut builder =
                    ZipFileBuilder::new(&entry.path, options).map_err(|e| zip_error(entry, e))?;
                copy_checked(&mut file, &mut builder, entry, &path)?;
                let done = builder.finish().map_err(|e| zip_error(entry, e))?;
                Ok(Ready::Prepared(i, done))
            })
            .collect(),
        Source::Archive(path) => {
            if archive.is_none() {
                *archive = Some(archive::open(path)?);
            }
            let Some(zip) = archive.as_mut() else {
                return Err(Error::NotFound { path: path.clone() });
            };
            // Decompress sequentially (one reader), deflate in parallel.
            let mut loaded = Vec::with_capacity(range.len());
            for i in range {
                let item = &items[i];
                if !is_small_file(&item.entry) {
                    loaded.push((i, None));
                    continue;
                }
                let mut file = zip
                    .by_index(item.archive_index)
                    .map_err(|e| archive_entry_error(path, &item.entry, e))?;
                let mtime = file.last_modified();
                let mut data = Vec::with_capacity(usize::try_from(item.entry.size).unwrap_or(0));
                // One byte more than scanned is enough for the check to see a changed entry.
                (&mut file)
                    .take(item.entry.size + 1)
                    .read_to_end(&mut data)
                    .map_err(|e| archive_entry_error(path, &item.entry, e.into()))?;
                loaded.push((i, Some((data, mtime))));
            }
            loaded
                .into_par_iter()
                .map(|(i, data)| {
                    let Some((data, mtime)) = data else {
                        return Ok(Ready::Direct(i));
                    };
                    let entry = &items[i].entry;
                    let options = file_options(entry.mode, mtime);
                    let mut builder = ZipFileBuilder::new(&entry.path, options)
                        .map_err(|e| zip_error(entry, e))?;
                    copy_checked(&mut data.as_slice(), &mut builder, entry, path)?;
                    let done = builder.finish().map_err(|e| zip_error(entry, e))?;
                    Ok(Ready::Prepared(i, done))
                })
                .collect()
        }
    }
}

/// A new temporary `.zip` file named with `prefix`, and a second handle to write it through.
fn temp_zip(prefix: &str) -> Result<(NamedTempFile, File), Error> {
    let file = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".zip")
        .tempfile()
        .map_err(|source| Error::TempFile { source })?;
    let out = file
        .as_file()
        .try_clone()
        .map_err(|source| Error::TempFile { source })?;
    Ok((file, out))
}

/// Deflates a large file into a one-entry temporary zip, so it can compress on a rayon worker
/// without holding its output in memory; the writer copies the entry over raw.
fn spool_file(root: &Path, index: usize, entry: &FileEntry) -> Result<Ready, Error> {
    let (spool, out) = temp_zip("cf-zero-downtime-spool-")?;
    let mut zip = ZipWriter::new(BufWriter::with_capacity(COPY_BUFFER, out));
    let path = root.join(&entry.path);
    let mut file = File::open(&path).map_err(|e| Error::read(&path, e))?;
    let mtime = file.metadata().ok().and_then(|m| m.modified().ok());
    let options = file_options(entry.mode, mtime.and_then(dos_time))
        .large_file(entry.size >= zip::ZIP64_BYTES_THR);
    zip.start_file(entry.path.as_str(), options)
        .map_err(|e| zip_error(entry, e))?;
    copy_checked(&mut file, &mut zip, entry, &path)?;
    let mut writer = zip.finish().map_err(|e| zip_error(entry, e))?;
    writer
        .flush()
        .map_err(|source| Error::TempFile { source })?;
    Ok(Ready::Spooled(index, spool))
}

/// Appends entries in order to the zip file; streams large archive entries itself.
fn write_entries(
    source: &Source,
    items: &[Item],
    rx: Receiver<Vec<Ready>>,
    out: File,
) -> Result<Stats, Error> {
    let mut zip = ZipWriter::new(BufWriter::with_capacity(256 * 1024, out));
    let mut archive = None;
    let mut stats = Stats::default();
    for batch in rx {
        for ready in batch {
            let index = match &ready {
                Ready::Prepared(i, _) | Ready::Spooled(i, _) | Ready::Direct(i) => *i,
            };
            let entry = &items[index].entry;
            match ready {
                Ready::Prepared(_, prepared) => {
                    zip.add_prepared_file(prepared)
                        .map_err(|e| zip_error(entry, e))?;
                    stats.files += 1;
                    stats.file_bytes += entry.size;
                }
                Ready::Spooled(_, spool) => {
                    let file =
                        File::open(spool.path()).map_err(|source| Error::TempFile { source })?;
                    let mut spooled = ZipArchive::new(BufReader::with_capacity(COPY_BUFFER, file))
                        .map_err(|e| zip_error(entry, e))?;
                    let raw = spooled.by_index_raw(0).map_err(|e| zip_error(entry, e))?;
                    zip.raw_copy_file(raw).map_err(|e| zip_error(entry, e))?;
                    stats.files += 1;
                    stats.file_bytes += entry.size;
                }
                Ready::Direct(_) => match &entry.kind {
                    EntryKind::Directory => {
                        let options = base_options().unix_permissions(entry.mode);
                        zip.add_directory(entry.path.as_str(), options)
                            .map_err(|e| zip_error(entry, e))?;
                    }
                    EntryKind::Symlink { target } => {
                        let options = base_options().unix_permissions(entry.mode);
                        zip.add_symlink(&entry.path, target, options)
                            .map_err(|e| zip_error(entry, e))?;
                    }
                    EntryKind::File => {
                        stream_file(source, &items[index], &mut zip, &mut archive)?;
                        stats.files += 1;
                        stats.file_bytes += entry.size;
                    }
                },
            }
            stats.entries += 1;
        }
    }
    let mut writer = zip.finish().map_err(|source| Error::Zip {
        path: "(central directory)".into(),
        source,
    })?;
    writer
        .flush()
        .map_err(|source| Error::TempFile { source })?;
    stats.bytes = writer
        .stream_position()
        .map_err(|source| Error::TempFile { source })?;
    Ok(stats)
}

/// Deflates one large file straight into the zip on the writer thread.
fn stream_file<W: Write + Seek>(
    source: &Source,
    item: &Item,
    zip: &mut ZipWriter<W>,
    archive: &mut Option<ZipArchive<BufReader<File>>>,
) -> Result<(), Error> {
    let entry = &item.entry;
    let large = entry.size >= zip::ZIP64_BYTES_THR;
    match source {
        Source::Directory(root) => {
            let path = root.join(&entry.path);
            let mut file = File::open(&path).map_err(|e| Error::read(&path, e))?;
            let mtime = file.metadata().ok().and_then(|m| m.modified().ok());
            let options = file_options(entry.mode, mtime.and_then(dos_time)).large_file(large);
            zip.start_file(entry.path.as_str(), options)
                .map_err(|e| zip_error(entry, e))?;
            copy_checked(&mut file, zip, entry, &path)
        }
        Source::Archive(path) => {
            if archive.is_none() {
                *archive = Some(archive::open(path)?);
            }
            let Some(source_zip) = archive.as_mut() else {
                return Err(Error::NotFound { path: path.clone() });
            };
            let mut file = source_zip
                .by_index(item.archive_index)
                .map_err(|e| archive_entry_error(path, entry, e))?;
            let options = file_options(entry.mode, file.last_modified()).large_file(large);
            zip.start_file(entry.path.as_str(), options)
                .map_err(|e| zip_error(entry, e))?;
            copy_checked(&mut file, zip, entry, path)
        }
    }
}

/// Copies `reader` into `writer`, hashing as it goes, and checks the result against the scan.
fn copy_checked(
    reader: &mut impl Read,
    writer: &mut impl Write,
    entry: &FileEntry,
    read_path: &Path,
) -> Result<(), Error> {
    let (sha1, size) = hash_through(
        reader,
        |e| Error::read(read_path, e),
        |chunk, size| {
            if size > entry.size {
                return Err(Error::FileChanged {
                    path: entry.path.clone(),
                });
            }
            writer
                .write_all(chunk)
                .map_err(|e| zip_error(entry, e.into()))
        },
    )?;
    if size != entry.size || sha1 != entry.sha1 {
        return Err(Error::FileChanged {
            path: entry.path.clone(),
        });
    }
    Ok(())
}

fn base_options() -> SimpleFileOptions {
    SimpleFileOptions::default().system(System::Unix)
}

fn file_options(mode: u32, mtime: Option<DateTime>) -> SimpleFileOptions {
    let options = base_options()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(mode);
    match mtime {
        Some(t) => options.last_modified_time(t),
        None => options,
    }
}

fn zip_error(entry: &FileEntry, source: zip::result::ZipError) -> Error {
    Error::Zip {
        path: entry.path.clone(),
        source,
    }
}

fn archive_entry_error(archive: &Path, entry: &FileEntry, source: zip::result::ZipError) -> Error {
    Error::ArchiveEntry {
        archive: archive.into(),
        entry: entry.path.clone(),
        source,
    }
}

/// A file time as an MS-DOS timestamp (UTC); `None` before 1980 or after 2107.
fn dos_time(t: SystemTime) -> Option<DateTime> {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    let days = i64::try_from(secs / 86_400).ok()?;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    DateTime::from_date_and_time(
        u16::try_from(y).ok()?,
        m,
        d,
        (rem / 3600) as u8,
        ((rem % 3600) / 60) as u8,
        (rem % 60) as u8,
    )
    .ok()
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> Item {
        Item {
            entry: FileEntry {
                path: "f".into(),
                sha1: String::new(),
                size,
                mode: 0o644,
                kind: EntryKind::File,
            },
            archive_index: 0,
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_819), (2027, 1, 1));
    }

    #[test]
    fn large_files_count_as_small_ones_in_batches() {
        let items: Vec<Item> = (0..8).map(|_| file(100 * SMALL_FILE_MAX)).collect();
        let per_batch = usize::try_from(BATCH_BYTES / SMALL_FILE_MAX).unwrap_or(1);
        assert_eq!(batches(&items)[0].len(), per_batch);
    }

    #[test]
    fn batches_are_bounded_by_bytes_and_count() {
        let items: Vec<Item> = (0..10).map(|_| file(SMALL_FILE_MAX)).collect();
        let per_batch = usize::try_from(BATCH_BYTES / SMALL_FILE_MAX).unwrap_or(1);
        let b = batches(&items);
        assert!(b.iter().all(|r| r.len() <= per_batch));
        assert_eq!(b.iter().map(|r| r.len()).sum::<usize>(), 10);
        let tiny: Vec<Item> = (0..BATCH_ENTRIES * 2 + 1).map(|_| file(1)).collect();
        assert_eq!(batches(&tiny).len(), 3);
    }
}
