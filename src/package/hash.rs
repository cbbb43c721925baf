//! SHA-1 fingerprints of file contents (the resource-matching key), read in bounded chunks.
//!
//! Depends on: `sha1`. Must not: read a whole file into memory.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha1::{Digest, Sha1};

use super::Error;

/// Read buffer for hashing.
const HASH_BUFFER: usize = 64 * 1024;

/// Lowercase hex SHA-1 and byte count of a file's content.
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64), Error> {
    let mut file = File::open(path).map_err(|e| Error::read(path, e))?;
    hash_reader(&mut file).map_err(|e| Error::read(path, e))
}

/// Lowercase hex SHA-1 and byte count of everything `reader` yields.
pub(crate) fn hash_reader(reader: &mut impl Read) -> std::io::Result<(String, u64)> {
    hash_through(reader, |e| e, |_, _| Ok(()))
}

/// Reads `reader` to its end, handing each chunk and the byte count so far to `sink` (which may
/// stop the read with an error); lowercase hex SHA-1 and byte count of everything read. A read
/// error is turned into `E` by `read_error`.
pub(crate) fn hash_through<E>(
    reader: &mut impl Read,
    read_error: impl Fn(std::io::Error) -> E,
    mut sink: impl FnMut(&[u8], u64) -> Result<(), E>,
) -> Result<(String, u64), E> {
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; HASH_BUFFER];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
        sink(&buf[..n], size)?;
    }
    Ok((hex::encode(hasher.finalize()), size))
}
