//! The gob encoder: one per stream (per TCP connection and direction).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Error;
use super::value::{DefKind, Type, TypeDef, Value};
use super::wire::{put_bytes, put_float, put_int, put_uint};

/// First type id Go allocates for user types.
const FIRST_USER_ID: i64 = 65;

/// Encodes values onto one gob stream, sending each type definition once, before first use.
///
/// Type ids are allocated per encoder in the order Go's encoder would allocate them in a
/// fresh process (structs take their id before their fields' types; slices, arrays and maps
/// after their element types), and definitions are sent outer type first, so a stream that
/// uses the same types as a Go program is byte-identical to that program's.
#[derive(Debug, Default)]
pub struct Encoder {
    ids: HashMap<Arc<TypeDef>, i64>,
    next_id: i64,
    sent: HashSet<i64>,
}

impl Encoder {
    /// A fresh stream.
    pub fn new() -> Self {
        Self {
            next_id: FIRST_USER_ID,
            ..Self::default()
        }
    }

    /// Appends to `out` the definitions `value`'s type still needs, then the value message.
    ///
    /// # Errors
    /// When `value` does not fit `ty` (a kind mismatch, an array of the wrong length, an
    /// interface holding a non-builtin type).
    pub fn encode(&mut self, ty: &Type, value: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
        self.assign_ids(ty);
        // Encode the value first so that nothing is written when it does not fit the type.
        let mut body = Vec::new();
        put_int(&mut body, self.id_of(ty)?);
        match ty {
            Type::Def(def) if matches!(def.kind, DefKind::Struct(_)) => {
                self.encode_value(ty, value, &mut body)?;
            }
            _ => {
                // A top-level non-struct value is a "singleton": field delta 0, then the value.
                body.push(0);
                self.encode_value(ty, value, &mut body)?;
            }
        }
        self.send_type(ty, out)?;
        write_message(out, &body);
        Ok(())
    }

    /// A fresh stream whose first new type gets `id` (tests that compare with a Go process
    /// which had already allocated ids).
    #[cfg(test)]
    pub(crate) fn starting_at(id: i64) -> Self {
        Self {
            next_id: id,
            ..Self::default()
        }
    }

    fn assign_ids(&mut self, ty: &Type) {
        let Type::Def(def) = ty else { return };
        if self.ids.contains_key(def) {
            return;
        }
        match &def.kind {
            DefKind::Struct(fields) => {
                // Go gives a struct its id before resolving its fields (type.go, newStructType).
                self.allocate(def);
                for (_, f) in fields {
                    self.assign_ids(f);
                }
            }
            DefKind::Slice(elem) | DefKind::Array(elem, _) => {
                self.assign_ids(elem);
                self.allocate(def);
            }
            DefKind::Map(k, v) => {
                self.assign_ids(k);
                self.assign_ids(v);
                self.allocate(def);
            }
            DefKind::GobEncoder => self.allocate(def),
        }
    }

    fn allocate(&mut self, def: &Arc<TypeDef>) {
        self.ids.insert(Arc::clone(def), self.next_id);
        self.next_id += 1;
    }

    fn id_of(&self, ty: &Type) -> Result<i64, Error> {
        match ty {
            Type::Def(def) => self
                .ids
                .get(def)
                .copied()
                .ok_or_else(|| Error::Encode(format!("type '{}' has no id", def.name))),
            builtin => builtin
                .builtin_id()
                .ok_or_else(|| Error::Encode("builtin type without id".into())),
        }
    }

    /// Sends `ty`'s definition if not yet sent on this stream, then those of its inner
    /// types (Go's `sendActualType`: outer first, depth first).
    fn send_type(&mut self, ty: &Type, out: &mut Vec<u8>) -> Result<(), Error> {
        let Type::Def(def) = ty else { return Ok(()) };
        let id = self.id_of(ty)?;
        if !self.sent.insert(id) {
            return Ok(());
        }
        let mut msg = Vec::new();
        put_int(&mut msg, -id);
        let (slot, inner): (u64, Vec<Type>) = match &def.kind {
            DefKind::Array(elem, _) => (0, vec![elem.clone()]),
            DefKind::Slice(elem) => (1, vec![elem.clone()]),
            DefKind::Struct(fields) => (2, fields.iter().map(|(_, t)| t.clone()).collect()),
            DefKind::Map(k, v) => (3, vec![k.clone(), v.clone()]),
            DefKind::GobEncoder => (4, Vec::new()),
        };
        // wireType: only the field for this kind is set.
        put_uint(&mut msg, slot + 1);
        // Field 0 of every *Type struct: the embedded CommonType{Name, Id}.
        put_uint(&mut msg, 1);
        if def.name.is_empty() {
            put_uint(&mut msg, 2);
        } else {
            put_uint(&mut msg, 1);
            put_bytes(&mut msg, def.name.as_bytes());
            put_uint(&mut msg, 1);
        }
        put_int(&mut msg, id);
        msg.push(0);
        match &def.kind {
            DefKind::Array(elem, len) => {
                put_uint(&mut msg, 1);
                put_int(&mut msg, self.id_of(elem)?);
                if *len != 0 {
                    put_uint(&mut msg, 1);
                    put_int(&mut msg, i64::try_from(*len).map_err(|_| too_long(*len))?);
                }
            }
            DefKind::Slice(elem) => {
                put_uint(&mut msg, 1);
                put_int(&mut msg, self.id_of(elem)?);
            }
            DefKind::Struct(fields) => {
                if !fields.is_empty() {
                    put_uint(&mut msg, 1);
                    put_uint(&mut msg, fields.len() as u64);
                    for (name, fty) in fields {
                        if name.is_empty() {
                            put_uint(&mut msg, 2);
                        } else {
                            put_uint(&mut msg, 1);
                            put_bytes(&mut msg, name.as_bytes());
                            put_uint(&mut msg, 1);
                        }
                        put_int(&mut msg, self.id_of(fty)?);
                        msg.push(0);
                    }
                }
            }
            DefKind::Map(k, v) => {
                put_uint(&mut msg, 1);
                put_int(&mut msg, self.id_of(k)?);
                put_uint(&mut msg, 1);
                put_int(&mut msg, self.id_of(v)?);
            }
            DefKind::GobEncoder => {}
        }
        msg.push(0); // end of the *Type struct
        msg.push(0); // end of wireType
        write_message(out, &msg);
        for t in &inner {
            self.send_type(t, out)?;
        }
        Ok(())
    }

    fn encode_value(&mut self, ty: &Type, value: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
        match (ty, value) {
            (Type::Bool, Value::Bool(b)) => put_uint(out, u64::from(*b)),
            (Type::Int, Value::Int(i)) => put_int(out, *i),
            (Type::Uint, Value::Uint(u)) => put_uint(out, *u),
            (Type::Float, Value::Float(f)) => put_float(out, *f),
            (Type::Complex, Value::Complex(re, im)) => {
                put_float(out, *re);
                put_float(out, *im);
            }
            (Type::Bytes, Value::Bytes(b)) => put_bytes(out, b),
            (Type::String, Value::String(s)) => put_bytes(out, s.as_bytes()),
            (Type::Interface, Value::Nil) => put_uint(out, 0),
            (Type::Interface, Value::Interface { name, value }) => {
                let concrete = Type::builtin_by_go_name(name).ok_or_else(|| {
                    Error::Encode(format!(
                        "interface values of type '{name}' are not supported (builtin types only)"
                    ))
                })?;
                put_bytes(out, name.as_bytes());
                put_int(out, self.id_of(&concrete)?);
                let mut inner = vec![0u8];
                self.encode_value(&concrete, value, &mut inner)?;
                put_bytes(out, &inner);
            }
            (Type::Def(def), _) => self.encode_def(def, value, out)?,
            (ty, v) => return Err(mismatch(ty, v)),
        }
        Ok(())
    }

    fn encode_def(&mut self, def: &TypeDef, value: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
        match (&def.kind, value) {
            (DefKind::Struct(fields), Value::Struct(_)) => {
                let mut last: i64 = -1;
                for (i, (name, fty)) in (0i64..).zip(fields) {
                    let Some(v) = value.field(name) else { continue };
                    if omitted(fty, v) {
                        continue;
                    }
                    // i > last, both small.
                    put_uint(out, (i - last) as u64);
                    self.encode_value(fty, v, out)?;
                    last = i;
                }
                out.push(0);
            }
            (DefKind::Slice(elem), Value::List(items)) => {
                put_uint(out, items.len() as u64);
                for item in items {
                    self.encode_value(elem, item, out)?;
                }
            }
            (DefKind::Slice(_) | DefKind::Map(..), Value::Nil) => put_uint(out, 0),
            (DefKind::Array(elem, len), Value::List(items)) => {
                if items.len() as u64 != *len {
                    return Err(Error::Encode(format!(
                        "array '{}' needs {len} elements, got {}",
                        def.name,
                        items.len()
                    )));
                }
                put_uint(out, *len);
                for item in items {
                    self.encode_value(elem, item, out)?;
                }
            }
            (DefKind::Map(k, v), Value::Map(entries)) => {
                put_uint(out, entries.len() as u64);
                for (key, val) in entries {
                    self.encode_value(k, key, out)?;
                    self.encode_value(v, val, out)?;
                }
            }
            (DefKind::GobEncoder, Value::Encoded(b)) => put_bytes(out, b),
            (_, v) => {
                return Err(Error::Encode(format!(
                    "a {} value does not fit type '{}'",
                    v.kind_name(),
                    def.name
                )));
            }
        }
        Ok(())
    }
}

/// Whether Go's encoder leaves a struct field of this value out (zero values, nil).
fn omitted(ty: &Type, v: &Value) -> bool {
    match v {
        Value::Nil => true,
        Value::Bool(b) => !b,
        Value::Int(i) => *i == 0,
        Value::Uint(u) => *u == 0,
        Value::Float(f) => *f == 0.0,
        Value::Complex(re, im) => *re == 0.0 && *im == 0.0,
        Value::Bytes(b) => b.is_empty(),
        Value::String(s) => s.is_empty(),
        // Empty slices are omitted; arrays are always sent.
        Value::List(items) => {
            items.is_empty() && !matches!(ty, Type::Def(d) if matches!(d.kind, DefKind::Array(..)))
        }
        // A non-nil map is sent even when empty; structs are always sent.
        Value::Map(_) | Value::Struct(_) | Value::Interface { .. } | Value::Encoded(_) => false,
    }
}

fn write_message(out: &mut Vec<u8>, body: &[u8]) {
    put_uint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn mismatch(ty: &Type, v: &Value) -> Error {
    Error::Encode(format!(
        "a {} value does not fit type {ty:?}",
        v.kind_name()
    ))
}

fn too_long(len: u64) -> Error {
    Error::Encode(format!("array length {len} is too large"))
}
