//! What the plugin tells the cf CLI about itself (`SetPluginMetadata`), with the usage text
//! and options generated from the clap definition of the push flags, so that
//! `cf help zero-downtime-push` always documents exactly what is parsed.
//!
//! Depends on: `gob`, `cli`. Pure.

use std::collections::BTreeMap;

use clap::CommandFactory;

use super::gob::{Type, Value};
use crate::cli::args::{ALTERNATIVES, DEPLOY_HEADING, REFUSED};
use crate::cli::{PluginPush, PluginRollback};

/// The plugin's name as `cf plugins` shows it.
pub const PLUGIN_NAME: &str = "zero-downtime";
/// The plugin command.
pub const COMMAND_NAME: &str = "zero-downtime-push";
/// The command's alias.
pub const COMMAND_ALIAS: &str = "zdp";
/// One-line help shown by `cf help -a` and `cf plugins`.
pub const HELP_TEXT: &str =
    "Push a new version of an app without downtime: candidate app, smoke test, route switch";
/// The rollback command.
pub const ROLLBACK_COMMAND_NAME: &str = "zero-downtime-rollback";
/// The rollback command's alias.
pub const ROLLBACK_COMMAND_ALIAS: &str = "zdr";
/// One-line help of the rollback command.
pub const ROLLBACK_HELP_TEXT: &str = "Put the previous version of an app (APP_NAME-venerable, kept by --old-app stop|keep) back without downtime";
/// The oldest cf CLI the plugin runs under (checked with `IsMinCliVersion` before a push).
pub const MIN_CLI_VERSION: VersionType = VersionType {
    major: 7,
    minor: 0,
    build: 0,
};
/// The plugin library protocol version: 1, the only one cf v7/v8 accept (major ≤ 1).
pub const LIBRARY_VERSION: VersionType = VersionType {
    major: 1,
    minor: 0,
    build: 0,
};

/// Go `plugin.VersionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VersionType {
    /// Major.
    pub major: i64,
    /// Minor.
    pub minor: i64,
    /// Build (patch).
    pub build: i64,
}

impl std::fmt::Display for VersionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// Go `plugin.Usage`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    /// The usage line(s) shown under USAGE.
    pub usage: String,
    /// Option key → description; a one-character key is shown as `-k`, longer keys as `--key`.
    pub options: BTreeMap<String, String>,
}

/// Go `plugin.Command`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginCommand {
    /// Command name.
    pub name: String,
    /// Alias (empty for none).
    pub alias: String,
    /// One-line help.
    pub help_text: String,
    /// Usage details for `cf help <command>`.
    pub usage_details: Usage,
}

/// Go `plugin.PluginMetadata`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginMetadata {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: VersionType,
    /// Plugin library protocol version.
    pub library_version: VersionType,
    /// Oldest cf CLI supported.
    pub min_cli_version: VersionType,
    /// Commands the plugin adds.
    pub commands: Vec<PluginCommand>,
}

impl VersionType {
    fn go_type() -> Type {
        Type::structure(
            "VersionType",
            &[
                ("Major", Type::Int),
                ("Minor", Type::Int),
                ("Build", Type::Int),
            ],
        )
    }

    fn to_value(self) -> Value {
        Value::structure([
            ("Major", Value::Int(self.major)),
            ("Minor", Value::Int(self.minor)),
            ("Build", Value::Int(self.build)),
        ])
    }
}

impl PluginMetadata {
    /// The Go type, with the names a Go plugin built against the cf plugin library sends.
    pub fn go_type() -> Type {
        let usage = Type::structure(
            "Usage",
            &[
                ("Usage", Type::String),
                (
                    "Options",
                    Type::map("map[string]string", Type::String, Type::String),
                ),
            ],
        );
        let command = Type::structure(
            "Command",
            &[
                ("Name", Type::String),
                ("Alias", Type::String),
                ("HelpText", Type::String),
                ("UsageDetails", usage),
            ],
        );
        Type::structure(
            "PluginMetadata",
            &[
                ("Name", Type::String),
                ("Version", VersionType::go_type()),
                ("LibraryVersion", VersionType::go_type()),
                ("MinCliVersion", VersionType::go_type()),
                ("Commands", Type::slice("[]plugin.Command", command)),
            ],
        )
    }

    /// The gob value (an empty options map is sent as nil, as Go does for an unset map).
    pub fn to_value(&self) -> Value {
        let commands = self
            .commands
            .iter()
            .map(|c| {
                let options = if c.usage_details.options.is_empty() {
                    Value::Nil
                } else {
                    Value::Map(
                        c.usage_details
                            .options
                            .iter()
                            .map(|(k, v)| (Value::string(k), Value::string(v)))
                            .collect(),
                    )
                };
                Value::structure([
                    ("Name", Value::string(&c.name)),
                    ("Alias", Value::string(&c.alias)),
                    ("HelpText", Value::string(&c.help_text)),
                    (
                        "UsageDetails",
                        Value::structure([
                            ("Usage", Value::string(&c.usage_details.usage)),
                            ("Options", options),
                        ]),
                    ),
                ])
            })
            .collect();
        Value::structure([
            ("Name", Value::string(&self.name)),
            ("Version", self.version.to_value()),
            ("LibraryVersion", self.library_version.to_value()),
            ("MinCliVersion", self.min_cli_version.to_value()),
            ("Commands", Value::List(commands)),
        ])
    }
}

/// This crate's version as a Go `VersionType`.
pub fn crate_version() -> VersionType {
    let part = |s: &str| s.parse().unwrap_or(0);
    VersionType {
        major: part(env!("CARGO_PKG_VERSION_MAJOR")),
        minor: part(env!("CARGO_PKG_VERSION_MINOR")),
        build: part(env!("CARGO_PKG_VERSION_PATCH")),
    }
}

/// The metadata sent for `SendMetadata`.
pub fn plugin_metadata() -> PluginMetadata {
    let (usage, options) = usage_and_options(&PluginPush::command());
    PluginMetadata {
        name: PLUGIN_NAME.to_string(),
        version: crate_version(),
        library_version: LIBRARY_VERSION,
        min_cli_version: MIN_CLI_VERSION,
        commands: vec![
            PluginCommand {
                name: COMMAND_NAME.to_string(),
                alias: COMMAND_ALIAS.to_string(),
                help_text: HELP_TEXT.to_string(),
                usage_details: Usage { usage, options },
            },
            rollback_command(),
        ],
    }
}

/// The metadata of `zero-downtime-rollback`.
fn rollback_command() -> PluginCommand {
    let (usage, options) = rollback_usage_and_options();
    PluginCommand {
        name: ROLLBACK_COMMAND_NAME.to_string(),
        alias: ROLLBACK_COMMAND_ALIAS.to_string(),
        help_text: ROLLBACK_HELP_TEXT.to_string(),
        usage_details: Usage { usage, options },
    }
}

/// The usage text and options of `zero-downtime-rollback` (its app name is required, so it
/// is shown without brackets).
pub fn rollback_usage_and_options() -> (String, BTreeMap<String, String>) {
    let (usage, options) = usage_and_options(&PluginRollback::command());
    (usage.replacen("[APP_NAME]", "APP_NAME", 1), options)
}

/// Width at which the generated usage line wraps.
const USAGE_WIDTH: usize = 96;

/// The usage text and the options map of a clap command: every argument except the
/// built-in help/version flags. Option keys are the long name, followed by `, -x` when there
/// is a short form, so cf renders them as `--manifest, -f` like its own commands.
///
/// The usage is grouped like `cf help push`: the `cf push` flags in their order, flags that
/// exclude each other (`cli::args::ALTERNATIVES`) as `[a | b]`, flags that are refused (`cli::args::REFUSED`)
/// left out; then, from a new line, the flags under the "Zero-downtime options" heading.
pub fn usage_and_options(cmd: &clap::Command) -> (String, BTreeMap<String, String>) {
    let bin = cmd.get_bin_name().unwrap_or(cmd.get_name());
    // (argument id, usage token without brackets, repeatable, deploy flag)
    let mut tokens: Vec<(String, String, bool, bool)> = Vec::new();
    let mut options = BTreeMap::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let value_name = arg
            .get_value_names()
            .and_then(|names| names.first())
            .map(|n| n.to_string());
        let takes_values = arg.get_action().takes_values();
        // Boolean switches report true/false as possible values; they take none.
        let possible: Vec<String> = if takes_values {
            arg.get_possible_values()
                .iter()
                .filter(|p| !p.is_hide_set())
                .map(|p| p.get_name().to_string())
                .collect()
        } else {
            Vec::new()
        };
        let value = if !possible.is_empty() {
            Some(possible.join("|"))
        } else if takes_values {
            Some(value_name.clone().unwrap_or_else(|| id.to_uppercase()))
        } else {
            None
        };
        let repeated = matches!(arg.get_action(), clap::ArgAction::Append);
        let deploy = arg.get_help_heading() == Some(DEPLOY_HEADING);
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if arg.is_positional() {
            let name = value_name.unwrap_or_else(|| id.to_uppercase());
            tokens.push((id.to_string(), name, false, deploy));
            continue;
        }
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(s), _) => format!("-{s}"),
            (None, Some(l)) => format!("--{l}"),
            (None, None) => continue,
        };
        let token = match &value {
            Some(v) => format!("{flag} {v}"),
            None => flag,
        };
        tokens.push((id.to_string(), token, repeated, deploy));

        let key = match (arg.get_long(), arg.get_short()) {
            (Some(l), Some(s)) => format!("{l}, -{s}"),
            (Some(l), None) => l.to_string(),
            (None, Some(s)) => s.to_string(),
            (None, None) => continue,
        };
        let mut text = help.trim_end_matches('.').to_string();
        if !possible.is_empty() {
            text.push_str(&format!(" ({})", possible.join(", ")));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && takes_values {
            text.push_str(&format!(" [default: {}]", defaults.join(",")));
        }
        options.insert(key, text);
    }

    // (usage part, starts the deploy group)
    let mut parts: Vec<(String, bool)> = Vec::new();
    let mut deploy_started = false;
    for (id, token, repeated, deploy) in &tokens {
        if REFUSED.contains(&id.as_str()) || ALTERNATIVES.iter().any(|(_, b)| b == id) {
            continue;
        }
        let mut part = match ALTERNATIVES.iter().find(|(a, _)| a == id) {
            Some((_, other)) => match tokens.iter().find(|t| &t.0 == other) {
                Some(t) => format!("[{token} | {}]", t.1),
                None => format!("[{token}]"),
            },
            None => format!("[{token}]"),
        };
        if *repeated {
            part.push_str("...");
        }
        let starts_group = *deploy && !deploy_started;
        deploy_started |= *deploy;
        parts.push((part, starts_group));
    }
    let mut usage = String::from(bin);
    let mut line_len = usage.len();
    for (part, starts_group) in parts {
        if starts_group || line_len + 1 + part.len() > USAGE_WIDTH {
            usage.push_str("\n      ");
            line_len = 6;
        } else {
            usage.push(' ');
            line_len += 1;
        }
        line_len += part.len();
        usage.push_str(&part);
    }
    (usage, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::rpc::ClientCodec;

    #[test]
    fn the_spec_sample_metadata_encodes_exactly_as_go_does() {
        // Scenario "metadata", plugin -> cf: the whole stream of a Go plugin's call.
        let want = "2fff81030101075265717565737401ff82000102010d536572766963654d6574686f64010c000103536571010600000020ff82011b436c69527063436d642e536574506c7567696e4d657461646174610067ff830301010e506c7567696e4d6574616461746101ff8400010501044e616d65010c00010756657273696f6e01ff8600010e4c69627261727956657273696f6e01ff8600010d4d696e436c6956657273696f6e01ff86000108436f6d6d616e647301ff8e00000037ff850301010b56657273696f6e5479706501ff8600010301054d616a6f7201040001054d696e6f7201040001054275696c6401040000001fff8d020101105b5d706c7567696e2e436f6d6d616e6401ff8e0001ff88000047ff8703010107436f6d6d616e6401ff8800010401044e616d65010c000105416c696173010c00010848656c7054657874010c00010c557361676544657461696c7301ff8a0000002aff8903010105557361676501ff8a00010201055573616765010c0001074f7074696f6e7301ff8c00000021ff8b040101116d61705b737472696e675d737472696e6701ff8c00010c010c000073ff84010c4d7952757374506c7567696e0101020104010600010001010c010e000102010568656c6c6f0102686901095361792068656c6c6f01011263662068656c6c6f205b2d6e204e414d455d0101016e0d6e616d6520746f2067726565740000010362796502075361792062796501000000";
        let sample = PluginMetadata {
            name: "MyRustPlugin".into(),
            version: VersionType {
                major: 1,
                minor: 2,
                build: 3,
            },
            library_version: VersionType::default(),
            min_cli_version: VersionType {
                major: 6,
                minor: 7,
                build: 0,
            },
            commands: vec![
                PluginCommand {
                    name: "hello".into(),
                    alias: "hi".into(),
                    help_text: "Say hello".into(),
                    usage_details: Usage {
                        usage: "cf hello [-n NAME]".into(),
                        options: BTreeMap::from([("n".into(), "name to greet".into())]),
                    },
                },
                PluginCommand {
                    name: "bye".into(),
                    help_text: "Say bye".into(),
                    ..PluginCommand::default()
                },
            ],
        };
        let got = ClientCodec::new()
            .encode_request(
                0,
                "CliRpcCmd.SetPluginMetadata",
                &PluginMetadata::go_type(),
                &sample.to_value(),
            )
            .expect("encodes");
        assert_eq!(hex::encode(got), want);
    }

    /// Whether `usage` names `flag` as a whole flag (`--task` is not named by
    /// `--task-before-switch`).
    fn names_flag(usage: &str, flag: &str) -> bool {
        usage.match_indices(flag).any(|(i, _)| {
            !usage[i + flag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
        })
    }

    #[test]
    fn our_metadata_lists_every_push_flag() {
        let m = plugin_metadata();
        assert_eq!(m.name, "zero-downtime");
        assert_eq!(m.version, crate_version());
        assert!(m.library_version.major <= 1);
        let cmd = &m.commands[0];
        assert_eq!(
            (cmd.name.as_str(), cmd.alias.as_str()),
            ("zero-downtime-push", "zdp")
        );
        let clap_cmd = PluginPush::command();
        for arg in clap_cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            assert!(
                cmd.usage_details
                    .options
                    .keys()
                    .any(|k| k == long || k.starts_with(&format!("{long}, "))),
                "--{long} missing from the options"
            );
            if REFUSED.contains(&arg.get_id().as_str()) {
                assert!(
                    !names_flag(&cmd.usage_details.usage, &format!("--{long}")),
                    "refused --{long} in the usage"
                );
                continue;
            }
            assert!(
                cmd.usage_details.usage.contains(&format!("--{long}"))
                    || arg
                        .get_short()
                        .is_some_and(|s| cmd.usage_details.usage.contains(&format!("-{s} "))),
                "--{long} missing from the usage"
            );
        }
        let opts = &cmd.usage_details.options;
        assert!(opts.contains_key("manifest, -f"));
        assert!(opts["strategy"].contains("blue-green, rolling, canary"));
        assert!(opts["drain"].contains("[default: auto]"));
        assert_eq!(opts["dry-run"], "Print the plan and change nothing");
        assert!(cmd.usage_details.usage.contains("[--dry-run]"));
        let usage = &cmd.usage_details.usage;
        assert!(
            usage.starts_with(
                "cf zero-downtime-push [APP_NAME] [-b BUILDPACK_NAME]... [-c COMMAND]"
            ),
            "{usage}"
        );
        assert!(
            usage.contains("[-f MANIFEST_PATH | --no-manifest]"),
            "{usage}"
        );
        // Grouped like `cf help push`: alternatives together, refused flags left out, the
        // deploy's own flags from a line of their own.
        assert!(usage.contains("[--no-route | --random-route]"), "{usage}");
        assert!(usage.contains("[-u process|port|http]"), "{usage}");
        assert!(
            usage.contains("[--lifecycle buildpack|docker|cnb]"),
            "{usage}"
        );
        for refused in ["--no-start", "--task", "--droplet", "--no-wait"] {
            assert!(!names_flag(usage, refused), "{usage}");
        }
        assert!(
            usage.contains("[--task-before-switch COMMAND]..."),
            "{usage}"
        );
        assert!(
            usage
                .lines()
                .any(|l| l.trim_start().starts_with("[--strategy ")),
            "{usage}"
        );
        let cf_part = usage.split("[--strategy").next().unwrap_or_default();
        for flag in [
            "-i NUM_INSTANCES",
            "-k DISK",
            "-m MEMORY",
            "-l LOG_RATE_LIMIT",
            "-t HEALTH_TIMEOUT",
            "--endpoint PATH",
            "-o IMAGE",
            "--docker-username USERNAME",
            "-s STACK",
            "-p PATH",
        ] {
            assert!(
                cf_part.contains(flag),
                "{flag} not among the cf push flags: {usage}"
            );
        }
        assert!(
            opts["no-start"].starts_with("Refused: "),
            "{:?}",
            opts["no-start"]
        );
        assert!(opts["task"].starts_with("Refused: "));
        assert!(opts["droplet"].starts_with("Refused: "));
        assert!(opts.contains_key("buildpack, -b"));
        assert!(opts.contains_key("start-command, -c"));
        assert!(opts.contains_key("app-start-timeout, -t"));
        assert!(opts["health-check-type, -u"].contains("(process, port, http)"));
        assert!(
            cmd.usage_details
                .usage
                .lines()
                .all(|l| l.len() <= USAGE_WIDTH)
        );
    }
}

#[cfg(test)]
mod proptests {
    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::*;
    use crate::plugin::gob::{Decoder, Encoder};

    fn version() -> impl Strategy<Value = VersionType> {
        (any::<i64>(), any::<i64>(), any::<i64>()).prop_map(|(major, minor, build)| VersionType {
            major,
            minor,
            build,
        })
    }

    fn command() -> impl Strategy<Value = PluginCommand> {
        (
            ".{0,12}",
            ".{0,4}",
            ".{0,40}",
            ".{0,60}",
            proptest::collection::btree_map(".{1,10}", ".{0,20}", 0..5),
        )
            .prop_map(|(name, alias, help_text, usage, options)| PluginCommand {
                name,
                alias,
                help_text,
                usage_details: Usage { usage, options },
            })
    }

    proptest! {
        #[test]
        fn metadata_survives_encode_decode_encode(
            name in ".{0,20}",
            v in version(),
            lib in version(),
            min in version(),
            commands in proptest::collection::vec(command(), 0..4),
        ) {
            let m = PluginMetadata { name, version: v, library_version: lib, min_cli_version: min, commands };
            let mut first = Vec::new();
            Encoder::new().encode(&PluginMetadata::go_type(), &m.to_value(), &mut first).expect("encodes");
            let mut buf = BytesMut::from(&first[..]);
            let decoded = Decoder::new().decode(&mut buf).expect("decodes").expect("complete");
            prop_assert!(buf.is_empty());
            let mut second = Vec::new();
            Encoder::new().encode(&PluginMetadata::go_type(), &decoded.value, &mut second).expect("re-encodes");
            prop_assert_eq!(&first, &second);
            prop_assert_eq!(decoded.value.str_field("Name"), Some(m.name.as_str()));
            let major = decoded.value.field("Version").and_then(|v| v.field("Major")).and_then(Value::as_int).unwrap_or(0);
            prop_assert_eq!(major, m.version.major);
            let n = decoded.value.field("Commands").and_then(Value::as_list).map_or(0, <[Value]>::len);
            prop_assert_eq!(n, m.commands.len());
        }
    }
}
