//! Fuzz target: the manifest parser never panics (nor runs out of memory: run with
//! `-rss_limit_mb=512`) on any UTF-8 input, with `((vars))` built from the input, and whatever it
//! accepts renders to a manifest that it accepts again (or that only trips over a `((var))` kept
//! in a string).
//!
//! Input: `VARS\0MANIFEST`. Each `NAME=VALUE` line of VARS is a `--var` (VALUE read as YAML), so
//! the fuzzer can grow large values and reference them from the manifest; without a NUL the whole
//! input is the manifest.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run -O manifest_parse fuzz/corpus/manifest_parse fuzz/seeds/manifest_parse tests/fixtures/manifests/valid tests/fixtures/manifests/corpus -- -rss_limit_mb=512 -max_total_time=150`

#![no_main]

use std::path::Path;

use cf_zero_downtime::manifest::{self, Error, LoadOptions, RenderOverrides};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (vars_text, text) = text.split_once('\0').unwrap_or(("", text));
    let mut vars: Vec<(String, String)> =
        vec![("name".into(), "fuzzed".into()), ("n".into(), "2".into())];
    vars.extend(vars_text.lines().filter_map(|line| {
        let (name, value) = line.split_once('=')?;
        Some((name.to_string(), value.to_string()))
    }));
    let opts = LoadOptions {
        vars,
        ..LoadOptions::default()
    };
    let Ok(m) = manifest::parse_str(text, Path::new("fuzz.yml"), &opts) else {
        return;
    };
    // Selection may fail (missing paths, no name); it must not panic.
    drop(m.select(None));
    for app in &m.applications {
        let ov = RenderOverrides {
            name: app.name.is_empty().then(|| "unnamed".to_string()),
            ..RenderOverrides::default()
        };
        let Ok(rendered) = app.render(&ov) else {
            continue;
        };
        match manifest::parse_str(&rendered, Path::new("rendered.yml"), &opts) {
            Ok(_) | Err(Error::MissingVars { .. } | Error::VarType { .. }) => {}
            Err(e) => panic!("rendered manifest does not parse again: {e}\n{rendered}"),
        }
    }
});
