//! Resource matching: which entries are candidates, and the split of a scan into matched resources
//! (listed in the upload) and unmatched entries (zipped), given what Cloud Controller reported.
//!
//! Depends on: nothing but the package types. Must not: do I/O.

use std::collections::HashSet;

use super::{EntryKind, FileEntry, Resource};

/// Resources per `POST /v3/resource_matches` call (the cf CLI's `MaxNumberOfResourcesForMatching`).
pub const MATCH_CHUNK_SIZE: usize = 5000;

/// The files worth asking about: regular files larger than 0 bytes, in walk order.
pub(crate) fn candidates(entries: &[FileEntry]) -> Vec<Resource> {
    entries
        .iter()
        .filter(|e| e.kind == EntryKind::File && e.size > 0)
        .map(to_resource)
        .collect()
}

fn to_resource(e: &FileEntry) -> Resource {
    Resource {
        sha1: e.sha1.clone(),
        size: e.size,
        path: e.path.clone(),
        mode: e.mode,
    }
}

/// A scan split by matching results.
#[derive(Debug, Default)]
pub(crate) struct Split {
    /// Files Cloud Controller has, with our local path and mode.
    pub matched: Vec<Resource>,
    /// Indices into the scan's entries of everything that goes into the zip, in walk order.
    pub unmatched: Vec<usize>,
}

/// Splits entries: a non-empty file whose `(sha1, size)` Cloud Controller reported is matched;
/// everything else (directories, symlinks, empty and unknown files) is unmatched, as in the cf CLI.
pub(crate) fn split(entries: &[FileEntry], known: &HashSet<(String, u64)>) -> Split {
    let mut out = Split::default();
    for (i, e) in entries.iter().enumerate() {
        let matched =
            e.kind == EntryKind::File && e.size > 0 && known.contains(&(e.sha1.clone(), e.size));
        if matched {
            out.matched.push(to_resource(e));
        } else {
            out.unmatched.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha1: &str, size: u64) -> FileEntry {
        FileEntry {
            path: path.into(),
            sha1: sha1.into(),
            size,
            mode: 0o644,
            kind: EntryKind::File,
        }
    }

    #[test]
    fn only_non_empty_files_are_candidates() {
        let entries = vec![
            FileEntry {
                path: "d/".into(),
                sha1: String::new(),
                size: 0,
                mode: 0o755,
                kind: EntryKind::Directory,
            },
            file("d/empty", "da39a3ee5e6b4b0d3255bfef95601890afd80709", 0),
            file("d/a", "aa", 3),
        ];
        let c = candidates(&entries);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "d/a");
        assert_eq!(c[0].mode_string(), "644");
    }

    #[test]
    fn split_needs_sha1_and_size() {
        let entries = vec![file("a", "aa", 3), file("b", "bb", 4), file("c", "aa", 5)];
        let known = HashSet::from([("aa".to_string(), 3), ("bb".to_string(), 9)]);
        let s = split(&entries, &known);
        assert_eq!(
            s.matched
                .iter()
                .map(|r| r.path.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(s.unmatched, [1, 2]);
    }

    #[test]
    fn every_path_with_a_known_checksum_is_matched() {
        let entries = vec![file("a", "aa", 3), file("copy/a", "aa", 3)];
        let known = HashSet::from([("aa".to_string(), 3)]);
        let s = split(&entries, &known);
        assert_eq!(s.matched.len(), 2);
        assert!(s.unmatched.is_empty());
    }
}
