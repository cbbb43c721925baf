//! What this plugin tells the cf CLI about itself: its commands, and their usage text and
//! options generated from the clap definitions of the flags, so that `cf help
//! zero-downtime-push` always documents exactly what is parsed.
//!
//! Depends on: `plugin::metadata` (the types), the commands' flags. Pure.

use std::collections::BTreeMap;

use clap::CommandFactory;

use crate::command::flags::DEPLOY_HEADING;
use crate::command::push::PluginPush;
use crate::command::push::args::{ALTERNATIVES, REFUSED};
use crate::command::rollback::PluginRollback;
use crate::plugin::metadata::{
    LIBRARY_VERSION, MIN_CLI_VERSION, PluginCommand, PluginMetadata, Usage, crate_version,
};

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
pub const ROLLBACK_HELP_TEXT: &str = "Put the previous version of an app (APP_NAME-venerable, kept by --old-app stop|keep) back without downtime; runs no release tasks";
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
/// exclude each other (`command::push::args::ALTERNATIVES`) as `[a | b]`, flags that are refused (`command::push::args::REFUSED`)
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
