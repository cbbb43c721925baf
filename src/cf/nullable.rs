//! Reading Cloud Controller's `null` where a field has a default.
//!
//! Cloud Controller sends `null` for many fields a client would expect to be absent or an
//! object: `"revision": null` for a process without a revision, `"process_types": null` for a
//! droplet still staging, `"metadata": {"labels": null}` from older API versions. A field
//! marked `#[serde(default)]` accepts a missing key but not `null`; every such field of the
//! response types in [`crate::cf`] therefore also names [`null_as_default`].
//!
//! Depends on: serde. Must not: hold resource-specific rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Reads `null` like a missing key: the type's default. Pair it with `#[serde(default)]`.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads a string map, `null` as empty and each `null` value as a missing key (Cloud
/// Controller's own reading of a `null` label or annotation).
pub(crate) fn map_without_nulls<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    let raw = Option::<BTreeMap<String, Option<V>>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "null_as_default")]
        n: u32,
        #[serde(default, deserialize_with = "null_as_default")]
        s: String,
        #[serde(default, deserialize_with = "map_without_nulls")]
        m: BTreeMap<String, String>,
    }

    #[test]
    fn null_reads_as_the_default() {
        let h: Holder = serde_json::from_str(r#"{"n": null, "s": null, "m": null}"#).unwrap();
        assert_eq!((h.n, h.s.as_str(), h.m.len()), (0, "", 0));
        let h: Holder = serde_json::from_str("{}").unwrap();
        assert_eq!((h.n, h.s.as_str(), h.m.len()), (0, "", 0));
        let h: Holder = serde_json::from_str(r#"{"n": 3, "s": "x"}"#).unwrap();
        assert_eq!((h.n, h.s.as_str()), (3, "x"));
    }

    #[test]
    fn null_map_values_are_dropped() {
        let h: Holder = serde_json::from_str(r#"{"m": {"a": "1", "b": null}}"#).unwrap();
        assert_eq!(h.m, BTreeMap::from([("a".to_string(), "1".to_string())]));
    }

    #[test]
    fn a_wrong_type_is_still_an_error() {
        assert!(serde_json::from_str::<Holder>(r#"{"n": "three"}"#).is_err());
        assert!(serde_json::from_str::<Holder>(r#"{"m": {"a": 1}}"#).is_err());
    }

    /// Every fixture under `tests/fixtures/cc/`: each field that may be left out (the model
    /// defaults it or reads it as `None`) must also parse when Cloud Controller sends `null`.
    mod fixtures {
        use std::path::{Path, PathBuf};

        use serde::de::DeserializeOwned;
        use serde_json::Value;

        use super::super::super::{
            App, AppFeature, Build, Deployment, Domain, Droplet, Info, Job, ManifestDiff,
            Organization, Package, Page, Process, RootInfo, Route, ServiceCredentialBinding,
            ServiceInstance, Space, Task, ToOne, apps, client, log_cache, network_policies,
            processes::InstanceStats, resource_matches, routes,
        };
        use crate::cf::{DropletGuid, MatchedResource, routes::Destination};

        type Parse = fn(&Value) -> Result<(), String>;

        fn parse<T: DeserializeOwned>(v: &Value) -> Result<(), String> {
            serde_json::from_value::<T>(v.clone())
                .map(drop)
                .map_err(|e| e.to_string())
        }

        /// The response type of a fixture, by its folder and name.
        fn parser_for(dir: &str, file: &str) -> Option<Parse> {
            let list = file.starts_with("list") || file == "features.json";
            Some(match (dir, file) {
                ("apps", "current_droplet_relationship.json") => parse::<ToOne<DropletGuid>>,
                ("apps", "env_vars.json") => parse::<apps::EnvVars>,
                ("apps", "feature_ssh.json") => parse::<AppFeature>,
                ("apps", "features.json") => parse::<Page<AppFeature>>,
                ("apps", _) if list => parse::<Page<App>>,
                ("apps", _) => parse::<App>,
                ("builds", _) => parse::<Build>,
                ("deployments", _) if list => parse::<Page<Deployment>>,
                ("deployments", _) => parse::<Deployment>,
                ("domains", _) if list => parse::<Page<Domain>>,
                ("domains", _) => parse::<Domain>,
                ("droplets", _) => parse::<Droplet>,
                ("errors", _) => parse::<client::ErrorDocument>,
                ("info", _) => parse::<Info>,
                ("jobs", _) => parse::<Job>,
                ("log_cache", _) => parse::<log_cache::WireRead>,
                ("manifests", _) => parse::<ManifestDiff>,
                ("network_policies", _) => parse::<network_policies::Policies>,
                ("organizations", _) => parse::<Page<Organization>>,
                ("packages", _) => parse::<Package>,
                ("processes", "stats.json") => parse::<Page<InstanceStats>>,
                ("processes", _) if list => parse::<Page<Process>>,
                ("processes", _) => parse::<Process>,
                ("resource_matches", _) => parse::<resource_matches::Resources<MatchedResource>>,
                ("root", _) => parse::<RootInfo>,
                ("routes", "destinations.json") => parse::<routes::Destinations<Destination>>,
                ("routes", _) if list => parse::<Page<Route>>,
                ("routes", _) => parse::<Route>,
                ("service_credential_bindings", _) if list => {
                    parse::<Page<ServiceCredentialBinding>>
                }
                ("service_credential_bindings", _) => parse::<ServiceCredentialBinding>,
                ("service_instances", _) => parse::<Page<ServiceInstance>>,
                ("spaces", _) => parse::<Page<Space>>,
                ("tasks", _) => parse::<Task>,
                _ => return None,
            })
        }

        /// JSON pointers of every object key in `v`, depth first.
        fn field_pointers(v: &Value, at: &str, out: &mut Vec<String>) {
            match v {
                Value::Object(map) => {
                    for (k, child) in map {
                        let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                        out.push(p.clone());
                        field_pointers(child, &p, out);
                    }
                }
                Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        field_pointers(child, &format!("{at}/{i}"), out);
                    }
                }
                _ => {}
            }
        }

        /// `v` with the field at `pointer` set to null, or removed.
        fn edited(v: &Value, pointer: &str, to_null: bool) -> Value {
            let mut v = v.clone();
            let (parent, key) = pointer.rsplit_once('/').expect("pointers start with /");
            let key = key.replace("~1", "/").replace("~0", "~");
            if let Some(Value::Object(map)) = v.pointer_mut(parent) {
                if to_null {
                    map.insert(key, Value::Null);
                } else {
                    map.remove(&key);
                }
            }
            v
        }

        fn fixture_files() -> Vec<PathBuf> {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cc");
            let mut files = Vec::new();
            for dir in std::fs::read_dir(&root).expect("tests/fixtures/cc") {
                let dir = dir.expect("fixture folder").path();
                if !dir.is_dir() {
                    continue;
                }
                for f in std::fs::read_dir(&dir).expect("fixture folder") {
                    let f = f.expect("fixture file").path();
                    if f.extension().is_some_and(|e| e == "json") {
                        files.push(f);
                    }
                }
            }
            files.sort();
            files
        }

        #[test]
        fn every_optional_field_of_every_fixture_accepts_null() {
            let mut failures = Vec::new();
            let mut checked = 0;
            let files = fixture_files();
            assert!(files.len() > 50, "{} fixtures", files.len());
            for path in files {
                let dir = path
                    .parent()
                    .and_then(Path::file_name)
                    .unwrap()
                    .to_string_lossy();
                let file = path.file_name().unwrap().to_string_lossy();
                let parse = parser_for(&dir, &file)
                    .unwrap_or_else(|| panic!("{dir}/{file}: name its response type here"));
                let text = std::fs::read_to_string(&path).unwrap();
                let v: Value =
                    serde_json::from_str(&text.replace("BASE_URL", "https://api.example.org"))
                        .unwrap();
                if let Err(e) = parse(&v) {
                    panic!("{dir}/{file} does not parse as it is: {e}");
                }
                let mut pointers = Vec::new();
                field_pointers(&v, "", &mut pointers);
                for p in pointers {
                    if parse(&edited(&v, &p, false)).is_err() {
                        continue; // a required field: null is rightly refused
                    }
                    checked += 1;
                    if let Err(e) = parse(&edited(&v, &p, true)) {
                        failures.push(format!("{dir}/{file} {p}: {e}"));
                    }
                }
            }
            assert!(
                failures.is_empty(),
                "null refused:\n{}",
                failures.join("\n")
            );
            assert!(checked > 500, "only {checked} optional fields checked");
            eprintln!("{checked} optional fields accept null");
        }
    }
}
