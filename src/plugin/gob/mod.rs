//! A sans-IO codec for Go's `encoding/gob` wire format, as spoken by the cf CLI's plugin RPC
//! server (Go `net/rpc` with the default gob codec).
//!
//! Bytes in, values out: [`Encoder`] turns a [`Value`] of a described [`Type`] into
//! length-prefixed gob messages (type definitions first, once per stream, with Go's id
//! allocation and ordering so the output is byte-identical to Go's for the same types);
//! [`Decoder`] builds its type table from the definitions found in the stream (ids are never
//! assumed) and returns dynamic [`Value`]s. The decoder bounds message size, nesting depth,
//! element counts, the number of type definitions and the memory one decoded value takes
//! (struct field names are shared with the type table, never copied per value), and reports
//! garbage as an [`Error`] naming the stream offset; it never panics.
//!
//! Depends on: `bytes`, `thiserror`. Must not: do I/O.

mod decode;
mod encode;
mod value;
mod wire;

pub use decode::{Decoded, Decoder, Limits};
pub use encode::Encoder;
pub use value::{DefKind, Type, TypeDef, Value};

/// Why a gob stream could not be encoded or decoded. Offsets count bytes from the start of
/// the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The data ended in the middle of an item inside a complete message.
    #[error("gob: truncated {what} at byte {offset}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Stream offset where it started.
        offset: u64,
    },
    /// An unsigned integer announced more than 8 bytes.
    #[error("gob: invalid unsigned integer at byte {offset}")]
    BadUint {
        /// Stream offset of the integer.
        offset: u64,
    },
    /// A message is larger than the decoder accepts.
    #[error("gob: message of {len} bytes at byte {offset} exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Announced length.
        len: u64,
        limit: usize,
        /// Stream offset of the message.
        offset: u64,
    },
    /// A value refers to a type id that was never defined on this stream.
    #[error("gob: unknown type id {id} at byte {offset}")]
    UnknownType {
        id: i64,
        /// Stream offset of the reference.
        offset: u64,
    },
    /// Values are nested deeper than the decoder accepts.
    #[error("gob: values nested deeper than {limit} levels at byte {offset}")]
    TooDeep {
        limit: usize,
        /// Stream offset where it was exceeded.
        offset: u64,
    },
    /// The stream's type definitions and the value being decoded take more memory than the
    /// decoder accepts ([`Limits::max_decoded`]).
    #[error(
        "gob: item at byte {offset} decodes to more than {limit} bytes (type definitions and the current value together)"
    )]
    DecodedTooLarge {
        limit: usize,
        /// Stream offset of the item that crossed it.
        offset: u64,
    },
    /// Anything else that is not valid gob.
    #[error("gob: {detail} at byte {offset}")]
    Invalid {
        /// What is wrong.
        detail: String,
        /// Stream offset where it was found.
        offset: u64,
    },
    /// A value did not fit the type it was to be encoded as.
    #[error("gob: cannot encode: {0}")]
    Encode(String),
}

#[cfg(test)]
mod tests;
