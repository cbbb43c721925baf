//! [`Value`]: a YAML value as the manifest layer keeps it (types as the cf CLI's YAML library resolves
//! them), used for keys the plugin does not interpret and for `env` values.
//!
//! Depends on: nothing (`emit.rs` adds [`Value::to_yaml`]). Must not: print.

/// A YAML value. Mapping order is kept; floats are kept as written so nothing changes on the way back
/// out.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or an empty value.
    Null,
    /// `true`/`false` (also YAML 1.1 `yes`/`no`/`on`/`off`, as the cf CLI reads them).
    Bool(bool),
    /// An integer (the range of Go's int64 and uint64).
    Int(i128),
    /// A float, as written.
    Float(String),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Value>),
    /// A mapping, in source order.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// The value under string key `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string content of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar as text (`None` for null and collections): what the cf CLI gets when YAML puts a
    /// number or boolean where a string is expected.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.clone()),
            Value::Str(s) => Some(s.clone()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}
