//! The dynamic value model and the type descriptions used by the encoder.

use std::sync::Arc;

/// A Go type as the encoder needs to know it. Builtin kinds are never described on the wire;
/// composite types ([`TypeDef`]) are, once per stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    /// `bool` (wire id 1).
    Bool,
    /// Any signed integer (wire id 2).
    Int,
    /// Any unsigned integer (wire id 3).
    Uint,
    /// `float32`/`float64` (wire id 4).
    Float,
    /// `[]byte` (wire id 5).
    Bytes,
    /// `string` (wire id 6).
    String,
    /// `complex64`/`complex128` (wire id 7).
    Complex,
    /// `interface{}` (wire id 8).
    Interface,
    /// A struct, slice, array, map or GobEncoder type.
    Def(Arc<TypeDef>),
}

/// A composite type. `name` is what Go's encoder would send: the bare name of a named type
/// (`"PluginMetadata"`), the `reflect` spelling of an unnamed type used as a struct field
/// (`"[]plugin.Command"`), or empty for an unnamed top-level type. Names are informational to
/// Go's decoder; they only matter for byte-identical output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypeDef {
    /// The name sent in the definition.
    pub name: String,
    /// What the type is.
    pub kind: DefKind,
}

/// The shape of a composite type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DefKind {
    /// Exported fields in declaration order (gob field numbers).
    Struct(Vec<(String, Type)>),
    /// `[]Elem`.
    Slice(Type),
    /// `[Len]Elem`.
    Array(Type, u64),
    /// `map[Key]Elem`.
    Map(Type, Type),
    /// A type with its own `GobEncode` (e.g. `time.Time`): its value is an opaque byte string.
    GobEncoder,
}

impl Type {
    fn def(name: &str, kind: DefKind) -> Type {
        Type::Def(Arc::new(TypeDef {
            name: name.to_string(),
            kind,
        }))
    }

    /// A struct type with the given exported fields, in declaration order.
    pub fn structure(name: &str, fields: &[(&str, Type)]) -> Type {
        Self::def(
            name,
            DefKind::Struct(
                fields
                    .iter()
                    .map(|(n, t)| ((*n).to_string(), t.clone()))
                    .collect(),
            ),
        )
    }

    /// A slice type.
    pub fn slice(name: &str, elem: Type) -> Type {
        Self::def(name, DefKind::Slice(elem))
    }

    /// An array type.
    pub fn array(name: &str, elem: Type, len: u64) -> Type {
        Self::def(name, DefKind::Array(elem, len))
    }

    /// A map type.
    pub fn map(name: &str, key: Type, elem: Type) -> Type {
        Self::def(name, DefKind::Map(key, elem))
    }

    /// A GobEncoder type such as `time.Time` (name `"Time"`).
    pub fn gob_encoder(name: &str) -> Type {
        Self::def(name, DefKind::GobEncoder)
    }

    /// The predefined wire id of a builtin type.
    pub(crate) fn builtin_id(&self) -> Option<i64> {
        Some(match self {
            Type::Bool => 1,
            Type::Int => 2,
            Type::Uint => 3,
            Type::Float => 4,
            Type::Bytes => 5,
            Type::String => 6,
            Type::Complex => 7,
            Type::Interface => 8,
            Type::Def(_) => return None,
        })
    }

    /// The builtin type Go registers under `name` for interface values, if any.
    pub(crate) fn builtin_by_go_name(name: &str) -> Option<Type> {
        Some(match name {
            "bool" => Type::Bool,
            "int" | "int8" | "int16" | "int32" | "int64" => Type::Int,
            "uint" | "uint8" | "uint16" | "uint32" | "uint64" | "uintptr" => Type::Uint,
            "float32" | "float64" => Type::Float,
            "complex64" | "complex128" => Type::Complex,
            "string" => Type::String,
            "[]uint8" => Type::Bytes,
            _ => return None,
        })
    }
}

/// A decoded (or to-be-encoded) gob value.
///
/// Structs keep their fields by name in wire order; a field that is absent on the wire (Go
/// omits zero values) is simply not in the list. [`Value::Nil`] stands for a nil map, slice,
/// pointer or interface; as a struct field it means "omit".
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Nil / absent.
    Nil,
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    Float(f64),
    /// A complex number (real, imaginary).
    Complex(f64, f64),
    /// A `[]byte`.
    Bytes(Vec<u8>),
    /// A string (invalid UTF-8 from the peer is replaced, as it is only ever displayed).
    String(String),
    /// Elements of a slice or array.
    List(Vec<Value>),
    /// Entries of a map, in wire order.
    Map(Vec<(Value, Value)>),
    /// Fields present on the wire, by name, in field order. Names are shared with the decoder's
    /// type table, not copied per value.
    Struct(Vec<(Arc<str>, Value)>),
    /// A non-nil interface value: the concrete type's registered Go name and its value.
    Interface {
        /// The name the concrete type is registered under (`"string"`, `"float64"`, ...).
        name: String,
        /// The concrete value.
        value: Box<Value>,
    },
    /// The bytes produced by a GobEncoder type (e.g. `time.Time`).
    Encoded(Vec<u8>),
}

impl Value {
    /// A struct value from `(field name, value)` pairs.
    pub fn structure<I, S>(fields: I) -> Value
    where
        I: IntoIterator<Item = (S, Value)>,
        S: Into<Arc<str>>,
    {
        Value::Struct(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// The named field of a struct value (`None` when absent on the wire or not a struct).
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(fields) => fields.iter().find(|(n, _)| &**n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bool, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The signed integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The unsigned integer, if this is one.
    pub fn as_uint(&self) -> Option<u64> {
        match self {
            Value::Uint(u) => Some(*u),
            _ => None,
        }
    }

    /// The elements, if this is a slice or array (a nil slice is empty).
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            Value::Nil => Some(&[]),
            _ => None,
        }
    }

    /// A struct's string field, treating an absent field as Go's zero value `""`.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        match self.field(name) {
            None => matches!(self, Value::Struct(_)).then_some(""),
            Some(v) => v.as_str(),
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Uint(_) => "uint",
            Value::Float(_) => "float",
            Value::Complex(..) => "complex",
            Value::Bytes(_) => "[]byte",
            Value::String(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
            Value::Struct(_) => "struct",
            Value::Interface { .. } => "interface",
            Value::Encoded(_) => "encoded bytes",
        }
    }
}
