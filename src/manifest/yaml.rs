//! A YAML document tree with a line/column mark on every node, built from `saphyr-parser` events.
//!
//! Mirrors what the cf CLI gets from `gopkg.in/yaml.v2`: plain scalars are resolved with the YAML 1.1
//! rules of that library (`yes`/`no`/`on`/`off` are booleans, `0x1F` and `0777` are integers), anchors and
//! aliases are expanded, merge keys (`<<`) are applied. Unlike yaml.v2, a key repeated in one mapping is an
//! error (the user almost certainly did not mean it), and every node keeps where it came from, so the
//! model layer can point at the offending key.
//!
//! The way back out, from a [`Value`] to YAML text, is `emit.rs`.
//!
//! Depends on: saphyr-parser. Must not: know about manifests.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::value::Value;

/// Deepest nesting of collections accepted, counted in the tree as built (aliases expanded, and
/// again after `((vars))` interpolation); deeper documents are rejected instead of risking the
/// stack of every recursive walk over the tree.
pub(crate) const MAX_DEPTH: usize = 200;
/// Most bytes one manifest may expand to, counted over the whole document after alias expansion and
/// `((vars))` interpolation: every node costs [`NODE_BYTES`] plus the bytes of its text. Guards
/// against "billion laughs" (an anchor aliased thousands of times) and against a large variable
/// referenced thousands of times; a real manifest is a few kilobytes.
pub(crate) const MAX_EXPANDED_BYTES: usize = 64 << 20;
/// What a node costs against [`MAX_EXPANDED_BYTES`] besides its text: roughly the memory of the node
/// itself and of its slot in its parent.
pub(crate) const NODE_BYTES: usize = 64;

/// What is left of the [`MAX_EXPANDED_BYTES`] a document may expand to. One budget is shared by the
/// parse of a manifest and the interpolation of its vars.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    left: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(MAX_EXPANDED_BYTES)
    }
}

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Budget {
        Budget { left: bytes }
    }

    /// Takes `bytes` from the budget; false (and nothing taken) when not that many are left.
    pub fn take(&mut self, bytes: usize) -> bool {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }

    /// The message for a document that went over the budget while `doing`.
    pub fn exceeded(doing: &str) -> String {
        format!(
            "manifest expands to more than {} MiB {doing}",
            MAX_EXPANDED_BYTES >> 20
        )
    }
}

/// Where a node starts in its source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mark {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl Mark {
    fn from_span(span: &Span) -> Mark {
        Mark {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// A YAML node with its mark.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Where the node starts.
    pub mark: Mark,
    /// What it holds.
    pub kind: Kind,
    /// The `((var))` (or vars, comma-separated) whose value this node is, is part of, or had
    /// spliced into its text: a message about the node names the variable and never shows
    /// the value, which may be a secret.
    pub var: Option<Arc<str>>,
}

/// The content of a node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    /// A float, kept as written.
    Float(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A node of `kind` at `mark`.
    pub fn new(kind: Kind, mark: Mark) -> Node {
        Node {
            mark,
            kind,
            var: None,
        }
    }

    /// The value without marks.
    pub fn to_value(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::Int(*i),
            Kind::Float(f) => Value::Float(f.clone()),
            Kind::Str(s) => Value::Str(s.clone()),
            Kind::Seq(items) => Value::Seq(items.iter().map(Node::to_value).collect()),
            Kind::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_value(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// Builds a node tree from the value of the variable `var`, every node at `mark` and
    /// marked as coming from `var`.
    pub fn from_var_value(value: &Value, mark: Mark, var: &Arc<str>) -> Node {
        let node = |v: &Value| Node::from_var_value(v, mark, var);
        let kind = match value {
            Value::Null => Kind::Null,
            Value::Bool(b) => Kind::Bool(*b),
            Value::Int(i) => Kind::Int(*i),
            Value::Float(f) => Kind::Float(f.clone()),
            Value::Str(s) => Kind::Str(s.clone()),
            Value::Seq(items) => Kind::Seq(items.iter().map(node).collect()),
            Value::Map(entries) => {
                Kind::Map(entries.iter().map(|(k, v)| (node(k), node(v))).collect())
            }
        };
        Node {
            mark,
            kind,
            var: Some(Arc::clone(var)),
        }
    }

    /// How the node's `text` reads in a message: quoted, or, for a value that came from a
    /// `((var))`, as `the value of ((name))` (the text is not shown: it may be a secret).
    pub fn shown(&self, text: &str) -> String {
        match &self.var {
            Some(var) => format!("the value of (({var}))"),
            None => format!("'{text}'"),
        }
    }

    /// The string content if this is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Short description of the node's type for messages.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// The node as it would read in a message: scalars as text, collections by type.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.clone(),
            Kind::Str(s) => s.clone(),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }

    /// What the node and everything under it cost against the [`Budget`].
    pub fn weight(&self) -> usize {
        NODE_BYTES.saturating_add(match &self.kind {
            Kind::Seq(items) => items
                .iter()
                .fold(0usize, |sum, n| sum.saturating_add(n.weight())),
            Kind::Map(entries) => entries.iter().fold(0usize, |sum, (k, v)| {
                sum.saturating_add(k.weight()).saturating_add(v.weight())
            }),
            Kind::Float(text) | Kind::Str(text) => text.len(),
            Kind::Null | Kind::Bool(_) | Kind::Int(_) => 0,
        })
    }
}

impl Kind {
    /// Short description of the type for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// A problem found while reading YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// Where it was found.
    pub mark: Mark,
    /// What is wrong (lowercase, no location).
    pub message: String,
    /// The key concerned, when there is one.
    pub key: Option<String>,
}

impl SyntaxError {
    fn new(mark: Mark, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            mark,
            message: message.into(),
            key: None,
        }
    }
}

/// An open collection while building the tree. `height` is the largest [`Height`] of the
/// children so far.
enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        height: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        height: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        /// Indexes of entries whose key was a plain `<<`.
        merges: Vec<usize>,
    },
}

impl Frame {
    fn height_mut(&mut self) -> &mut usize {
        match self {
            Frame::Seq { height, .. } | Frame::Map { height, .. } => height,
        }
    }
}

/// How many levels of collections a node holds: 0 for a scalar, 1 + the largest child's for a
/// list or mapping. An alias inserts its anchor's whole height at the alias's depth.
type Height = usize;

/// The error for a node that would end deeper than [`MAX_DEPTH`] levels of collections.
pub(crate) fn too_deep(doing: &str) -> String {
    format!("document is nested too deeply (more than {MAX_DEPTH} levels{doing})")
}

/// Parses the first YAML document of `text` with a budget of its own. `Ok(None)` for a stream with
/// no document (empty file, only comments).
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    parse_with(text, &mut Budget::default())
}

/// As [`parse`], taking what the document expands to (aliases included) from `budget`.
pub(crate) fn parse_with(text: &str, budget: &mut Budget) -> Result<Option<Node>, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_tabs(text)?;
    let mut parser = Parser::new_from_str(text);
    let mut tree = TreeBuilder::new(budget);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            let m = e.marker();
            SyntaxError::new(
                Mark {
                    line: m.line(),
                    col: m.col() + 1,
                },
                e.info().to_string(),
            )
        })?;
        if tree.event(event, Mark::from_span(&span))?.is_break() {
            break;
        }
    }
    Ok(tree.root)
}

/// A node just completed by an event, to be attached to the open collection (or be the root).
struct Completed {
    node: Node,
    /// Its anchor id (0: none).
    anchor: usize,
    /// Whether it is a plain `<<` (a merge key when it stands as a key).
    is_merge: bool,
    height: Height,
}

impl Completed {
    fn node(node: Node, anchor: usize, height: Height) -> Self {
        Completed {
            node,
            anchor,
            is_merge: false,
            height,
        }
    }
}

/// Builds the tree of the first document from the parser's events, charging `budget` and
/// bounding the depth as it goes.
struct TreeBuilder<'b> {
    budget: &'b mut Budget,
    /// The collections open around the current event, innermost last.
    stack: Vec<Frame>,
    /// Each anchored node with its weight and height, so an alias is charged and its depth
    /// checked without walking it first.
    anchors: HashMap<usize, (Node, usize, Height)>,
    root: Option<Node>,
    in_document: bool,
}

impl<'b> TreeBuilder<'b> {
    fn new(budget: &'b mut Budget) -> Self {
        TreeBuilder {
            budget,
            stack: Vec::new(),
            anchors: HashMap::new(),
            root: None,
            in_document: false,
        }
    }

    /// Takes one event; `Break` once the first document is complete.
    fn event(&mut self, event: Event<'_>, mark: Mark) -> Result<ControlFlow<()>, SyntaxError> {
        let completed = match event {
            Event::StreamStart | Event::Nothing => None,
            Event::StreamEnd => return Ok(ControlFlow::Break(())),
            Event::DocumentStart(_) => {
                if self.root.is_some() {
                    // yaml.v2's Unmarshal reads the first document only.
                    return Ok(ControlFlow::Break(()));
                }
                self.in_document = true;
                None
            }
            Event::DocumentEnd => {
                self.in_document = false;
                if self.root.is_some() {
                    return Ok(ControlFlow::Break(()));
                }
                None
            }
            Event::Alias(id) => Some(self.alias(id, mark)?),
            Event::Scalar(text, style, anchor, tag) => {
                take_budget(self.budget, NODE_BYTES.saturating_add(text.len()), mark)?;
                let tag = tag.map(|t| (t.handle.clone(), t.suffix.clone()));
                let is_merge = style == ScalarStyle::Plain && tag.is_none() && text == "<<";
                let tag_ref = tag.as_ref().map(|(h, s)| (h.as_str(), s.as_str()));
                let kind = resolve_scalar(&text, style, tag_ref, mark)?;
                Some(Completed {
                    is_merge,
                    ..Completed::node(Node::new(kind, mark), anchor, 0)
                })
            }
            Event::SequenceStart(anchor, _) => {
                self.open(
                    Frame::Seq {
                        mark,
                        anchor,
                        height: 0,
                        items: Vec::new(),
                    },
                    mark,
                )?;
                None
            }
            Event::MappingStart(anchor, _) => {
                self.open(
                    Frame::Map {
                        mark,
                        anchor,
                        height: 0,
                        entries: Vec::new(),
                        key: None,
                        merges: Vec::new(),
                    },
                    mark,
                )?;
                None
            }
            Event::SequenceEnd => Some(self.close_seq(mark)?),
            Event::MappingEnd => Some(self.close_map(mark)?),
        };
        Ok(match completed {
            Some(completed) => self.attach(completed),
            None => ControlFlow::Continue(()),
        })
    }

    /// An alias: a copy of its anchor's node, charged and depth-checked before it is copied.
    fn alias(&mut self, id: usize, mark: Mark) -> Result<Completed, SyntaxError> {
        let Some((target, weight, height)) = self.anchors.get(&id) else {
            return Err(SyntaxError::new(mark, "alias refers to an unknown anchor"));
        };
        // Checked before the clone: chained anchors can make an alias thousands of
        // levels deep in a few kilobytes, and cloning it would overflow the stack.
        if self.stack.len().saturating_add(*height) > MAX_DEPTH {
            return Err(SyntaxError::new(
                mark,
                too_deep(" once its aliases are expanded"),
            ));
        }
        if !self.budget.take(*weight) {
            return Err(SyntaxError::new(
                mark,
                Budget::exceeded("once its aliases are expanded (an anchor is used too often)"),
            ));
        }
        let mut node = target.clone();
        node.mark = mark;
        Ok(Completed::node(node, 0, *height))
    }

    /// A sequence or mapping starts.
    fn open(&mut self, frame: Frame, mark: Mark) -> Result<(), SyntaxError> {
        take_budget(self.budget, NODE_BYTES, mark)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError::new(mark, too_deep("")));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// The innermost collection, a sequence, ends.
    fn close_seq(&mut self, mark: Mark) -> Result<Completed, SyntaxError> {
        match self.stack.pop() {
            Some(Frame::Seq {
                mark,
                anchor,
                height,
                items,
            }) => Ok(Completed::node(
                Node::new(Kind::Seq(items), mark),
                anchor,
                height + 1,
            )),
            _ => Err(SyntaxError::new(mark, "unbalanced sequence end")),
        }
    }

    /// The innermost collection, a mapping, ends: its merge keys are applied.
    fn close_map(&mut self, mark: Mark) -> Result<Completed, SyntaxError> {
        match self.stack.pop() {
            Some(Frame::Map {
                mark,
                anchor,
                height,
                entries,
                merges,
                ..
            }) => {
                let entries = finish_map(entries, &merges)?;
                Ok(Completed::node(
                    Node::new(Kind::Map(entries), mark),
                    anchor,
                    height + 1,
                ))
            }
            _ => Err(SyntaxError::new(mark, "unbalanced mapping end")),
        }
    }

    /// Records an anchored node and puts `completed` into its parent, or makes it the root;
    /// `Break` when a second root would start.
    fn attach(&mut self, completed: Completed) -> ControlFlow<()> {
        let Completed {
            node,
            anchor,
            is_merge,
            height,
        } = completed;
        if anchor != 0 {
            let weight = node.weight();
            self.anchors.insert(anchor, (node.clone(), weight, height));
        }
        if let Some(parent) = self.stack.last_mut() {
            let h = parent.height_mut();
            *h = (*h).max(height);
        }
        match self.stack.last_mut() {
            None => {
                if !self.in_document && self.root.is_some() {
                    return ControlFlow::Break(());
                }
                self.root = Some(node);
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                merges,
                ..
            }) => match key.take() {
                None => {
                    if is_merge {
                        merges.push(entries.len());
                    }
                    *key = Some(node);
                }
                Some(k) => entries.push((k, node)),
            },
        }
        ControlFlow::Continue(())
    }
}

fn take_budget(budget: &mut Budget, bytes: usize, mark: Mark) -> Result<(), SyntaxError> {
    if budget.take(bytes) {
        Ok(())
    } else {
        Err(SyntaxError::new(mark, Budget::exceeded("(too many nodes)")))
    }
}

/// A node as a hash key: equal when the values are equal, marks ignored (as [`Value`] compares).
struct KeyRef<'a>(&'a Node);

impl PartialEq for KeyRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        same_value(self.0, other.0)
    }
}

impl Eq for KeyRef<'_> {}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_value(self.0, state);
    }
}

fn same_value(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (Kind::Seq(x), Kind::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Kind::Map(x), Kind::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ak, av), (bk, bv))| same_value(ak, bk) && same_value(av, bv))
        }
        (Kind::Seq(_) | Kind::Map(_), _) | (_, Kind::Seq(_) | Kind::Map(_)) => false,
        (x, y) => x == y,
    }
}

fn hash_value<H: Hasher>(node: &Node, state: &mut H) {
    std::mem::discriminant(&node.kind).hash(state);
    match &node.kind {
        Kind::Null => {}
        Kind::Bool(b) => b.hash(state),
        Kind::Int(i) => i.hash(state),
        Kind::Float(s) | Kind::Str(s) => s.hash(state),
        Kind::Seq(items) => {
            items.len().hash(state);
            for item in items {
                hash_value(item, state);
            }
        }
        Kind::Map(entries) => {
            entries.len().hash(state);
            for (k, v) in entries {
                hash_value(k, state);
                hash_value(v, state);
            }
        }
    }
}

fn merge_error(mark: Mark) -> SyntaxError {
    SyntaxError {
        mark,
        message: "merge key '<<' needs a mapping or a list of mappings".into(),
        key: Some("<<".into()),
    }
}

/// The mappings a `<<` value merges: `<<: map` or `<<: [map, map]`.
fn merge_sources(value: &Node) -> Result<Vec<&[(Node, Node)]>, SyntaxError> {
    let sources: Vec<&Node> = match &value.kind {
        Kind::Map(_) => vec![value],
        Kind::Seq(items) => items.iter().collect(),
        _ => return Err(merge_error(value.mark)),
    };
    sources
        .into_iter()
        .map(|src| match &src.kind {
            Kind::Map(entries) => Ok(entries.as_slice()),
            _ => Err(merge_error(src.mark)),
        })
        .collect()
}

/// Applies merge keys and rejects duplicate keys, in time linear in the number of keys.
fn finish_map(
    entries: Vec<(Node, Node)>,
    merges: &[usize],
) -> Result<Vec<(Node, Node)>, SyntaxError> {
    let merge_at: HashSet<usize> = merges.iter().copied().collect();
    // Duplicates among explicit keys are errors.
    let mut seen: HashMap<KeyRef<'_>, Mark> = HashMap::with_capacity(entries.len());
    for (i, (k, _)) in entries.iter().enumerate() {
        if merge_at.contains(&i) {
            continue;
        }
        match seen.entry(KeyRef(k)) {
            Entry::Occupied(first) => {
                return Err(SyntaxError {
                    mark: k.mark,
                    message: format!(
                        "duplicate key '{}' (first defined at line {})",
                        k.describe(),
                        first.get().line
                    ),
                    key: Some(k.describe()),
                });
            }
            Entry::Vacant(slot) => {
                slot.insert(k.mark);
            }
        }
    }
    if merges.is_empty() {
        return Ok(entries);
    }
    // Which merged entries are kept, per `<<` entry and source mapping: earlier maps in a list
    // win, explicit keys always win.
    let mut keep: HashMap<usize, Vec<Vec<bool>>> = HashMap::with_capacity(merges.len());
    for &i in merges {
        let Some((_, value)) = entries.get(i) else {
            continue;
        };
        let mut masks = Vec::new();
        for src in merge_sources(value)? {
            let mask = src
                .iter()
                .map(|(mk, _)| match seen.entry(KeyRef(mk)) {
                    Entry::Occupied(_) => false,
                    Entry::Vacant(slot) => {
                        slot.insert(mk.mark);
                        true
                    }
                })
                .collect();
            masks.push(mask);
        }
        keep.insert(i, masks);
    }
    drop(seen);
    let mut out: Vec<(Node, Node)> = Vec::with_capacity(entries.len());
    for (i, (k, v)) in entries.into_iter().enumerate() {
        let Some(masks) = keep.remove(&i) else {
            out.push((k, v));
            continue;
        };
        let sources = match v.kind {
            Kind::Map(_) => vec![v],
            Kind::Seq(items) => items,
            _ => Vec::new(),
        };
        for (src, mask) in sources.into_iter().zip(masks) {
            if let Kind::Map(src_entries) = src.kind {
                out.extend(
                    src_entries
                        .into_iter()
                        .zip(mask)
                        .filter_map(|(entry, kept)| kept.then_some(entry)),
                );
            }
        }
    }
    Ok(out)
}

/// Rejects tab characters used for indentation, with a clearer message than the parser's.
fn check_tabs(text: &str) -> Result<(), SyntaxError> {
    let mut in_block_scalar: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        if let Some(block_indent) = in_block_scalar {
            if rest.is_empty() || rest.trim().is_empty() || indent > block_indent {
                continue;
            }
            in_block_scalar = None;
        }
        if rest.starts_with('\t') {
            let after = rest.trim_start_matches([' ', '\t']);
            // A tab before a comment or on an empty line is harmless.
            if !after.is_empty() && !after.starts_with('#') {
                return Err(SyntaxError::new(
                    Mark {
                        line: i + 1,
                        col: indent + 1,
                    },
                    "tab character used for indentation (YAML allows spaces only)",
                ));
            }
        }
        let trimmed = rest.trim_end();
        let body = trimmed.split(" #").next().unwrap_or(trimmed).trim_end();
        if body.ends_with('|')
            || body.ends_with('>')
            || body.ends_with("|-")
            || body.ends_with(">-")
            || body.ends_with("|+")
            || body.ends_with(">+")
        {
            in_block_scalar = Some(indent);
        }
    }
    Ok(())
}

/// Resolves a scalar to its type the way yaml.v2 does (with core tags honoured).
fn resolve_scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<(&str, &str)>,
    mark: Mark,
) -> Result<Kind, SyntaxError> {
    if let Some((handle, suffix)) = tag
        && (handle == "tag:yaml.org,2002:" || handle == "!!")
    {
        return match suffix {
            "str" => Ok(Kind::Str(text.to_string())),
            "null" => Ok(Kind::Null),
            "bool" | "int" | "float" => {
                let kind = resolve_plain(text);
                let ok = matches!(
                    (&kind, suffix),
                    (Kind::Bool(_), "bool") | (Kind::Int(_), "int") | (Kind::Float(_), "float")
                );
                if ok {
                    Ok(kind)
                } else if suffix == "float" {
                    if let Kind::Int(i) = kind {
                        Ok(Kind::Float(i.to_string()))
                    } else {
                        Err(SyntaxError::new(
                            mark,
                            format!("cannot read the value as !!{suffix}"),
                        ))
                    }
                } else {
                    Err(SyntaxError::new(
                        mark,
                        format!("cannot read the value as !!{suffix}"),
                    ))
                }
            }
            _ => Ok(Kind::Str(text.to_string())),
        };
    }
    if style == ScalarStyle::Plain && tag.is_none() {
        Ok(resolve_plain(text))
    } else {
        Ok(Kind::Str(text.to_string()))
    }
}

/// yaml.v2's resolution of a plain scalar (YAML 1.1 booleans, Go integer syntax, yaml floats).
pub(crate) fn resolve_plain(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Kind::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Kind::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return Kind::Float(text.to_string()),
        _ => {}
    }
    let Some(first) = text.chars().next() else {
        return Kind::Null;
    };
    if !matches!(first, '+' | '-' | '.' | '0'..='9') {
        return Kind::Str(text.to_string());
    }
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    if let Some(i) = parse_go_int(&plain) {
        return Kind::Int(i);
    }
    if is_yaml_float(&plain) {
        return Kind::Float(text.to_string());
    }
    Kind::Str(text.to_string())
}

/// Go's `strconv.ParseInt(s, 0, 64)` then `ParseUint(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`
/// prefixes, a leading `0` for octal.
fn parse_go_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d)
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    let value = i128::from(magnitude);
    if neg {
        // ParseInt accepts down to i64::MIN; ParseUint rejects any sign.
        if value > i128::from(i64::MAX) + 1 {
            return None;
        }
        Some(-value)
    } else if s.starts_with('+') && value > i128::from(i64::MAX) {
        None
    } else {
        Some(value)
    }
}

/// yaml.v2's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Kind {
        parse(text).unwrap().unwrap().kind
    }

    #[test]
    fn plain_scalars_resolve_like_yaml_v2() {
        assert_eq!(resolve_plain("yes"), Kind::Bool(true));
        assert_eq!(resolve_plain("Off"), Kind::Bool(false));
        assert_eq!(resolve_plain("~"), Kind::Null);
        assert_eq!(resolve_plain("0x1F"), Kind::Int(31));
        assert_eq!(resolve_plain("0777"), Kind::Int(511));
        assert_eq!(resolve_plain("1_000"), Kind::Int(1000));
        assert_eq!(resolve_plain("-12"), Kind::Int(-12));
        assert_eq!(
            resolve_plain("18446744073709551615"),
            Kind::Int(18446744073709551615)
        );
        assert_eq!(resolve_plain("1.5"), Kind::Float("1.5".into()));
        assert_eq!(resolve_plain("1e3"), Kind::Float("1e3".into()));
        assert_eq!(resolve_plain("08"), Kind::Float("08".into()));
        assert_eq!(resolve_plain("1G"), Kind::Str("1G".into()));
        assert_eq!(resolve_plain("1.2.3"), Kind::Str("1.2.3".into()));
        assert_eq!(resolve_plain("-"), Kind::Str("-".into()));
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        assert_eq!(kind("'1'"), Kind::Str("1".into()));
        assert_eq!(kind("\"yes\""), Kind::Str("yes".into()));
        assert_eq!(kind("!!str 12"), Kind::Str("12".into()));
    }

    #[test]
    fn merge_keys_fill_missing_keys_only() {
        let v = parse("a: &x {p: 1, q: 2}\nb:\n  q: 3\n  <<: *x\n")
            .unwrap()
            .unwrap()
            .to_value();
        let b = v.get("b").unwrap();
        assert_eq!(b.get("p"), Some(&Value::Int(1)));
        assert_eq!(b.get("q"), Some(&Value::Int(3)));
    }

    #[test]
    fn duplicate_keys_are_rejected_with_their_line() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.mark, Mark { line: 3, col: 1 });
        assert!(e.message.contains("duplicate key 'a'"), "{}", e.message);
        assert!(e.message.contains("line 1"), "{}", e.message);
    }

    #[test]
    fn tabs_in_indentation_are_rejected() {
        let e = parse("a:\n\tb: 1\n").unwrap_err();
        assert_eq!(e.mark.line, 2);
        assert!(e.message.contains("tab"));
        // A tab inside a value or a block scalar is fine.
        assert!(parse("a: \"x\ty\"\nb: |\n  x\n  \ty\n").is_ok());
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&doc).is_err());
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let doc = "[".repeat(5000);
        assert!(parse(&doc).is_err());
        let ok = format!("{}x{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
    }

    /// 50 chained anchors, each 190 levels deep around an alias of the previous one: ~19 KB
    /// of text, ~9,500 levels once expanded (this used to overflow the stack and abort).
    fn chained_alias_depth_doc() -> String {
        let mut doc = String::from("a0: &a0 x\n");
        for i in 1..=50 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} {}*a{p} {}\n",
                "[".repeat(190),
                "]".repeat(190)
            ));
        }
        doc
    }

    #[test]
    fn depth_is_bounded_after_alias_expansion() {
        let doc = chained_alias_depth_doc();
        assert!(doc.len() < 20_000, "{}", doc.len());
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{err:?}");
        assert!(err.message.contains("aliases"), "{err:?}");
        // The second anchor is the first to pass the limit: located at its alias.
        assert_eq!(err.mark.line, 3, "{err:?}");
        // An alias that stays within the limit is fine.
        let inner = format!("{}x{}", "[".repeat(100), "]".repeat(100));
        let ok = format!("a: &a {inner}\nb: {}*a{}\n", "[".repeat(99), "]".repeat(99));
        assert!(parse(&ok).is_ok());
        let over = format!(
            "a: &a {inner}\nb: {}*a{}\n",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(parse(&over).is_err());
    }

    #[test]
    fn empty_stream_has_no_document() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }
}
