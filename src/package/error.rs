//! The `package` layer's error type: every failure names the file, archive or call it came from.
//!
//! Depends on: `std::io`, `zip`, `walkdir`. Must not: mention HTTP (API failures arrive boxed from the
//! [`BitsApi`](super::BitsApi) implementation).

use std::path::PathBuf;

/// A boxed error coming from the [`BitsApi`](super::BitsApi) implementation.
pub type ApiError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while scanning, zipping or pushing app bits.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The app path does not exist.
    #[error("app path '{}' does not exist", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// A file or directory could not be read (permissions, I/O error, vanished file).
    #[error("cannot read '{}'", path.display())]
    Read {
        /// The file or directory on disk.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The app directory holds nothing to push once ignored files are left out.
    #[error("no app files found in '{}'", path.display())]
    NoAppFiles {
        /// The app directory.
        path: PathBuf,
    },
    /// The archive holds fewer than two entries once ignored ones are left out (cf CLI rule).
    #[error("'{}' is an empty archive", path.display())]
    EmptyArchive {
        /// The archive.
        path: PathBuf,
    },
    /// The path is not a directory and not a readable zip/jar/war archive.
    #[error("'{}' is not a valid zip/jar/war archive", path.display())]
    InvalidArchive {
        /// The archive.
        path: PathBuf,
        /// What the zip reader reported.
        #[source]
        source: zip::result::ZipError,
    },
    /// An archive entry could not be read.
    #[error("cannot read entry '{entry}' of archive '{}'", archive.display())]
    ArchiveEntry {
        archive: PathBuf,
        /// The entry name as stored.
        entry: String,
        /// What the zip reader reported.
        #[source]
        source: zip::result::ZipError,
    },
    /// An archive is over one of its limits (`ArchiveLimits`: entry count, total size,
    /// `.cfignore` size), or an entry holds more or fewer bytes than its header declares
    /// (a zip bomb or a corrupt archive). Nothing was uploaded.
    #[error("archive '{}' cannot be pushed: {detail}", archive.display())]
    ArchiveLimit {
        archive: PathBuf,
        /// Which bound was crossed, with the entry and the figures.
        detail: String,
    },
    /// An archive entry name is absolute or climbs out of the app root with `..`.
    #[error("archive '{}' has an unsafe entry name '{entry}' (absolute or containing '..')", archive.display())]
    UnsafeArchiveEntry {
        archive: PathBuf,
        /// The entry name as stored.
        entry: String,
    },
    /// A FIFO, socket or device file is in the app directory.
    #[error("'{}' is a {kind}; only regular files, directories and symlinks can be pushed (add it to .cfignore)", path.display())]
    UnsupportedFileType {
        /// The file on disk.
        path: PathBuf,
        /// `fifo`, `socket`, `device` or `special file`.
        kind: &'static str,
    },
    /// A file name (or symlink target) is not valid UTF-8, which zip entry names require.
    #[error("'{}' is not valid UTF-8; rename it or add it to .cfignore", path.display())]
    NonUtf8Path {
        /// The file on disk.
        path: PathBuf,
    },
    /// A symlink points at nothing.
    #[error("symlink '{}' points to '{target}', which does not exist (remove it or add it to .cfignore)", path.display())]
    DanglingSymlink {
        /// The symlink on disk.
        path: PathBuf,
        /// Its target as written in the link.
        target: String,
    },
    /// A symlink points outside the app directory; Cloud Controller rejects such packages after upload.
    #[error("symlink '{}' points to '{target}', outside the app directory (Cloud Controller rejects it; add it to .cfignore)", path.display())]
    SymlinkOutsideApp {
        /// The symlink on disk.
        path: PathBuf,
        /// Its target as written in the link.
        target: String,
    },
    /// A file's content no longer matches what the scan saw.
    #[error(
        "aborting push: file '{path}' has been modified since the start of push; run the push again"
    )]
    FileChanged {
        /// The file's app-relative path.
        path: String,
    },
    /// The upload zip could not be written.
    #[error("cannot write the upload zip for '{path}'")]
    Zip {
        /// The app-relative path of the entry being written.
        path: String,
        /// What the zip writer reported.
        #[source]
        source: zip::result::ZipError,
    },
    /// The temporary upload zip could not be created or written.
    #[error("cannot write the temporary upload zip")]
    TempFile {
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The background packaging task panicked or was cancelled.
    #[error("the packaging task stopped unexpectedly")]
    Task {
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A resource-match call failed.
    #[error("resource matching failed (chunk {chunk} of {chunks})")]
    ResourceMatch {
        /// 1-based chunk number.
        chunk: usize,
        /// Number of chunks.
        chunks: usize,
        /// The API error.
        #[source]
        source: ApiError,
    },
    /// The package upload failed.
    #[error("upload of the bits of package {package_guid} failed")]
    Upload {
        package_guid: String,
        /// The API error.
        #[source]
        source: ApiError,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Read {
            path: path.into(),
            source,
        }
    }

    /// [`Error::NotFound`] when `source` says the path does not exist, else [`Error::read`].
    pub(crate) fn missing_or_read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound { path: path.into() }
        } else {
            Error::read(path, source)
        }
    }
}
