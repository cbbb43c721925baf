//! The cf CLI plugin protocol: gob codec, net/rpc client, metadata, entry.
//!
//! Depends on: `cf` (Target, TokenProvider), `cli` (PushArgs). Must not: print outside entry.

pub mod gob;
