//! Fuzz target: the manifest parser never panics on any UTF-8 input, and whatever it accepts renders
//! to a manifest that it accepts again (or that only trips over a `((var))` kept in a string).

#![no_main]

use std::path::Path;

use cf_zero_downtime::manifest::{self, Error, LoadOptions, RenderOverrides};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = LoadOptions {
        vars: vec![("name".into(), "fuzzed".into()), ("n".into(), "2".into())],
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
