//! Golden vectors from the spec (plugin-rpc.md section 8), recorded from Go 1.19 by
//! `shared/tools/gobvec` (a copy of its output is in `src/plugin/testdata`).

use bytes::BytesMut;

use super::*;

const GOBVEC: &str = include_str!("../testdata/gobvec-output.txt");

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '|'], "")).expect("test vector is hex")
}

fn encode_one(ty: &Type, v: &Value) -> String {
    encode_after(0, ty, v)
}

/// Encodes as a fresh encoder in a Go process that had already allocated `earlier` type ids
/// (the stand-alone vectors come from one process, so their ids keep growing).
fn encode_after(earlier: i64, ty: &Type, v: &Value) -> String {
    let mut out = Vec::new();
    Encoder::starting_at(65 + earlier)
        .encode(ty, v, &mut out)
        .expect("encodes");
    hex::encode(out)
}

/// Every value in a complete stream.
fn decode_all(bytes: &[u8]) -> Vec<Decoded> {
    let mut buf = BytesMut::from(bytes);
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    while let Some(d) = dec.decode(&mut buf).expect("decodes") {
        out.push(d);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

/// The stand-alone encodings table of the golden output, by label.
fn standalone(label: &str) -> String {
    GOBVEC
        .lines()
        .find_map(|l| l.strip_prefix(label).filter(|rest| rest.starts_with(" ")))
        .map(|rest| rest.trim().to_string())
        .unwrap_or_else(|| panic!("no vector '{label}'"))
}

/// (scenario, direction, raw stream) for every captured stream.
fn captured_streams() -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    let (mut scenario, mut dir) = (String::new(), String::new());
    for line in GOBVEC.lines() {
        if let Some(rest) = line.strip_prefix("==================== scenario \"") {
            scenario = rest.split('"').next().unwrap_or_default().to_string();
        } else if let Some(rest) = line.strip_prefix("--- ") {
            dir = rest.split(" (").next().unwrap_or_default().to_string();
        } else if let Some(raw) = line.strip_prefix("raw: ") {
            out.push((scenario.clone(), dir.clone(), unhex(raw)));
        }
    }
    out
}

fn version_type() -> Type {
    Type::structure(
        "VersionType",
        &[
            ("Major", Type::Int),
            ("Minor", Type::Int),
            ("Build", Type::Int),
        ],
    )
}

#[test]
fn builtin_singletons_are_byte_exact() {
    let cases = [
        ("bool true", Type::Bool, Value::Bool(true)),
        ("bool false", Type::Bool, Value::Bool(false)),
        ("int 3", Type::Int, Value::Int(3)),
        ("int -129", Type::Int, Value::Int(-129)),
        ("uint 256", Type::Uint, Value::Uint(256)),
        ("float64 17.0", Type::Float, Value::Float(17.0)),
        ("string \"\"", Type::String, Value::string("")),
        ("string \"6.7.0\"", Type::String, Value::string("6.7.0")),
    ];
    for (label, ty, v) in cases {
        assert_eq!(encode_one(&ty, &v), standalone(label), "{label}");
    }
}

#[test]
fn composite_values_are_byte_exact() {
    let strings = Type::slice("", Type::String);
    let list = |items: &[&str]| Value::List(items.iter().map(|s| Value::string(*s)).collect());
    assert_eq!(
        encode_one(&strings, &list(&[])),
        standalone("[]string{} (empty, non-nil)")
    );
    assert_eq!(
        encode_one(&strings, &list(&[""])),
        standalone("[]string{\"\"}")
    );
    assert_eq!(
        encode_one(&strings, &list(&["apps"])),
        standalone("[]string{\"apps\"}")
    );
    assert_eq!(
        encode_after(
            1,
            &Type::map("", Type::String, Type::String),
            &Value::Map(vec![(Value::string("k"), Value::string("v"))])
        ),
        standalone("map[string]string{\"k\":\"v\"}")
    );
    assert_eq!(
        encode_after(2, &Type::structure("", &[]), &Value::Struct(vec![])),
        standalone("struct{}{} (rpc error body)")
    );
    let v123 = Value::structure([
        ("Major", Value::Int(1)),
        ("Minor", Value::Int(2)),
        ("Build", Value::Int(3)),
    ]);
    assert_eq!(
        encode_after(3, &version_type(), &v123),
        standalone("VersionType{1,2,3}")
    );
    assert_eq!(
        encode_after(3, &version_type(), &Value::Struct(vec![])),
        standalone("VersionType{} (zero)")
    );
}

#[test]
fn interfaces_and_time_are_byte_exact_modulo_ids() {
    let m = Type::map("", Type::String, Type::Interface);
    let iface = |name: &str, v: Value| Value::Interface {
        name: name.into(),
        value: Box::new(v),
    };
    let a = encode_after(
        4,
        &m,
        &Value::Map(vec![(
            Value::string("A"),
            iface("string", Value::string("b")),
        )]),
    );
    assert_eq!(a, standalone("map[string]interface{}{\"A\":\"b\"}"));
    let n = encode_after(
        4,
        &m,
        &Value::Map(vec![(
            Value::string("N"),
            iface("float64", Value::Float(1.5)),
        )]),
    );
    assert_eq!(n, standalone("map[string]interface{}{\"N\":1.5}"));
    let time = encode_after(
        5,
        &Type::gob_encoder("Time"),
        &Value::Encoded(unhex("010000000ed5b03cac00000000ffff")),
    );
    assert_eq!(time, standalone("time.Time 2020-01-14T22:50:20Z"));
}

#[test]
fn one_encoder_sends_each_definition_once() {
    let strings = Type::slice("", Type::String);
    let mut enc = Encoder::new();
    let mut first = Vec::new();
    enc.encode(&strings, &Value::List(vec![Value::string("a")]), &mut first)
        .expect("encodes");
    let mut second = Vec::new();
    enc.encode(
        &strings,
        &Value::List(vec![Value::string("b"), Value::string("c")]),
        &mut second,
    )
    .expect("encodes");
    assert_eq!(
        format!("{} || {}", hex::encode(first), hex::encode(second)),
        standalone("same encoder: []string{\"a\"} then {\"b\",\"c\"}")
    );
}

#[test]
fn a_value_that_does_not_fit_its_type_is_an_error_and_writes_nothing() {
    let mut out = Vec::new();
    let mut enc = Encoder::new();
    assert!(matches!(
        enc.encode(&version_type(), &Value::Int(1), &mut out),
        Err(Error::Encode(_))
    ));
    assert!(
        enc.encode(&Type::String, &Value::Bool(true), &mut out)
            .is_err()
    );
    assert!(
        enc.encode(
            &Type::Interface,
            &Value::Interface {
                name: "main.Point".into(),
                value: Box::new(Value::Nil)
            },
            &mut out
        )
        .is_err()
    );
    assert!(out.is_empty());
}

#[test]
fn every_captured_stream_decodes_completely() {
    let streams = captured_streams();
    assert_eq!(streams.len(), 18);
    for (scenario, dir, raw) in streams {
        let values = decode_all(&raw);
        assert!(!values.is_empty(), "{scenario} {dir}");
        // Every stream starts with an rpc Request or Response header.
        let method = values[0].value.str_field("ServiceMethod");
        assert!(
            method.is_some_and(|m| m.starts_with("CliRpcCmd.")),
            "{scenario} {dir}: {:?}",
            values[0]
        );
    }
}

#[test]
fn captured_get_app_reply_decodes_to_the_go_values() {
    let (_, _, raw) = captured_streams()
        .into_iter()
        .find(|(s, d, _)| s == "getapp" && d.starts_with("cf -> plugin"))
        .expect("getapp stream");
    let values = decode_all(&raw);
    assert_eq!(values.len(), 2);
    let app = &values[1].value;
    assert_eq!(app.str_field("Name"), Some("my-app"));
    assert_eq!(app.field("DiskQuota"), Some(&Value::Int(1024)));
    assert_eq!(app.field("Memory"), Some(&Value::Int(32)));
    assert_eq!(
        app.field("EnvironmentVars"),
        Some(&Value::Map(vec![(
            Value::string("GREETING"),
            Value::Interface {
                name: "string".into(),
                value: Box::new(Value::string("hi"))
            }
        )]))
    );
    assert_eq!(
        app.field("PackageUpdatedAt"),
        Some(&Value::Encoded(unhex("010000000ed5b03cac00000000ffff")))
    );
    assert_eq!(
        app.field("Stack").and_then(|s| s.str_field("Name")),
        Some("cflinuxfs4")
    );
    let instances = app
        .field("Instances")
        .and_then(Value::as_list)
        .expect("list");
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].field("CpuUsage"), Some(&Value::Float(0.5)));
    assert_eq!(instances[0].field("MemUsage"), Some(&Value::Int(15935488)));
    let routes = app.field("Routes").and_then(Value::as_list).expect("list");
    assert_eq!(
        routes[0].field("Domain").and_then(|d| d.str_field("Name")),
        Some("example.com")
    );
}

#[test]
fn captured_org_users_and_current_org_decode() {
    let streams = captured_streams();
    let reply = |name: &str| {
        let (_, _, raw) = streams
            .iter()
            .find(|(s, d, _)| s == name && d.starts_with("cf -> plugin"))
            .expect("stream");
        decode_all(raw)
    };
    let users = reply("orgusers");
    let list = users[1].value.as_list().expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].str_field("Username"), Some("admin"));
    assert_eq!(list[0].field("IsAdmin"), Some(&Value::Bool(true)));
    assert_eq!(
        list[0].field("Roles"),
        Some(&Value::List(vec![Value::string("RoleOrgManager")]))
    );
    assert_eq!(list[1].field("IsAdmin"), None);
    let org = reply("currentorg");
    let fields = org[1].value.field("OrganizationFields").expect("embedded");
    assert_eq!(fields.str_field("Name"), Some("my-org"));
    assert_eq!(fields.str_field("Guid"), Some("0a1b2c3d-guid"));
}

#[test]
fn error_replies_carry_the_error_and_an_empty_struct() {
    let streams = captured_streams();
    let (_, _, raw) = streams
        .iter()
        .find(|(s, d, _)| s == "nomethod" && d.starts_with("cf -> plugin"))
        .expect("stream");
    let values = decode_all(raw);
    assert_eq!(
        values[0].value.str_field("Error"),
        Some("rpc: can't find method CliRpcCmd.IsSkipSSLValidation")
    );
    assert_eq!(values[1].value, Value::Struct(vec![]));
}

#[test]
fn a_value_split_by_an_inline_interface_definition_decodes() {
    // Holder{A: Point{1,2}}: the Point definition sits inside the Holder value and the value
    // continues in the next message.
    let raw = unhex(&standalone("Holder{A: Point{1,2}} (split value)"));
    let want = Value::structure([(
        "A",
        Value::Interface {
            name: "main.Point".into(),
            value: Box::new(Value::structure([
                ("X", Value::Int(1)),
                ("Y", Value::Int(2)),
            ])),
        },
    )]);
    let values = decode_all(&raw);
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].value, want);
    // Byte by byte: nothing is decoded twice and the definition is not duplicated.
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in &raw {
        buf.extend_from_slice(&[*b]);
        while let Some(d) = dec.decode(&mut buf).expect("decodes") {
            got.push(d);
        }
    }
    assert_eq!(got, values);
}

#[test]
fn an_interface_definition_without_a_following_message_is_incomplete_not_wrong() {
    let raw = unhex(&standalone("Holder{A: Point{1,2}} (split value)"));
    // Everything except the last message.
    let cut = raw.len() - 10;
    let mut buf = BytesMut::from(&raw[..cut]);
    let mut dec = Decoder::new();
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(
        buf.len(),
        cut - 27,
        "only the Holder definition is consumed"
    );
}

#[test]
fn decoding_resumes_when_bytes_arrive_one_at_a_time() {
    let (_, _, raw) = captured_streams()
        .into_iter()
        .find(|(s, d, _)| s == "getapp" && d.starts_with("cf -> plugin"))
        .expect("stream");
    let whole = decode_all(&raw);
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in raw {
        buf.extend_from_slice(&[b]);
        while let Some(d) = dec.decode(&mut buf).expect("decodes") {
            got.push(d);
        }
    }
    assert_eq!(got, whole);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let cases: &[&[u8]] = &[
        &[0x00],
        &[0x01, 0x00],
        &[0x03, 0xff, 0x81, 0x00],
        &[0x02, 0x0c, 0x01],
        &[0x04, 0x0c, 0x00, 0x7f, 0x00],
        &[0x03, 0xff, 0x82, 0x00],
        &[0xf7, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0xfc, 0x7f, 0xff, 0xff, 0xff],
        &[0x05, 0x01, 0xf0, 0, 0, 0],
        &[0x03, 0x20, 0x00, 0x00],
    ];
    for raw in cases {
        let mut buf = BytesMut::from(*raw);
        let res = Decoder::new().decode(&mut buf);
        assert!(res.is_err(), "{raw:02x?} gave {res:?}");
    }
}

#[test]
fn deep_nesting_is_bounded() {
    // type 65 = struct { A T65 }: a value nests one level per byte.
    let mut stream = unhex("16ff81030101015401ff82000101 01014101ff82000000");
    let body: Vec<u8> = std::iter::once(0xff)
        .chain(std::iter::once(0x82))
        .chain(std::iter::repeat_n(0x01, 500))
        .collect();
    stream.extend_from_slice(&[0xfe, (body.len() >> 8) as u8, body.len() as u8]);
    stream.extend_from_slice(&body);
    let mut buf = BytesMut::from(&stream[..]);
    let err = Decoder::new().decode(&mut buf).expect_err("too deep");
    assert!(matches!(err, Error::TooDeep { .. }), "{err}");
}

#[test]
fn absurd_lengths_are_rejected_before_allocating() {
    let mut buf = BytesMut::from(&[0xf8, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        Decoder::new().decode(&mut buf),
        Err(Error::MessageTooLarge { .. })
    ));
    // A []string claiming 2^40 elements in a 12-byte message.
    let mut buf = BytesMut::from(&unhex("0cff83020102ff8400010c0000 09ff8400fb0100000000")[..]);
    assert!(Decoder::new().decode(&mut buf).is_err());
}

/// `plugin_models.GetAppModel` as the cf CLI's encoder names it.
fn get_app_model_type() -> Type {
    let time = Type::gob_encoder("Time");
    let guid_name =
        |name: &str| Type::structure(name, &[("Guid", Type::String), ("Name", Type::String)]);
    let instance = Type::structure(
        "GetApp_AppInstanceFields",
        &[
            ("State", Type::String),
            ("Details", Type::String),
            ("Since", time.clone()),
            ("CpuUsage", Type::Float),
            ("DiskQuota", Type::Int),
            ("DiskUsage", Type::Int),
            ("MemQuota", Type::Int),
            ("MemUsage", Type::Int),
        ],
    );
    let route = Type::structure(
        "GetApp_RouteSummary",
        &[
            ("Guid", Type::String),
            ("Host", Type::String),
            ("Domain", guid_name("GetApp_DomainFields")),
            ("Path", Type::String),
            ("Port", Type::Int),
        ],
    );
    Type::structure(
        "GetAppModel",
        &[
            ("Guid", Type::String),
            ("Name", Type::String),
            ("BuildpackUrl", Type::String),
            ("Command", Type::String),
            ("DetectedStartCommand", Type::String),
            ("DiskQuota", Type::Int),
            (
                "EnvironmentVars",
                Type::map("map[string]interface {}", Type::String, Type::Interface),
            ),
            ("InstanceCount", Type::Int),
            ("Memory", Type::Int),
            ("RunningInstances", Type::Int),
            ("HealthCheckTimeout", Type::Int),
            ("State", Type::String),
            ("SpaceGuid", Type::String),
            ("PackageUpdatedAt", time),
            ("PackageState", Type::String),
            ("StagingFailedReason", Type::String),
            (
                "Stack",
                Type::structure(
                    "GetApp_Stack",
                    &[
                        ("Guid", Type::String),
                        ("Name", Type::String),
                        ("Description", Type::String),
                    ],
                ),
            ),
            (
                "Instances",
                Type::slice("[]plugin_models.GetApp_AppInstanceFields", instance),
            ),
            (
                "Routes",
                Type::slice("[]plugin_models.GetApp_RouteSummary", route),
            ),
            (
                "Services",
                Type::slice(
                    "[]plugin_models.GetApp_ServiceSummary",
                    guid_name("GetApp_ServiceSummary"),
                ),
            ),
        ],
    )
}

#[test]
fn the_richest_cf_reply_re_encodes_to_gos_value_bytes() {
    // GetApp reply: int64, float64, *struct, []struct, map[string]interface{}, time.Time.
    let (_, _, raw) = captured_streams()
        .into_iter()
        .find(|(s, d, _)| s == "getapp" && d.starts_with("cf -> plugin"))
        .expect("stream");
    let go_values = decode_all(&raw);
    let response_type = Type::structure(
        "Response",
        &[
            ("ServiceMethod", Type::String),
            ("Seq", Type::Uint),
            ("Error", Type::String),
        ],
    );
    let mut enc = Encoder::new();
    let mut ours = Vec::new();
    enc.encode(&response_type, &go_values[0].value, &mut ours)
        .expect("header");
    enc.encode(&get_app_model_type(), &go_values[1].value, &mut ours)
        .expect("GetAppModel");
    // Same ids as Go's process, so the value message (the last 239 + 3 bytes) is identical;
    // only the time.Time definition differs (Go sends it nameless with an unrelated id).
    let tail = 3 + 0xef;
    assert_eq!(
        hex::encode(&ours[ours.len() - tail..]),
        hex::encode(&raw[raw.len() - tail..])
    );
    assert_eq!(decode_all(&ours), go_values);
}

/// A stream of `[]struct{<name> int}` with `n` elements, each `element` on the wire. Built from
/// the encoder's output for one element (type definitions, then the value message), with the
/// value message rewritten for `n` elements.
fn slice_of_structs(name: &str, n: u64, element: &[u8]) -> Vec<u8> {
    let ty = Type::slice("", Type::structure("", &[(name, Type::Int)]));
    let one = Value::List(vec![Value::structure([(name, Value::Int(1))])]);
    let mut out = Vec::new();
    Encoder::new().encode(&ty, &one, &mut out).expect("encodes");
    // Walk the messages to the last one: the value.
    let mut at = 0;
    let mut last = 0;
    while at < out.len() {
        let (len, width) = wire::peek_uint(&out[at..], 0).unwrap().unwrap();
        last = at;
        at += width + len as usize;
    }
    let (len, width) = wire::peek_uint(&out[last..], 0).unwrap().unwrap();
    let body = &out[last + width..last + width + len as usize];
    // The body ends with the slice length 1 and the element [delta 1, int 1, end].
    assert!(body.ends_with(&[0x01, 0x01, 0x02, 0x00]), "{body:x?}");
    let mut value = body[..body.len() - 4].to_vec();
    wire::put_uint(&mut value, n);
    for _ in 0..n {
        value.extend_from_slice(element);
    }
    let mut stream = out[..last].to_vec();
    wire::put_uint(&mut stream, value.len() as u64);
    stream.extend_from_slice(&value);
    stream
}

#[test]
fn struct_field_names_are_shared_not_copied_per_value() {
    // A 1 MB field name and 200k elements of 3 bytes: copying the name per element would ask
    // for 200 GB.
    let name = "N".repeat(1 << 20);
    let stream = slice_of_structs(&name, 200_000, &[0x01, 0x02, 0x00]);
    let values = decode_all(&stream);
    let Value::List(items) = &values[0].value else {
        panic!("not a list");
    };
    assert_eq!(items.len(), 200_000);
    let name_of = |v: &Value| match v {
        Value::Struct(fields) => std::sync::Arc::clone(&fields[0].0),
        other => panic!("not a struct: {other:?}"),
    };
    let first = name_of(&items[0]);
    assert_eq!(&*first, name.as_str());
    assert!(
        items
            .iter()
            .all(|v| std::sync::Arc::ptr_eq(&name_of(v), &first))
    );
    assert_eq!(items[199_999].field(&name), Some(&Value::Int(1)));
}

#[test]
fn the_memory_of_one_decoded_value_is_bounded() {
    // 3 MB on the wire: three million empty structs, each a `Value` once decoded.
    let stream = slice_of_structs("A", 3_000_000, &[0x00]);
    assert!(stream.len() < 3_100_000);
    let mut buf = BytesMut::from(&stream[..]);
    let err = Decoder::new().decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, Error::DecodedTooLarge { limit, .. } if limit == 128 << 20),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("decodes to more than 134217728 bytes"),
        "{err}"
    );
    // A lower limit stops the strings of a smaller value; the same stream fits a higher one.
    let stream = slice_of_structs("A", 1000, &[0x01, 0x02, 0x00]);
    let tight = Limits {
        max_decoded: 10_000,
        ..Limits::default()
    };
    let mut buf = BytesMut::from(&stream[..]);
    assert!(matches!(
        Decoder::with_limits(tight).decode(&mut buf),
        Err(Error::DecodedTooLarge { limit: 10_000, .. })
    ));
    assert_eq!(decode_all(&stream).len(), 1);
}

/// A stream of `defs` struct type definitions (ids 1000, 1001, ...) of `fields` one-letter int
/// fields each, one message per definition, then the int 7 as a value.
fn huge_type_definitions(defs: usize, fields: usize) -> Vec<u8> {
    let mut stream = Vec::new();
    for d in 0..defs {
        let mut body = Vec::new();
        wire::put_int(&mut body, -(1000 + d as i64));
        wire::put_uint(&mut body, 3); // wireType field 2: StructT
        wire::put_uint(&mut body, 2); // structType field 1: the field list
        wire::put_uint(&mut body, fields as u64);
        for _ in 0..fields {
            wire::put_uint(&mut body, 1); // fieldType.Name
            wire::put_bytes(&mut body, b"A");
            wire::put_uint(&mut body, 1); // fieldType.Id
            wire::put_int(&mut body, 2); // int
            wire::put_uint(&mut body, 0);
        }
        wire::put_uint(&mut body, 0); // end of structType
        wire::put_uint(&mut body, 0); // end of wireType
        wire::put_uint(&mut stream, body.len() as u64);
        stream.extend_from_slice(&body);
    }
    let mut value = Vec::new();
    wire::put_int(&mut value, 2);
    wire::put_uint(&mut value, 0);
    wire::put_int(&mut value, 7);
    wire::put_uint(&mut stream, value.len() as u64);
    stream.extend_from_slice(&value);
    stream
}

#[test]
fn type_definitions_count_against_the_stream_budget() {
    // 20 definitions of 10,000 fields: 1.2 MB on the wire, over 16 MB once held.
    let stream = huge_type_definitions(20, 10_000);
    assert!(stream.len() < 1_300_000);
    let tight = Limits {
        max_decoded: 4 << 20,
        ..Limits::default()
    };
    let mut buf = BytesMut::from(&stream[..]);
    let err = Decoder::with_limits(tight).decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, Error::DecodedTooLarge { limit, .. } if limit == 4 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("type definitions"), "{err}");
    // With room for them, the definitions are kept and the value after them decodes.
    let roomy = Limits {
        max_decoded: 64 << 20,
        ..Limits::default()
    };
    let mut buf = BytesMut::from(&stream[..]);
    let d = Decoder::with_limits(roomy)
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(d.value, Value::Int(7));
    // The definitions and the value share one budget: what the definitions took is not
    // available to the value.
    let stream = {
        let mut s = huge_type_definitions(1, 1000);
        s.extend_from_slice(&slice_of_structs("B", 1000, &[0x01, 0x02, 0x00]));
        s
    };
    let enough_for_either = Limits {
        max_decoded: 150_000,
        ..Limits::default()
    };
    let value_alone = slice_of_structs("B", 1000, &[0x01, 0x02, 0x00]);
    let mut buf = BytesMut::from(&value_alone[..]);
    assert!(
        Decoder::with_limits(enough_for_either)
            .decode(&mut buf)
            .unwrap()
            .is_some()
    );
    let mut dec = Decoder::with_limits(enough_for_either);
    let mut buf = BytesMut::from(&stream[..]);
    assert_eq!(dec.decode(&mut buf).unwrap().unwrap().value, Value::Int(7));
    assert!(matches!(
        dec.decode(&mut buf),
        Err(Error::DecodedTooLarge { .. })
    ));
}

#[test]
fn a_stream_of_huge_type_definitions_is_refused_with_the_default_limits() {
    // Eight messages of 300,000 fields (1.8 MB each, under the message limit): each definition
    // alone fits the budget, together they do not (they used to be kept without bound).
    let stream = huge_type_definitions(8, 300_000);
    assert!(stream.len() < 15 << 20);
    let mut buf = BytesMut::from(&stream[..]);
    let err = Decoder::new().decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, Error::DecodedTooLarge { limit, .. } if limit == 128 << 20),
        "{err}"
    );
}
