//! The Go plugin library's metadata types (`SetPluginMetadata`) and their gob encoding. What
//! this plugin fills in is generated from its flags by `command::plugin::metadata`.
//!
//! Depends on: `gob`. Pure.

use std::collections::BTreeMap;

use super::gob::{Type, Value};

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
    pub major: i64,
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
