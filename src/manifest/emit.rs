//! The emitter that renders a manifest back to YAML: block style, strings quoted whenever a YAML 1.1
//! or 1.2 reader (Cloud Controller uses Ruby's Psych) could take them for anything but a string.
//!
//! Depends on: `yaml.rs` (how a plain scalar would be read back). Must not: know about manifests.

use super::value::Value;
use super::yaml::{Kind, resolve_plain};

impl Value {
    /// The value as a block-style YAML document (strings that could read as another type are quoted).
    pub fn to_yaml(&self) -> String {
        emit(self)
    }
}

/// Renders `value` as a block-style YAML document body (no `---`).
pub(crate) fn emit(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Map(entries) if !entries.is_empty() => emit_map(&mut out, entries, 0, false),
        Value::Seq(items) if !items.is_empty() => emit_seq(&mut out, items, 0, false),
        other => {
            out.push_str(&flow(other));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn emit_map(out: &mut String, entries: &[(Value, Value)], ind: usize, inline_first: bool) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if !(i == 0 && inline_first) {
            indent(out, ind);
        }
        out.push_str(&flow(k));
        out.push(':');
        match v {
            Value::Map(m) if !m.is_empty() => {
                out.push('\n');
                emit_map(out, m, ind + 2, false);
            }
            Value::Seq(s) if !s.is_empty() => {
                // As go-yaml writes it: a list under a key is not indented.
                out.push('\n');
                emit_seq(out, s, ind, false);
            }
            other => {
                out.push(' ');
                out.push_str(&flow(other));
                out.push('\n');
            }
        }
    }
}

fn emit_seq(out: &mut String, items: &[Value], ind: usize, inline_first: bool) {
    for (i, item) in items.iter().enumerate() {
        if !(i == 0 && inline_first) {
            indent(out, ind);
        }
        out.push_str("- ");
        match item {
            Value::Map(m) if !m.is_empty() => emit_map(out, m, ind + 2, true),
            Value::Seq(s) if !s.is_empty() => emit_seq(out, s, ind + 2, true),
            other => {
                out.push_str(&flow(other));
                out.push('\n');
            }
        }
    }
}

/// A value on one line: scalars, or flow collections (used for keys and empty collections).
fn flow(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => {
            if matches!(resolve_plain(f), Kind::Float(_)) {
                f.clone()
            } else {
                quote(f)
            }
        }
        Value::Str(s) => scalar_str(s),
        Value::Seq(items) => {
            let inner: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Map(entries) => {
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}: {}", flow(k), flow(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// A string as a plain scalar when that is unambiguous for every reader, else double-quoted.
fn scalar_str(s: &str) -> String {
    if is_safe_plain(s) {
        s.to_string()
    } else {
        quote(s)
    }
}

fn is_safe_plain(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if s.ends_with(' ') {
        return false;
    }
    let body_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | ' '));
    // Anything a YAML 1.1 reader might take for a boolean or null stays quoted.
    body_ok && matches!(resolve_plain(s), Kind::Str(_)) && !is_yaml11_special(s)
}

/// Psych (YAML 1.1) also reads these as non-strings.
fn is_yaml11_special(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "~"
    )
}

/// A double-quoted scalar. Non-printable characters are escaped (`\xNN`, `\uNNNN`).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        let code = c as u32;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            _ if code < 0x20 || code == 0x7f => out.push_str(&format!("\\x{code:02x}")),
            _ if (0x80..=0xa0).contains(&code)
                || matches!(code, 0x2028 | 0x2029 | 0xfeff | 0xfffe | 0xffff) =>
            {
                out.push_str(&format!("\\u{code:04x}"));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;

    #[test]
    fn emitted_strings_that_look_like_other_types_are_quoted() {
        let v = Value::Map(vec![
            (Value::Str("a".into()), Value::Str("1".into())),
            (Value::Str("b".into()), Value::Str("yes".into())),
            (Value::Str("c".into()), Value::Str("hello world".into())),
            (Value::Str("d".into()), Value::Str("x: y".into())),
            (Value::Str("e".into()), Value::Int(3)),
        ]);
        let text = emit(&v);
        assert_eq!(
            text,
            "a: \"1\"\nb: \"yes\"\nc: hello world\nd: \"x: y\"\ne: 3\n"
        );
        assert_eq!(parse(&text).unwrap().unwrap().to_value(), v);
    }
}
