//! Fuzzes the gob decoder with arbitrary streams: it must return values or errors, never
//! panic, hang or allocate without bound, and decoding must not depend on how the bytes
//! are split across reads. The per-stream memory budget (type definitions and the value being
//! decoded together) is chosen by the input, from 4 KiB to 512 KiB, so that small inputs reach
//! it too: a definition that is undone when a value must wait for its next message has to give
//! back what it took, or whole and split decoding would disagree.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O gob_decode fuzz/corpus/gob_decode fuzz/seeds/gob_decode -- -rss_limit_mb=512 -max_total_time=150`
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

// The codec is dependency-light and sans-IO: compile it directly instead of the whole crate.
#[path = "../../src/plugin/gob/mod.rs"]
#[allow(dead_code, missing_docs, unused_imports)]
mod gob;

/// Decodes `data` fed in chunks of `chunk` bytes with a budget of `budget` bytes; returns the
/// values up to the first error.
fn decode(data: &[u8], chunk: usize, budget: usize) -> (Vec<gob::Decoded>, bool) {
    let mut dec = gob::Decoder::with_limits(gob::Limits {
        max_decoded: budget,
        ..gob::Limits::default()
    });
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let budget = 4096 << (split >> 5);
    let (whole, whole_err) = decode(rest, rest.len(), budget);
    let (pieces, pieces_err) = decode(rest, usize::from(split % 17) + 1, budget);
    // Compared through Debug: a decoded NaN is not equal to itself.
    assert_eq!(
        format!("{whole:?}"),
        format!("{pieces:?}"),
        "values depend on how the bytes arrived"
    );
    assert_eq!(whole_err, pieces_err, "errors depend on how the bytes arrived");
});
