//! `((var))` interpolation, as the cf CLI does it with bosh-cli's template evaluator.
//!
//! Vars come from `--vars-file` (in order, later files win) then `--var NAME=VALUE` (wins over files;
//! the value is read as YAML, so `--var n=3` is an integer). The manifest is parsed first (variables in
//! comments are ignored), then every string node, keys included, is scanned for
//! `((name))`/`((!name))` with `name` made of letters, digits, `_`, `-` and `.`:
//! - a node that is exactly one `((name))` is replaced by the value with its YAML type;
//! - inside a longer string only string and integer values are spliced;
//! - `((a.b))` digs into mapping `a`;
//! - every missing name is collected and reported at once, sorted;
//! - what the values add to the document is taken from the manifest's [`Budget`] (shared with the
//!   parse), so a large variable referenced thousands of times is an error, not an out-of-memory abort.
//!
//! Depends on: `yaml.rs`. Must not: read the manifest's keys.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Error, Location};
use super::value::Value;
use super::yaml::{self, Budget, Kind, MAX_DEPTH, Mark, NODE_BYTES, Node};

/// Variable values by name. Its `Debug` shows the names only.
#[derive(Clone, Default)]
pub(crate) struct Vars {
    values: HashMap<String, Value>,
}

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.values.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Vars")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl Vars {
    /// Reads the vars files in order, then applies the `--var` values.
    pub fn load(files: &[PathBuf], flags: &[(String, String)]) -> Result<Vars, Error> {
        let mut vars = Vars::default();
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
                what: "vars file",
                path: file.clone(),
                source,
            })?;
            vars.add_file_text(&text, file)?;
        }
        for (name, raw) in flags {
            vars.add_flag(name, raw)?;
        }
        Ok(vars)
    }

    /// Adds the variables of one vars file's text (later calls win).
    pub fn add_file_text(&mut self, text: &str, file: &Path) -> Result<(), Error> {
        let location = |mark: Mark| Location {
            file: file.to_path_buf(),
            line: mark.line,
            col: mark.col,
        };
        let root = yaml::parse(text).map_err(|e| Error::VarsFile {
            location: location(e.mark),
            message: e.message,
        })?;
        let Some(root) = root else {
            return Ok(());
        };
        match root.kind {
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let Some(name) = k.to_value().scalar_text() else {
                        return Err(Error::VarsFile {
                            location: location(k.mark),
                            message: format!(
                                "variable names must be strings, found {}",
                                k.type_name()
                            ),
                        });
                    };
                    self.values.insert(name, v.to_value());
                }
                Ok(())
            }
            Kind::Null => Ok(()),
            other => Err(Error::VarsFile {
                location: location(root.mark),
                message: format!(
                    "expected a mapping of variable names to values, found {}",
                    other.type_name()
                ),
            }),
        }
    }

    /// Adds one `--var NAME=VALUE` (the value is read as YAML).
    pub fn add_flag(&mut self, name: &str, raw: &str) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::VarFlag {
                name: name.into(),
                message: "expected var to specify non-empty name".into(),
            });
        }
        if raw.is_empty() {
            return Err(Error::VarFlag {
                name: name.into(),
                message: "expected var to specify non-empty value".into(),
            });
        }
        let value = match yaml::parse(raw) {
            Ok(Some(node)) => node.to_value(),
            Ok(None) => Value::Str(raw.to_string()),
            Err(e) => {
                return Err(Error::VarFlag {
                    name: name.into(),
                    message: format!(
                        "value is not valid YAML: {} (column {})",
                        e.message, e.mark.col
                    ),
                });
            }
        };
        self.values.insert(name.to_string(), value);
        Ok(())
    }

    /// Adds a variable directly.
    #[cfg(test)]
    pub fn set(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    /// Looks `name` up: the exact name first, then `a.b.c` as a path into mapping `a`.
    fn get(&self, name: &str) -> Option<&Value> {
        if let Some(v) = self.values.get(name) {
            return Some(v);
        }
        let mut parts = name.split('.');
        let mut cur = self.values.get(parts.next()?)?;
        for part in parts {
            cur = match cur {
                Value::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.scalar_text().as_deref() == Some(part))
                    .map(|(_, v)| v)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

/// One `((name))` occurrence in a string: its byte range and the name (without `!`).
#[derive(Debug, PartialEq, Eq)]
struct Occurrence {
    start: usize,
    end: usize,
    name: String,
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-' || c == '.'
}

/// Finds `\(\((!?[-\.\w\pL]+)\)\)` occurrences, leftmost first, without overlaps.
fn occurrences(s: &str) -> Vec<Occurrence> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = s[i..].find("((") {
        let start = i + off;
        let body_start = start + 2;
        let rest = &s[body_start..];
        let bang = rest.starts_with('!');
        let name_start = body_start + usize::from(bang);
        let name_len: usize = s[name_start..]
            .chars()
            .take_while(|c| is_name_char(*c))
            .map(char::len_utf8)
            .sum();
        let name_end = name_start + name_len;
        if name_len > 0 && s[name_end..].starts_with("))") {
            out.push(Occurrence {
                start,
                end: name_end + 2,
                name: s[name_start..name_end].to_string(),
            });
            i = name_end + 2;
        } else {
            i = start + 1;
        }
    }
    out
}

/// What a value costs against the [`Budget`] once turned into nodes (as [`Node::weight`]).
fn value_weight(value: &Value) -> usize {
    NODE_BYTES.saturating_add(match value {
        Value::Seq(items) => items
            .iter()
            .fold(0usize, |sum, v| sum.saturating_add(value_weight(v))),
        Value::Map(entries) => entries.iter().fold(0usize, |sum, (k, v)| {
            sum.saturating_add(value_weight(k))
                .saturating_add(value_weight(v))
        }),
        Value::Float(text) | Value::Str(text) => text.len(),
        Value::Null | Value::Bool(_) | Value::Int(_) => 0,
    })
}

/// How many levels of collections a value holds (as the parser counts a node's height).
fn value_height(value: &Value) -> usize {
    match value {
        Value::Seq(items) => 1 + items.iter().map(value_height).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| value_height(k).max(value_height(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// Interpolates every string node of `root` with a budget of its own. `file` is used in messages.
#[cfg(test)]
pub(crate) fn interpolate(root: Node, vars: &Vars, file: &Path) -> Result<Node, Error> {
    interpolate_with(root, vars, file, &mut Budget::default())
}

/// Interpolates every string node of `root`, taking what the values add from `budget`. `file` is
/// used in messages.
pub(crate) fn interpolate_with(
    root: Node,
    vars: &Vars,
    file: &Path,
    budget: &mut Budget,
) -> Result<Node, Error> {
    let mut missing = BTreeSet::new();
    let mut ctx = Walk {
        vars,
        file,
        missing: &mut missing,
        budget,
    };
    let node = ctx.walk(root, 0)?;
    if missing.is_empty() {
        Ok(node)
    } else {
        Err(Error::MissingVars {
            file: file.to_path_buf(),
            names: missing.into_iter().collect(),
        })
    }
}

/// The state of one interpolation.
struct Walk<'a> {
    vars: &'a Vars,
    file: &'a Path,
    missing: &'a mut BTreeSet<String>,
    budget: &'a mut Budget,
}

impl Walk<'_> {
    /// Interpolates `node`, which sits inside `depth` collections.
    fn walk(&mut self, node: Node, depth: usize) -> Result<Node, Error> {
        let mark = node.mark;
        match node.kind {
            Kind::Str(s) => self.substitute(s, mark, depth),
            Kind::Seq(items) => {
                let items = items
                    .into_iter()
                    .map(|n| self.walk(n, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Node::new(Kind::Seq(items), mark))
            }
            Kind::Map(entries) => {
                let entries = entries
                    .into_iter()
                    .map(|(k, v)| Ok((self.walk(k, depth + 1)?, self.walk(v, depth + 1)?)))
                    .collect::<Result<Vec<_>, Error>>()?;
                Ok(Node::new(Kind::Map(entries), mark))
            }
            other => Ok(Node::new(other, mark)),
        }
    }

    fn location(&self, mark: Mark) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: mark.line,
            col: mark.col,
        }
    }

    /// Takes `bytes` from the budget for what a variable adds at `mark`.
    fn charge(&mut self, bytes: usize, mark: Mark) -> Result<(), Error> {
        if self.budget.take(bytes) {
            Ok(())
        } else {
            Err(Error::Syntax {
                location: self.location(mark),
                message: Budget::exceeded(
                    "once its ((vars)) are interpolated (a large variable is used too often)",
                ),
                key: None,
            })
        }
    }

    fn substitute(&mut self, s: String, mark: Mark, depth: usize) -> Result<Node, Error> {
        let occ = occurrences(&s);
        if occ.is_empty() {
            return Ok(Node::new(Kind::Str(s), mark));
        }
        if occ.len() == 1 && occ[0].start == 0 && occ[0].end == s.len() {
            return match self.vars.get(&occ[0].name) {
                Some(v) => {
                    if depth.saturating_add(value_height(v)) > MAX_DEPTH {
                        return Err(Error::Syntax {
                            location: self.location(mark),
                            message: yaml::too_deep(&format!(
                                " once (({})) is interpolated",
                                occ[0].name
                            )),
                            key: None,
                        });
                    }
                    self.charge(value_weight(v), mark)?;
                    Ok(Node::from_var_value(
                        v,
                        mark,
                        &Arc::from(occ[0].name.as_str()),
                    ))
                }
                None => {
                    self.missing.insert(occ[0].name.clone());
                    Ok(Node::new(Kind::Str(s), mark))
                }
            };
        }
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let mut spliced: Vec<&str> = Vec::new();
        for o in &occ {
            out.push_str(&s[last..o.start]);
            last = o.end;
            match self.vars.get(&o.name) {
                Some(Value::Str(v)) => {
                    self.charge(v.len(), mark)?;
                    out.push_str(v);
                    spliced.push(&o.name);
                }
                Some(Value::Int(i)) => {
                    let text = i.to_string();
                    self.charge(text.len(), mark)?;
                    out.push_str(&text);
                    spliced.push(&o.name);
                }
                Some(other) => {
                    let type_name = match other {
                        Value::Null => "null",
                        Value::Bool(_) => "bool",
                        Value::Float(_) => "float64",
                        Value::Seq(_) => "list",
                        _ => "map",
                    };
                    return Err(Error::VarType {
                        location: self.location(mark),
                        name: o.name.clone(),
                        type_name: type_name.into(),
                    });
                }
                None => {
                    self.missing.insert(o.name.clone());
                    out.push_str(&s[o.start..o.end]);
                }
            }
        }
        out.push_str(&s[last..]);
        let mut node = Node::new(Kind::Str(out), mark);
        if !spliced.is_empty() {
            spliced.dedup();
            node.var = Some(Arc::from(spliced.join(", ").as_str()));
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(doc: &str, vars: &Vars) -> Result<Value, Error> {
        let node = yaml::parse(doc).unwrap().unwrap();
        interpolate(node, vars, Path::new("m.yml")).map(|n| n.to_value())
    }

    #[test]
    fn finds_occurrences_like_the_bosh_regex() {
        let o = occurrences("x((a))y((!b.c))((bad name))(((d))");
        let names: Vec<_> = o.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b.c", "d"]);
        assert!(occurrences("(( a ))").is_empty());
        assert_eq!(occurrences("((日本))")[0].name, "日本");
    }

    #[test]
    fn whole_value_keeps_type_and_splice_makes_string() {
        let mut v = Vars::default();
        v.set("n", Value::Int(3));
        v.set("host", Value::Str("web".into()));
        let out = run("a: ((n))\nb: ((host)).example.com\nc: ((n))M\n", &v).unwrap();
        assert_eq!(out.get("a"), Some(&Value::Int(3)));
        assert_eq!(out.get("b"), Some(&Value::Str("web.example.com".into())));
        assert_eq!(out.get("c"), Some(&Value::Str("3M".into())));
    }

    #[test]
    fn missing_vars_are_all_listed_sorted() {
        let e = run(
            "a: ((zeta))\nb: x-((alpha))\n((key)): 1\n",
            &Vars::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.yml: Expected to find variables: alpha, key, zeta"
        );
    }

    #[test]
    fn dotted_names_dig_into_maps() {
        let mut v = Vars::default();
        v.add_file_text("db:\n  host: h\n  port: 5432\n", Path::new("v.yml"))
            .unwrap();
        let out = run("a: ((db.host)):((db.port))\nb: ((db))\n", &v).unwrap();
        assert_eq!(out.get("a"), Some(&Value::Str("h:5432".into())));
        assert!(matches!(out.get("b"), Some(Value::Map(_))));
    }

    #[test]
    fn booleans_cannot_be_spliced() {
        let mut v = Vars::default();
        v.set("flag", Value::Bool(true));
        let e = run("a: x-((flag))\n", &v).unwrap_err();
        assert!(
            e.to_string().starts_with("m.yml:1:4: invalid type 'bool'"),
            "{e}"
        );
    }

    #[test]
    fn var_flags_are_yaml_and_win_over_files() {
        let mut v = Vars::default();
        v.add_file_text("n: 1\ns: a\n", Path::new("v.yml")).unwrap();
        v.add_flag("n", "3").unwrap();
        v.add_flag("l", "[a, b]").unwrap();
        assert_eq!(v.get("n"), Some(&Value::Int(3)));
        assert_eq!(v.get("s"), Some(&Value::Str("a".into())));
        assert!(matches!(v.get("l"), Some(Value::Seq(items)) if items.len() == 2));
        assert!(v.add_flag("x", "").is_err());
    }

    #[test]
    fn debug_shows_variable_names_only() {
        let mut v = Vars::default();
        v.add_flag("db_password", "hunter2").unwrap();
        v.add_file_text("api_key: s3cr3t\n", Path::new("v.yml"))
            .unwrap();
        let shown = format!("{v:?}");
        assert!(
            shown.contains("db_password") && shown.contains("api_key"),
            "{shown}"
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn errors_about_interpolated_values_name_the_variable_not_the_value() {
        let mut v = Vars::default();
        v.add_flag("flag", "true").unwrap();
        v.add_flag("ratio", "0.123456789").unwrap();
        for (doc, name) in [("a: x-((flag))\n", "flag"), ("a: x-((ratio))\n", "ratio")] {
            let e = run(doc, &v).unwrap_err().to_string();
            assert!(e.contains(&format!("variable '{name}'")), "{e}");
            assert!(!e.contains("true") && !e.contains("0.123456789"), "{e}");
        }
    }

    #[test]
    fn a_deep_variable_in_a_deep_manifest_is_refused() {
        let mut v = Vars::default();
        let deep = format!("{}x{}", "[".repeat(150), "]".repeat(150));
        v.add_flag("deep", &deep).unwrap();
        assert!(run("a: ((deep))\n", &v).is_ok());
        let doc = format!("a: {}((deep)){}\n", "[".repeat(60), "]".repeat(60));
        let e = run(&doc, &v).unwrap_err().to_string();
        assert!(e.contains("nested too deeply"), "{e}");
        assert!(e.contains("((deep))"), "{e}");
    }

    #[test]
    fn vars_file_must_be_a_mapping() {
        let mut v = Vars::default();
        let e = v
            .add_file_text("- a\n- b\n", Path::new("v.yml"))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("v.yml:1:1: the option --vars-file expects a valid YAML file"),
            "{e}"
        );
        let e = v.add_file_text("a: [\n", Path::new("v.yml")).unwrap_err();
        assert!(e.to_string().starts_with("v.yml:"), "{e}");
    }
}
