//! The layering rules of docs/DESIGN.md section 3, checked on the source: nothing below the
//! command layer imports it or clap, and no two files of one module use each other round a
//! circle (file level: `use crate::…`, `use super::…` and `crate::…`/`super::…` paths in code,
//! re-exports followed to the file that defines the item; test modules left out).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers under the command layer.
const CORE: [&str; 7] = ["cf", "deploy", "manifest", "package", "plugin", "sim", "ui"];

/// Every `.rs` file under `src/`, by its path relative to `src/`, with the text before its
/// first `#[cfg(test)]` module.
fn sources() -> BTreeMap<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                let code = match text.find("#[cfg(test)]\nmod tests") {
                    Some(i) => text[..i].to_string(),
                    None => text,
                };
                let rel = path.strip_prefix(&root).expect("under src").to_path_buf();
                out.insert(rel, code);
            }
        }
    }
    out
}

/// The module path of a file: `cf/apps.rs` → `[cf, apps]`, `cf/mod.rs` → `[cf]`.
fn module_of(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Code without comments and string literals (so that docs and messages naming a path do not
/// count as uses).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_str && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                kept.push(c);
            }
            prev = c;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The paths a file names: every `use` tree expanded, and every `crate::`/`super::` path.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let tail = &rest[i + 4..];
        let Some(end) = tail.find(';') else { break };
        if before.is_none_or(|c| c.is_whitespace() || c == ')') {
            let tree: String = tail[..end].chars().filter(|c| !c.is_whitespace()).collect();
            expand(&[], &tree, &mut paths);
        }
        rest = &tail[end..];
    }
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            let ok = at == 0 || !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if ok {
                paths.push(
                    path.split("::")
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                );
            }
            from = at + start.len();
        }
    }
    paths
}

/// Expands a `use` tree (`a::b::{c, d::{e}}`) into its paths.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let Some(open) = tree.find('{') else {
        let mut p = prefix.to_vec();
        p.extend(
            tree.split("::")
                .filter(|s| !s.is_empty())
                .map(|s| s.split(" as ").next().unwrap_or(s).to_string()),
        );
        out.push(p);
        return;
    };
    let Some(close) = tree.rfind('}') else { return };
    let mut head = prefix.to_vec();
    head.extend(
        tree[..open]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from),
    );
    let (mut depth, mut part) = (0, String::new());
    for c in tree[open + 1..close].chars().chain(std::iter::once(',')) {
        match c {
            ',' if depth == 0 => {
                if !part.is_empty() {
                    expand(&head, &part, out);
                }
                part.clear();
            }
            '{' => {
                depth += 1;
                part.push(c);
            }
            '}' => {
                depth -= 1;
                part.push(c);
            }
            _ => part.push(c),
        }
    }
}

/// Which file each `src` file uses (other than itself).
fn file_graph(src: &BTreeMap<PathBuf, String>) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let by_module: BTreeMap<Vec<String>, PathBuf> =
        src.keys().map(|f| (module_of(f), f.clone())).collect();
    // `pub use child::{A, B}` in a module: A and B are defined in `child`.
    let mut reexports: BTreeMap<(Vec<String>, String), Vec<String>> = BTreeMap::new();
    for (file, text) in src {
        let module = module_of(file);
        for line in code_only(text).lines() {
            let Some(tree) = line.trim().strip_prefix("pub use ") else {
                continue;
            };
            let mut paths = Vec::new();
            expand(&[], tree.trim_end_matches(';'), &mut paths);
            for p in paths {
                let p: Vec<String> = p.into_iter().filter(|s| s != "self").collect();
                if let (Some(child), Some(item)) = (p.first(), p.last()) {
                    let mut defined = module.clone();
                    defined.push(child.clone());
                    reexports.insert((module.clone(), item.clone()), defined);
                }
            }
        }
    }
    let resolve = |segs: &[String]| -> Option<PathBuf> {
        (1..=segs.len()).rev().find_map(|i| {
            let module = segs[..i].to_vec();
            let file = by_module.get(&module)?;
            if let Some(next) = segs.get(i)
                && let Some(defined) = reexports.get(&(module, next.clone()))
                && let Some(f) = by_module.get(defined)
            {
                return Some(f.clone());
            }
            Some(file.clone())
        })
    };
    let mut graph = BTreeMap::new();
    for (file, text) in src {
        let me = module_of(file);
        let is_mod = file.ends_with("mod.rs");
        let mut uses = BTreeSet::new();
        for path in named_paths(&code_only(text)) {
            let full = match path.first().map(String::as_str) {
                Some("crate") => path[1..].to_vec(),
                Some("super") => {
                    let mut base = me.clone();
                    // `super` of a file module is its folder's module; of a mod.rs, the parent.
                    if is_mod || !base.is_empty() {
                        base.pop();
                    }
                    let mut rest = &path[1..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.extend(rest.iter().cloned());
                    base
                }
                _ => continue,
            };
            if let Some(target) = resolve(&full)
                && &target != file
            {
                uses.insert(target);
            }
        }
        graph.insert(file.clone(), uses);
    }
    graph
}

#[test]
fn nothing_below_the_command_layer_imports_it_or_clap() {
    let mut offenders = Vec::new();
    for (file, text) in sources() {
        let layer = file
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        if !layer.is_some_and(|l| CORE.contains(&l.as_str())) {
            continue;
        }
        let code = code_only(&text);
        if code.contains("crate::command") || code.contains("clap::") || code.contains("use clap") {
            offenders.push(file.display().to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "core files importing the command layer or clap: {offenders:?}"
    );
}

/// The circles among sibling files of `graph`, each as its sorted file names (a folder's
/// mod.rs declares and re-exports its children, so it is left out on both ends).
fn circles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<String>> {
    let sibling = |a: &Path, b: &Path| {
        a.parent() == b.parent() && !a.ends_with("mod.rs") && !b.ends_with("mod.rs")
    };
    let mut found = Vec::new();
    for start in graph.keys() {
        // Depth-first search for a path back to `start` through siblings.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if !sibling(&at, next) {
                    continue;
                }
                if next == start {
                    let mut names: Vec<String> =
                        trail.iter().map(|p| p.display().to_string()).collect();
                    names.sort();
                    found.push(names);
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_two_files_of_a_module_use_each_other_round_a_circle() {
    let found = circles(&file_graph(&sources()));
    assert!(found.is_empty(), "import circles: {found:#?}");
}

#[test]
fn the_circle_check_sees_a_circle_through_a_reexport() {
    // a uses b directly; b names a's item through the folder's re-export.
    let src = BTreeMap::from([
        (
            PathBuf::from("x/a.rs"),
            "use super::b::B;\npub struct A;\n".to_string(),
        ),
        (
            PathBuf::from("x/b.rs"),
            "pub struct B(crate::x::A);\n".to_string(),
        ),
        (
            PathBuf::from("x/c.rs"),
            "pub struct C(super::A);\n".to_string(),
        ),
        (
            PathBuf::from("x/mod.rs"),
            "pub mod a;\npub mod b;\npub mod c;\npub use a::A;\n".to_string(),
        ),
    ]);
    assert_eq!(circles(&file_graph(&src)), [["x/a.rs", "x/b.rs"]]);
}
