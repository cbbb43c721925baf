//! [`Error`]: everything that can be wrong with a manifest, its vars or the flags applied to it.
//!
//! Every message that concerns a place in a file starts with `file:line:column`, then names the key.
//! Wording follows the cf CLI where it has a message for the case.
//!
//! Depends on: thiserror. Must not: print.

use std::fmt;
use std::path::PathBuf;

/// A place in a manifest or vars file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (as given, or `<flag>` for values from the command line).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// What can go wrong in the manifest layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest or a vars file could not be read.
    #[error("cannot read {what} {}", path.display())]
    Read {
        /// `manifest` or `vars file`.
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Not valid YAML (bad syntax, tabs, duplicate keys, alias misuse).
    #[error("{location}: manifest is not valid YAML: {message}")]
    Syntax {
        location: Location,
        /// What (lowercase).
        message: String,
        /// The key concerned, if any.
        key: Option<String>,
    },

    /// A vars file that is not valid YAML or not a mapping.
    #[error("{location}: the option --vars-file expects a valid YAML file: {message}")]
    VarsFile { location: Location, message: String },

    /// A `--var` flag that cannot be used.
    #[error("--var {name}: {message}")]
    VarFlag {
        /// The variable name (as given).
        name: String,
        message: String,
    },

    /// `((vars))` without a value; every missing name is listed, sorted.
    #[error("{}: Expected to find variables: {}", file.display(), names.join(", "))]
    MissingVars {
        /// The manifest.
        file: PathBuf,
        /// The missing names.
        names: Vec<String>,
    },

    /// A `((var))` spliced into a longer string whose value is not a string or integer. The
    /// cf CLI's message also shows the value; this one does not (it may be a secret).
    #[error(
        "{location}: invalid type '{type_name}' for variable '{name}'; supported types for interpolation within a string are integers and strings"
    )]
    VarType {
        /// Where the string is.
        location: Location,
        /// The variable.
        name: String,
        /// The value's YAML type.
        type_name: String,
    },

    /// A key with a wrong type or value (`instances: two`, `memory: 1Q`, a bad route).
    #[error("{location}: {key}: {message}")]
    Invalid {
        /// Where the value is.
        location: Location,
        /// The key path, e.g. `applications[0].instances`, or the app-relative key.
        key: String,
        /// What is wrong.
        message: String,
    },

    /// The manifest has no applications.
    #[error("{}: manifest must have at least one application", file.display())]
    NoApplications {
        /// The manifest.
        file: PathBuf,
    },

    /// An application entry without `name` in a multi-app manifest, or no name at all.
    #[error("{location}: found an application with no name specified")]
    NoName {
        /// Where the entry starts.
        location: Location,
    },

    /// No name in the manifest and none on the command line.
    #[error(
        "incorrect usage: the push command requires an app name; the app name can be supplied as an argument or with a manifest.yml file"
    )]
    NameRequired,

    /// The app named on the command line is not in the manifest.
    #[error("could not find app named '{name}' in manifest {}; it has: {}", file.display(), available.join(", "))]
    AppNotFound {
        /// The requested name.
        name: String,
        /// The manifest.
        file: PathBuf,
        /// The apps it has.
        available: Vec<String>,
    },

    /// Two application entries with the same name.
    #[error("{location}: application '{name}' is defined more than once")]
    DuplicateApp {
        /// Where the second one is.
        location: Location,
        name: String,
    },

    /// Command-line flags that cannot be combined with each other or with the manifest.
    #[error("incorrect usage: {0}")]
    Usage(String),

    /// The app's `path` (or `-p`) does not exist.
    #[error("{}file not found locally, make sure the file exists at given path {}", prefix(.location), path.display())]
    PathNotFound {
        /// Where the path was written (None for `-p`).
        location: Option<Location>,
        /// The path as resolved.
        path: PathBuf,
    },
}

fn prefix(location: &Option<Location>) -> String {
    match location {
        Some(l) => format!("{l}: "),
        None => String::new(),
    }
}

impl Error {
    /// The offending key, when the error concerns one (e.g. `instances`, `processes.memory`).
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::Invalid { key, .. } => Some(key),
            Error::Syntax { key, .. } => key.as_deref(),
            _ => None,
        }
    }

    /// The location in a file the error points at, when there is one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Syntax { location, .. }
            | Error::VarsFile { location, .. }
            | Error::VarType { location, .. }
            | Error::Invalid { location, .. }
            | Error::NoName { location }
            | Error::DuplicateApp { location, .. } => Some(location),
            Error::PathNotFound { location, .. } => location.as_ref(),
            _ => None,
        }
    }
}
