//! `.cfignore` matching with the cf CLI's exact semantics: a literal port of the line-to-regex
//! translation of `sabhiram/go-gitignore@362f984`, which the cf CLI uses, plus the CLI's default lines.
//!
//! This is deliberately **not** real gitignore (so the `ignore` crate's matcher is not used): `?` is
//! a literal question mark, `dir/` does not match the directory entry itself, a pattern with an
//! inner slash (`foo/bar`) still matches at any depth, `abc/**` matches `abc`, regex characters such
//! as `+ ( ) { } |` pass through unescaped, and `!pattern` can re-include a file below an ignored
//! directory. Rules are evaluated in order: a plain match ignores, a negated match un-ignores only
//! what an earlier rule ignored. Paths are matched relative to the app root with `/` separators
//! (directories without a trailing slash for directory pushes, names as stored for archives).
//!
//! Depends on: `regex`. Must not: touch the file system.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

/// The cf CLI's `sharedaction.DefaultIgnoreLines`, always applied.
pub const DEFAULT_IGNORE_LINES: &[&str] = &[
    ".cfignore",
    ".DS_Store",
    ".git",
    ".gitignore",
    ".hg",
    ".svn",
    "_darcs",
    "manifest.yaml",
    "manifest.yml",
];

/// A compiled ignore list.
#[derive(Debug, Clone)]
pub struct CfIgnore {
    /// One regex per kept line, in order.
    patterns: Vec<Regex>,
    /// Whether each pattern is a `!` rule.
    negated: Vec<bool>,
    /// All patterns in one automaton (one pass per path); `None` if too big for the regex
    /// crate's size limit, in which case the patterns are tried one by one.
    set: Option<RegexSet>,
}

impl CfIgnore {
    /// Compiles lines in order. Lines that are comments, blank, or not a valid regex after
    /// translation are skipped, as go-gitignore does.
    pub fn from_lines<I, S>(lines: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns = Vec::new();
        let mut negated = Vec::new();
        for line in lines {
            if let Some((source, negate)) = pattern_from_line(line.as_ref()) {
                // go-gitignore drops a line whose regex does not compile.
                if let Ok(regex) = Regex::new(&source) {
                    patterns.push(regex);
                    negated.push(negate);
                }
            }
        }
        let set = RegexSet::new(patterns.iter().map(Regex::as_str)).ok();
        CfIgnore {
            patterns,
            negated,
            set,
        }
    }

    /// The matcher for a directory push: the `.cfignore` lines (if any) **followed by** the
    /// default lines and `extra` (the cf CLI's trace file), so a `!` in `.cfignore` cannot re-include
    /// a default-ignored path.
    pub fn for_directory(cfignore: Option<&str>, extra: &[String]) -> Self {
        let mut lines: Vec<&str> = cfignore
            .map(|t| t.split('\n').collect())
            .unwrap_or_default();
        lines.extend(DEFAULT_IGNORE_LINES);
        lines.extend(extra.iter().map(String::as_str));
        Self::from_lines(lines)
    }

    /// The matcher for an archive push: the default lines **followed by** the `.cfignore` lines.
    pub fn for_archive(cfignore: Option<&str>) -> Self {
        let mut lines: Vec<&str> = DEFAULT_IGNORE_LINES.to_vec();
        if let Some(text) = cfignore {
            lines.extend(text.split('\n'));
        }
        Self::from_lines(lines)
    }

    /// Whether `path` (relative, `/` separators) is ignored.
    pub fn is_ignored(&self, path: &str) -> bool {
        let mut ignored = false;
        let mut apply = |index: usize| {
            if !self.negated[index] {
                ignored = true;
            } else if ignored {
                ignored = false;
            }
        };
        match &self.set {
            // SetMatches iterates in pattern order, which is what the rules need.
            Some(set) => set.matches(path).iter().for_each(&mut apply),
            None => (0..self.patterns.len())
                .filter(|&i| self.patterns[i].is_match(path))
                .for_each(&mut apply),
        }
        ignored
    }

    /// Whether any rule is negated. Without negations, everything below an ignored directory is
    /// ignored too (every pattern ends in `(|/.*)$` or `(|.*)$`), so the walk may skip it.
    pub fn has_negations(&self) -> bool {
        self.negated.iter().any(|n| *n)
    }
}

static INNER_SLASH_STAR_DOT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"([^/+])/.*\*\.").ok());

/// Translates one line into a regex source and whether it is negated (go-gitignore's
/// `getPatternFromLine`, step by step).
fn pattern_from_line(line: &str) -> Option<(String, bool)> {
    let line = line.trim_end_matches('\r');
    if line.starts_with('#') {
        return None;
    }
    let mut line = line.trim_matches(' ');
    if line.is_empty() {
        return None;
    }
    let negate = line.starts_with('!');
    if negate {
        line = &line[1..];
    }
    if line.starts_with('#') || line.starts_with('!') {
        line = &line[1..];
    }
    let mut line = line.to_string();
    let inner = INNER_SLASH_STAR_DOT
        .as_ref()
        .is_some_and(|re| re.is_match(&line));
    if inner && !line.starts_with('/') {
        line.insert(0, '/');
    }
    let mut line = line.replace('.', r"\.");
    const MAGIC_STAR: &str = "#$~";
    if line.starts_with("/**/") {
        line.remove(0);
    }
    let line = line
        .replace("/**/", "(/|/.+/)")
        .replace("**/", &format!("(|.{MAGIC_STAR}/)"))
        .replace("/**", &format!("(|/.{MAGIC_STAR})"))
        .replace(r"\*", &format!(r"\{MAGIC_STAR}"))
        .replace('*', "([^/]*)")
        .replace('?', r"\?")
        .replace(MAGIC_STAR, "*");
    let expr = if line.ends_with('/') {
        format!("{line}(|.*)$")
    } else {
        format!("{line}(|/.*)$")
    };
    let expr = match expr.strip_prefix('/') {
        Some(rest) => format!("^(|/){rest}"),
        None => format!("^(|.*/){expr}"),
    };
    Some((literal_braces(&expr), negate))
}

/// Go's RE2 treats a `{` that does not start a valid repetition (`{n}`, `{n,}`, `{n,m}`) as a
/// literal; Rust's regex rejects it. Escape such braces so both engines agree.
fn literal_braces(expr: &str) -> String {
    static REPETITION: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"^\{[0-9]+(,[0-9]*)?\}").ok());
    let mut out = String::with_capacity(expr.len());
    let mut escaped = false;
    for (i, c) in expr.char_indices() {
        if escaped {
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                out.push(c);
            }
            '{' if !REPETITION
                .as_ref()
                .is_some_and(|re| re.is_match(&expr[i..])) =>
            {
                out.push_str(r"\{");
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ignored!(name, ".cfignore text", "path")`: a directory push with this .cfignore ignores path.
    macro_rules! ignored {
        ($name:ident, $cfignore:expr, $path:expr) => {
            #[test]
            fn $name() {
                let ig = CfIgnore::for_directory(Some($cfignore), &[]);
                assert!(
                    ig.is_ignored($path),
                    "{:?} should be ignored by {:?}",
                    $path,
                    $cfignore
                );
            }
        };
    }

    /// `not_ignored!(name, ".cfignore text", "path")`: a directory push keeps path.
    macro_rules! not_ignored {
        ($name:ident, $cfignore:expr, $path:expr) => {
            #[test]
            fn $name() {
                let ig = CfIgnore::for_directory(Some($cfignore), &[]);
                assert!(
                    !ig.is_ignored($path),
                    "{:?} should not be ignored by {:?}",
                    $path,
                    $cfignore
                );
            }
        };
    }

    // Defaults, at any depth.
    ignored!(default_git_dir, "", ".git");
    ignored!(default_git_child, "", ".git/config");
    ignored!(default_nested_git, "", "vendor/lib/.git/HEAD");
    ignored!(default_gitignore_nested, "", "src/.gitignore");
    ignored!(default_manifest, "", "manifest.yml");
    ignored!(default_manifest_nested, "", "config/manifest.yml");
    ignored!(default_manifest_yaml, "", "manifest.yaml");
    ignored!(default_ds_store, "", "img/.DS_Store");
    ignored!(default_cfignore, "", ".cfignore");
    ignored!(default_svn, "", ".svn/entries");
    ignored!(default_hg, "", ".hg");
    ignored!(default_darcs, "", "_darcs/patches");
    not_ignored!(default_keeps_app, "", "app.js");
    not_ignored!(default_keeps_manifest_bak, "", "manifest.yml.bak");
    not_ignored!(default_keeps_gitkeep, "", "logs/.gitkeep");
    not_ignored!(default_keeps_suffix_git, "", "my.git");
    not_ignored!(default_keeps_github, "", ".github/workflows/ci.yml");

    // Plain globs.
    ignored!(star_ext, "*.log", "a.log");
    ignored!(star_ext_nested, "*.log", "logs/b.log");
    ignored!(star_ext_dir_children, "*.log", "a.log/inner");
    not_ignored!(star_ext_longer, "*.log", "a.logx");
    ignored!(
        star_does_not_cross_slash_but_prefix_is_free,
        "tmp*",
        "x/tmpfile"
    );
    ignored!(class_works_like_glob, "[ab].txt", "a.txt");
    not_ignored!(class_excludes, "[ab].txt", "c.txt");
    ignored!(escaped_star_is_literal, r"\*.txt", "*.txt");
    not_ignored!(escaped_star_not_wildcard, r"\*.txt", "a.txt");

    // Quirk: `?` is a literal question mark.
    ignored!(question_mark_literal, "file?.txt", "file?.txt");
    not_ignored!(question_mark_not_wildcard, "file?.txt", "file1.txt");

    // Quirk: `dir/` ignores what is under the directory but not the directory entry itself.
    not_ignored!(
        trailing_slash_keeps_dir_entry,
        "node_modules/",
        "node_modules"
    );
    ignored!(
        trailing_slash_ignores_children,
        "node_modules/",
        "node_modules/x/index.js"
    );
    ignored!(
        trailing_slash_any_depth,
        "node_modules/",
        "web/node_modules/x.js"
    );
    ignored!(no_slash_ignores_dir_entry, "node_modules", "node_modules");

    // Leading slash anchors at the root.
    ignored!(anchored, "/build", "build");
    ignored!(anchored_children, "/build", "build/out.o");
    not_ignored!(anchored_not_nested, "/build", "src/build");

    // Quirk: an inner slash does not anchor (gitignore would), unless the line looks like `dir/*.ext`.
    ignored!(inner_slash_matches_any_depth, "foo/bar", "x/foo/bar");
    ignored!(inner_slash_star_matches_any_depth, "docs/*", "x/docs/a");
    ignored!(inner_slash_star_dot_anchored, "docs/*.md", "docs/a.md");
    not_ignored!(
        inner_slash_star_dot_anchored_not_nested,
        "docs/*.md",
        "x/docs/a.md"
    );

    // Double stars.
    ignored!(leading_double_star_root, "**/foo", "foo");
    ignored!(leading_double_star_deep, "**/foo", "a/b/foo");
    ignored!(middle_double_star_zero_dirs, "a/**/b", "a/b");
    ignored!(middle_double_star_many_dirs, "a/**/b", "a/x/y/b");
    ignored!(trailing_double_star_children, "abc/**", "abc/x/y");
    // Quirk: gitignore's `abc/**` does not match `abc` itself; go-gitignore's does.
    ignored!(trailing_double_star_matches_dir_itself, "abc/**", "abc");

    // Quirk: regex characters pass through unescaped.
    ignored!(plus_is_a_quantifier, "a+b", "aab");
    not_ignored!(plus_is_not_literal, "a+b", "a+b");
    ignored!(alternation_passes_through, "(foo|bar).txt", "bar.txt");
    ignored!(lone_brace_is_literal, "x{y", "x{y");
    ignored!(brace_repetition, "a{2}.txt", "aa.txt");

    // Comments, blanks, spaces, CRLF, escapes.
    not_ignored!(comment_line, "# app.js", "app.js");
    ignored!(escaped_hash, r"\#notes", "#notes");
    ignored!(trailing_spaces_trimmed, "*.log   ", "a.log");
    ignored!(crlf_line_endings, "*.log\r\nfoo\r\n", "foo");
    ignored!(escaped_bang, r"\!important", "!important");

    // Negation.
    not_ignored!(negation_reincludes, "*.log\n!keep.log", "keep.log");
    ignored!(negation_leaves_others, "*.log\n!keep.log", "other.log");
    // Quirk: a file below an ignored directory can be re-included (gitignore cannot).
    not_ignored!(
        negation_below_ignored_dir,
        "logs\n!logs/keep.txt",
        "logs/keep.txt"
    );
    ignored!(
        negation_below_ignored_dir_dir_itself,
        "logs\n!logs/keep.txt",
        "logs"
    );
    // Order matters: a negation before the rule it should undo does nothing.
    ignored!(
        negation_before_rule_has_no_effect,
        "!keep.log\n*.log",
        "keep.log"
    );
    // Defaults come after .cfignore for directories, so they cannot be re-included.
    ignored!(
        negation_cannot_reinclude_default,
        "!manifest.yml",
        "manifest.yml"
    );
    // A lone `!` becomes a negated empty pattern, which matches no file path.
    ignored!(lone_bang_is_harmless, "*.log\n!", "a.log");

    #[test]
    fn archive_order_lets_cfignore_reinclude_defaults() {
        let ig = CfIgnore::for_archive(Some("!manifest.yml"));
        assert!(!ig.is_ignored("manifest.yml"));
        assert!(ig.is_ignored(".git/HEAD"));
    }

    #[test]
    fn archive_directory_names_keep_their_slash() {
        let ig = CfIgnore::for_archive(Some("node_modules/"));
        assert!(ig.is_ignored("node_modules/"));
        assert!(ig.is_ignored("node_modules/a.js"));
    }

    #[test]
    fn extra_lines_follow_the_defaults() {
        let ig = CfIgnore::for_directory(None, &["logs/cf.trace".to_string()]);
        assert!(ig.is_ignored("logs/cf.trace"));
        assert!(!ig.is_ignored("logs/app.log"));
    }

    #[test]
    fn translation_matches_go_gitignore() {
        let cases = [
            ("*.log", r"^(|.*/)([^/]*)\.log(|/.*)$"),
            ("node_modules/", r"^(|.*/)node_modules/(|.*)$"),
            ("/build", r"^(|/)build(|/.*)$"),
            ("**/foo", r"^(|.*/)(|.*/)foo(|/.*)$"),
            ("a/**/b", r"^(|.*/)a(/|/.+/)b(|/.*)$"),
            ("docs/*.md", r"^(|/)docs/([^/]*)\.md(|/.*)$"),
            ("file?", r"^(|.*/)file\?(|/.*)$"),
        ];
        for (line, want) in cases {
            assert_eq!(
                pattern_from_line(line).map(|p| p.0).as_deref(),
                Some(want),
                "{line}"
            );
        }
    }

    /// Why `ignore::gitignore` is not used: on these lines real gitignore and the cf CLI disagree
    /// (and on the plain ones they agree).
    #[test]
    fn differences_from_real_gitignore() {
        use ::ignore::gitignore::GitignoreBuilder;
        // (line, path, is_dir, cf CLI ignores, gitignore ignores)
        let cases = [
            ("file?.txt", "file1.txt", false, false, true),
            ("node_modules/", "node_modules", true, false, true),
            ("foo/bar", "x/foo/bar", false, true, false),
            ("docs/*", "x/docs/a", false, true, false),
            ("abc/**", "abc", true, true, false),
            ("a+b", "a+b", false, false, true),
            ("*.log", "a/b.log", false, true, true),
            ("/build", "src/build", true, false, false),
            ("node_modules/", "node_modules/x.js", false, true, true),
        ];
        for (line, path, is_dir, cf, git) in cases {
            let mut builder = GitignoreBuilder::new("");
            assert!(builder.add_line(None, line).is_ok());
            let gitignore = builder.build().unwrap_or_else(|_| panic!("{line}"));
            let git_says = gitignore
                .matched_path_or_any_parents(path, is_dir)
                .is_ignore();
            let cf_says = CfIgnore::from_lines([line]).is_ignored(path);
            assert_eq!((cf_says, git_says), (cf, git), "{line} vs {path}");
        }
    }

    #[test]
    fn many_lines_still_match_in_order() {
        let mut lines: Vec<String> = (0..2000).map(|i| format!("dir{i}/*.tmp")).collect();
        lines.push("*.log".into());
        lines.push("!keep.log".into());
        let with_set = CfIgnore::from_lines(&lines);
        let one_by_one = CfIgnore {
            set: None,
            ..with_set.clone()
        };
        for ig in [with_set, one_by_one] {
            assert!(ig.is_ignored("dir1999/a.tmp"));
            assert!(ig.is_ignored("a.log"));
            assert!(!ig.is_ignored("keep.log"));
            assert!(!ig.is_ignored("dir1/a.txt"));
        }
    }

    #[test]
    fn negations_are_reported() {
        assert!(!CfIgnore::for_directory(Some("*.log"), &[]).has_negations());
        assert!(CfIgnore::for_directory(Some("*.log\n!a.log"), &[]).has_negations());
    }
}
