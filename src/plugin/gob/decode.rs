//! The gob decoder: builds its type table from the stream and returns dynamic values.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, BytesMut};

use super::Error;
use super::value::Value;
use super::wire::{Reader, peek_uint};

/// Bounds that keep a hostile or broken peer from making the decoder allocate or recurse
/// without limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted message, in bytes.
    pub max_message: usize,
    /// Deepest accepted nesting of values.
    pub max_depth: usize,
    /// Most type definitions accepted on one stream.
    pub max_types: usize,
    /// Most memory the decoder may hold for one stream, in bytes: the type definitions
    /// received so far (kept for the whole stream) plus the value being decoded. A definition
    /// counts its table entry plus, per struct field, the field's slot and name; a value counts
    /// the size of a [`Value`] per value plus the bytes of its strings and byte strings (struct
    /// field names are shared with the type table and not counted per value). A small message
    /// can describe a large value (a slice of a million empty structs is a million bytes on the
    /// wire and tens of MB decoded), and many messages can define types with huge field lists;
    /// this one budget bounds what either can make the decoder allocate.
    pub max_decoded: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message: 16 << 20,
            max_depth: 64,
            max_types: 4096,
            max_decoded: 128 << 20,
        }
    }
}

/// What one decoded value costs against [`Limits::max_decoded`] besides its bytes: the
/// [`Value`] itself plus a struct field's name handle.
const VALUE_BYTES: usize = std::mem::size_of::<Value>() + std::mem::size_of::<Arc<str>>();

/// What one type definition costs against [`Limits::max_decoded`] besides its fields: the
/// shared [`WireKind`] with its reference counts and its slot in the type table.
const TYPE_BYTES: usize = std::mem::size_of::<WireKind>()
    + 2 * std::mem::size_of::<usize>()
    + std::mem::size_of::<(i64, Arc<WireKind>)>();

/// What one struct field of a type definition costs besides its name's bytes: its slot in the
/// field list, counted twice for the list's growth by doubling, plus the name's own allocation
/// (reference counts and allocator rounding).
const FIELD_BYTES: usize = 2 * std::mem::size_of::<(Arc<str>, i64)>() + 32;

/// Most messages one value may be spread over (each inline interface type definition ends
/// one); bounds the retries of [`Decoder::decode`].
const MAX_JOINED_MESSAGES: usize = 64;

/// A type definition received on the stream.
#[derive(Debug, Clone)]
enum WireKind {
    /// Field names and type ids; the names are shared by every decoded value of the type.
    Struct(Vec<(Arc<str>, i64)>),
    Slice(i64),
    Array(i64, u64),
    Map(i64, i64),
    GobEncoder,
}

/// One value read from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The wire type id of the value (builtin 1–8, or an id defined on the stream).
    pub type_id: i64,
    pub value: Value,
}

/// Decodes one gob stream. Feed it the bytes received so far; it consumes complete
/// messages from the front of the buffer and keeps the type definitions it has seen.
#[derive(Debug, Default)]
pub struct Decoder {
    types: HashMap<i64, Arc<WireKind>>,
    /// What `types` takes against [`Limits::max_decoded`], in bytes.
    types_bytes: usize,
    /// Ids defined while decoding the current value message, with what each took (undone if
    /// the message must be retried).
    pending: Vec<(i64, usize)>,
    consumed: u64,
    limits: Limits,
    /// What the stream may still take, in bytes: [`Limits::max_decoded`] less the type table
    /// and what the value being decoded took so far.
    budget: usize,
}

impl Decoder {
    /// A decoder for a fresh stream with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for a fresh stream with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Bytes consumed from the stream so far.
    pub fn position(&self) -> u64 {
        self.consumed
    }

    /// Consumes type definitions and then one value from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a complete value message; the
    /// definitions consumed so far are kept, so call again once more bytes arrived.
    ///
    /// # Errors
    /// Any malformed input. The stream cannot be resumed after an error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        loop {
            let start = self.consumed;
            let Some((len, width)) = self.peek_message(buf, 0, start)? else {
                return Ok(None);
            };
            let mut r = Reader::new(&buf[width..width + len], start + width as u64);
            let id_offset = r.offset();
            let id = r.read_int()?;
            if id == 0 {
                return Err(bad_id(id, id_offset));
            }
            if id > 0 {
                return self.decode_value_message(buf, start);
            }
            let id = id.checked_neg().ok_or_else(|| bad_id(id, id_offset))?;
            self.budget = self.limits.max_decoded.saturating_sub(self.types_bytes);
            self.define(id, id_offset, &mut r)?;
            if !r.is_empty() {
                return Err(Error::Invalid {
                    detail: "extra data after a type definition".into(),
                    offset: r.offset(),
                });
            }
            self.pending.clear();
            buf.advance(width + len);
            self.consumed += (width + len) as u64;
        }
    }

    /// The (length, prefix width) of the complete message at `buf[at..]`, or `None` until
    /// it has fully arrived.
    fn peek_message(
        &self,
        buf: &[u8],
        at: usize,
        offset: u64,
    ) -> Result<Option<(usize, usize)>, Error> {
        let Some((len, width)) = peek_uint(&buf[at..], offset)? else {
            return Ok(None);
        };
        if len > self.limits.max_message as u64 {
            return Err(Error::MessageTooLarge {
                len,
                limit: self.limits.max_message,
                offset,
            });
        }
        // Bounded by max_message just above.
        let len = len as usize;
        if len == 0 {
            return Err(Error::Invalid {
                detail: "empty message".into(),
                offset,
            });
        }
        if buf.len() - at < width + len {
            return Ok(None);
        }
        Ok(Some((len, width)))
    }

    /// Decodes the value message at the front of `buf`. Go's encoder may end a message
    /// right after a type definition sent inside an interface value and continue the value
    /// in the next message; then the following messages are joined and decoding is retried
    /// (definitions made by the failed attempt are forgotten). Nothing is consumed until the
    /// whole value has been decoded.
    fn decode_value_message(
        &mut self,
        buf: &mut BytesMut,
        start: u64,
    ) -> Result<Option<Decoded>, Error> {
        let mut joined: Vec<u8> = Vec::new();
        let mut boundaries = Vec::new();
        let mut used = 0usize;
        loop {
            let Some((len, width)) = self.peek_message(buf, used, start + used as u64)? else {
                return Ok(None);
            };
            if joined.len() + len > self.limits.max_message {
                return Err(Error::MessageTooLarge {
                    len: (joined.len() + len) as u64,
                    limit: self.limits.max_message,
                    offset: start,
                });
            }
            if boundaries.len() >= MAX_JOINED_MESSAGES {
                return Err(Error::Invalid {
                    detail: format!("value spread over more than {MAX_JOINED_MESSAGES} messages"),
                    offset: start,
                });
            }
            joined.extend_from_slice(&buf[used + width..used + width + len]);
            used += width + len;
            boundaries.push(joined.len());

            let mut r = Reader::new(&joined, start).top_level(&boundaries);
            self.budget = self.limits.max_decoded.saturating_sub(self.types_bytes);
            let id = r.read_int()?;
            match self.decode_top(id, &mut r, 0) {
                Ok(value) => {
                    if !r.is_empty() {
                        return Err(Error::Invalid {
                            detail: "extra data after a value".into(),
                            offset: r.offset(),
                        });
                    }
                    self.pending.clear();
                    buf.advance(used);
                    self.consumed += used as u64;
                    return Ok(Some(Decoded { type_id: id, value }));
                }
                Err(_) if r.wants_next_message() => {
                    for (id, cost) in self.pending.drain(..) {
                        self.types.remove(&id);
                        self.types_bytes -= cost;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a `wireType` for `id`.
    fn define(&mut self, id: i64, offset: u64, r: &mut Reader<'_>) -> Result<(), Error> {
        if !(64..=i64::from(i32::MAX)).contains(&id) {
            return Err(Error::Invalid {
                detail: format!("definition of reserved or invalid type id {id}"),
                offset,
            });
        }
        if self.types.contains_key(&id) {
            return Err(Error::Invalid {
                detail: format!("duplicate definition of type id {id}"),
                offset,
            });
        }
        if self.types.len() >= self.limits.max_types {
            return Err(Error::Invalid {
                detail: format!("more than {} type definitions", self.limits.max_types),
                offset,
            });
        }
        let before = self.budget;
        let mut left = self.budget;
        take(&mut left, TYPE_BYTES, self.limits.max_decoded, offset)?;
        let limit = self.limits.max_decoded;
        let mut kind = None;
        read_struct(r, 7, |r, field| {
            let k = match field {
                0 => read_array_type(r)?,
                1 => read_slice_type(r)?,
                2 => read_struct_type(r, &mut left, limit)?,
                3 => read_map_type(r)?,
                // GobEncoder, BinaryMarshaler, TextMarshaler: all opaque byte strings.
                _ => {
                    read_struct(r, 1, |r, _| read_common(r).map(drop))?;
                    WireKind::GobEncoder
                }
            };
            kind = Some(k);
            Ok(())
        })?;
        let kind = kind.ok_or_else(|| Error::Invalid {
            detail: format!("empty definition of type id {id}"),
            offset,
        })?;
        self.budget = left;
        let cost = before - left;
        self.types_bytes += cost;
        self.types.insert(id, Arc::new(kind));
        self.pending.push((id, cost));
        Ok(())
    }

    /// A top-level value (also an interface's concrete value): structs are encoded directly,
    /// anything else as a singleton after a zero field delta.
    fn decode_top(&mut self, id: i64, r: &mut Reader<'_>, depth: usize) -> Result<Value, Error> {
        if matches!(self.types.get(&id).map(|k| &**k), Some(WireKind::Struct(_))) {
            return self.decode_value(id, r, depth);
        }
        let offset = r.offset();
        if r.read_uint()? != 0 {
            return Err(Error::Invalid {
                detail: "non-zero field delta before a singleton value".into(),
                offset,
            });
        }
        self.decode_value(id, r, depth)
    }

    /// Takes `bytes` from the stream's budget (see [`Limits::max_decoded`]).
    fn charge(&mut self, bytes: usize, offset: u64) -> Result<(), Error> {
        take(&mut self.budget, bytes, self.limits.max_decoded, offset)
    }

    fn decode_value(&mut self, id: i64, r: &mut Reader<'_>, depth: usize) -> Result<Value, Error> {
        if depth > self.limits.max_depth {
            return Err(Error::TooDeep {
                limit: self.limits.max_depth,
                offset: r.offset(),
            });
        }
        let offset = r.offset();
        // Every value, whatever its kind, takes a `Value` (in its parent's list or field list).
        self.charge(VALUE_BYTES, offset)?;
        Ok(match id {
            1 => Value::Bool(r.read_uint()? != 0),
            2 => Value::Int(r.read_int()?),
            3 => Value::Uint(r.read_uint()?),
            4 => Value::Float(r.read_float()?),
            5 => {
                let bytes = r.read_bytes("[]byte")?;
                self.charge(bytes.len(), offset)?;
                Value::Bytes(bytes.to_vec())
            }
            6 => {
                let bytes = r.read_bytes("string")?;
                self.charge(bytes.len(), offset)?;
                // Go does not validate UTF-8 in strings; keep what can be kept.
                Value::String(String::from_utf8_lossy(bytes).into_owned())
            }
            7 => Value::Complex(r.read_float()?, r.read_float()?),
            8 => self.decode_interface(r, depth)?,
            _ => {
                let kind = self
                    .types
                    .get(&id)
                    .cloned()
                    .ok_or(Error::UnknownType { id, offset })?;
                match &*kind {
                    WireKind::Struct(fields) => {
                        let mut out = Vec::new();
                        read_struct(r, fields.len(), |r, field| {
                            let (name, fid) = &fields[field];
                            let v = self.decode_value(*fid, r, depth + 1)?;
                            // A reference count, not a copy of the name.
                            out.push((Arc::clone(name), v));
                            Ok(())
                        })?;
                        Value::Struct(out)
                    }
                    WireKind::Slice(elem) => {
                        let n = r.read_len("slice")?;
                        let mut items = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            items.push(self.decode_value(*elem, r, depth + 1)?);
                        }
                        Value::List(items)
                    }
                    WireKind::Array(elem, len) => {
                        let n = r.read_len("array")?;
                        if n as u64 != *len {
                            return Err(Error::Invalid {
                                detail: format!("array of {n} elements for a type of length {len}"),
                                offset,
                            });
                        }
                        let mut items = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            items.push(self.decode_value(*elem, r, depth + 1)?);
                        }
                        Value::List(items)
                    }
                    WireKind::Map(k, v) => {
                        let n = r.read_len("map")?;
                        let mut entries = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            let key = self.decode_value(*k, r, depth + 1)?;
                            let val = self.decode_value(*v, r, depth + 1)?;
                            entries.push((key, val));
                        }
                        Value::Map(entries)
                    }
                    WireKind::GobEncoder => {
                        let bytes = r.read_bytes("encoded value")?;
                        self.charge(bytes.len(), offset)?;
                        Value::Encoded(bytes.to_vec())
                    }
                }
            }
        })
    }

    fn decode_interface(&mut self, r: &mut Reader<'_>, depth: usize) -> Result<Value, Error> {
        let offset = r.offset();
        let name = r.read_bytes("interface type name")?;
        if name.is_empty() {
            return Ok(Value::Nil);
        }
        if name.len() > 1024 {
            return Err(Error::Invalid {
                detail: format!("interface type name of {} bytes", name.len()),
                offset,
            });
        }
        self.charge(name.len(), offset)?;
        let name = String::from_utf8_lossy(name).into_owned();
        // The concrete type id, possibly preceded by definitions of the concrete type (Go's
        // decodeTypeSequence): the first is not length-prefixed, later ones are; when the
        // message ends after a definition the value continues in the next message.
        let id = loop {
            if r.is_empty() {
                r.request_next_message();
                return Err(Error::Truncated {
                    what: "interface value",
                    offset: r.offset(),
                });
            }
            let id_offset = r.offset();
            let id = r.read_int()?;
            if id >= 0 {
                break id;
            }
            let def = id.checked_neg().ok_or_else(|| bad_id(id, id_offset))?;
            self.define(def, id_offset, r)?;
            if !r.is_empty() && !r.at_boundary() {
                // The length prefix of the next definition; Go ignores it too.
                r.read_uint()?;
            }
        };
        let n = r.read_len("interface value")?;
        let mut sub = r.sub(n);
        let value = self.decode_top(id, &mut sub, depth + 1)?;
        if !sub.is_empty() {
            return Err(Error::Invalid {
                detail: format!("extra data in interface value of type '{name}'"),
                offset: sub.offset(),
            });
        }
        Ok(Value::Interface {
            name,
            value: Box::new(value),
        })
    }
}

/// Takes `bytes` from `left`, or fails with [`Error::DecodedTooLarge`] for `limit` (nothing
/// taken).
fn take(left: &mut usize, bytes: usize, limit: usize, offset: u64) -> Result<(), Error> {
    match left.checked_sub(bytes) {
        Some(rest) => {
            *left = rest;
            Ok(())
        }
        None => Err(Error::DecodedTooLarge { limit, offset }),
    }
}

fn bad_id(id: i64, offset: u64) -> Error {
    Error::Invalid {
        detail: format!("invalid type id {id}"),
        offset,
    }
}

/// Walks a struct encoding: field deltas until a zero delta, calling `f` with each field
/// number (always below `nfields`).
fn read_struct(
    r: &mut Reader<'_>,
    nfields: usize,
    mut f: impl FnMut(&mut Reader<'_>, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut field: i64 = -1;
    loop {
        let offset = r.offset();
        let delta = r.read_uint()?;
        if delta == 0 {
            return Ok(());
        }
        let next = u64::try_from(field)
            .map_or(Some(delta - 1), |f| f.checked_add(delta))
            .filter(|&n| n < nfields as u64)
            .ok_or_else(|| Error::Invalid {
                detail: format!("field number out of range for a struct of {nfields} fields"),
                offset,
            })?;
        // next < nfields, a usize.
        f(r, next as usize)?;
        field = next as i64;
    }
}

/// CommonType{Name string; Id int}: returns the name (the id is not trusted; see the spec).
fn read_common(r: &mut Reader<'_>) -> Result<String, Error> {
    let mut name = String::new();
    read_struct(r, 2, |r, field| {
        if field == 0 {
            name = r.read_string("type name")?;
        } else {
            r.read_int()?;
        }
        Ok(())
    })?;
    Ok(name)
}

fn read_type_id(r: &mut Reader<'_>) -> Result<i64, Error> {
    let offset = r.offset();
    let id = r.read_int()?;
    if !(1..=i64::from(i32::MAX)).contains(&id) {
        return Err(bad_id(id, offset));
    }
    Ok(id)
}

fn missing(what: &str, r: &Reader<'_>) -> Error {
    Error::Invalid {
        detail: format!("type definition without {what}"),
        offset: r.offset(),
    }
}

fn read_array_type(r: &mut Reader<'_>) -> Result<WireKind, Error> {
    let (mut elem, mut len) = (None, 0u64);
    read_struct(r, 3, |r, field| {
        match field {
            0 => drop(read_common(r)?),
            1 => elem = Some(read_type_id(r)?),
            _ => {
                let offset = r.offset();
                len = u64::try_from(r.read_int()?).map_err(|_| Error::Invalid {
                    detail: "negative array length".into(),
                    offset,
                })?;
            }
        }
        Ok(())
    })?;
    Ok(WireKind::Array(
        elem.ok_or_else(|| missing("an element type", r))?,
        len,
    ))
}

fn read_slice_type(r: &mut Reader<'_>) -> Result<WireKind, Error> {
    let mut elem = None;
    read_struct(r, 2, |r, field| {
        if field == 0 {
            read_common(r)?;
        } else {
            elem = Some(read_type_id(r)?);
        }
        Ok(())
    })?;
    Ok(WireKind::Slice(
        elem.ok_or_else(|| missing("an element type", r))?,
    ))
}

fn read_map_type(r: &mut Reader<'_>) -> Result<WireKind, Error> {
    let (mut key, mut elem) = (None, None);
    read_struct(r, 3, |r, field| {
        match field {
            0 => drop(read_common(r)?),
            1 => key = Some(read_type_id(r)?),
            _ => elem = Some(read_type_id(r)?),
        }
        Ok(())
    })?;
    Ok(WireKind::Map(
        key.ok_or_else(|| missing("a key type", r))?,
        elem.ok_or_else(|| missing("an element type", r))?,
    ))
}

/// A struct type's fields, each taken from `left` (of the stream budget `limit`) as it is read,
/// so a huge field list is refused before it is held.
fn read_struct_type(r: &mut Reader<'_>, left: &mut usize, limit: usize) -> Result<WireKind, Error> {
    let mut fields = Vec::new();
    read_struct(r, 2, |r, field| {
        if field == 0 {
            read_common(r)?;
            return Ok(());
        }
        let n = r.read_len("field list")?;
        for _ in 0..n {
            let offset = r.offset();
            let (mut name, mut id) = (String::new(), None);
            read_struct(r, 2, |r, field| {
                if field == 0 {
                    name = r.read_string("field name")?;
                } else {
                    id = Some(read_type_id(r)?);
                }
                Ok(())
            })?;
            let id = id.ok_or_else(|| missing("a field type", r))?;
            take(left, FIELD_BYTES.saturating_add(name.len()), limit, offset)?;
            fields.push((Arc::from(name), id));
        }
        Ok(())
    })?;
    Ok(WireKind::Struct(fields))
}
