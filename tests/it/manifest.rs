//! Manifest layer: every fixture under tests/fixtures/manifests against its expected model or error
//! (golden files in tests/fixtures/manifests/expected, regenerated with `UPDATE_EXPECT=1`), plus
//! targeted checks of interpolation, merge keys, path resolution, selection, flags and rendering, and
//! a property test that render → parse keeps every kept key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cf_zero_downtime::manifest::{
    self, AppBits, Error, FlagOverrides, LoadOptions, Manifest, RenderOverrides, Value,
};
use proptest::prelude::*;

const FIXTURES: &str = "tests/fixtures/manifests";

fn root() -> PathBuf {
    std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).expect("crate root exists")
}

fn cwd() -> PathBuf {
    root().join(FIXTURES)
}

fn opts(vars_files: &[&str], vars: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        vars_files: vars_files.iter().map(PathBuf::from).collect(),
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cwd: cwd(),
    }
}

/// A fixture run: manifest, vars files, `--var`s, and the golden file's name.
struct Case {
    manifest: &'static str,
    vars_files: &'static [&'static str],
    vars: &'static [(&'static str, &'static str)],
    golden: &'static str,
}

const fn case(manifest: &'static str, golden: &'static str) -> Case {
    Case {
        manifest,
        vars_files: &[],
        vars: &[],
        golden,
    }
}

macro_rules! corpus {
    ($file:literal) => {
        case(concat!("tests/fixtures/manifests/corpus/", $file), $file)
    };
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        corpus!("001-kardolus-sidecars-sidecars.yml"),
        corpus!("003-cloudfoundry-samples-cf-sample-app-nodejs-nodejs.yml"),
        corpus!("004-cloudfoundry-stratos-stratos.yml"),
        corpus!("005-cloudfoundry-stratos-stratos-docker.yml"),
        corpus!("007-cloud-gov-pages-core-pages.yml"),
        corpus!("008-GSA-TTS-FAC-fac.yml"),
        corpus!("009-GSA-catalog.data.gov-catalog.yml"),
        corpus!("011-SAP-cloud-security-services-integration-library-java-bp-api.yml"),
        corpus!("012-SAP-cloud-security-services-integration-library-java-security.yml"),
        corpus!("013-spring-cloud-services-samples-greeting-greeter.yml"),
        corpus!("015-18F-analytics-reporter-consumer.yml"),
        corpus!("016-cloud-gov-cf-cdn-service-broker-cdn-broker-base.yml"),
        corpus!("017-cloud-gov-cf-cdn-service-broker-cdn-broker-cron.yml"),
        corpus!("019-govau-performance-dashboard-prod.yml"),
        corpus!("020-govau-performance-dashboard-testing.yml"),
        corpus!("021-openregister-registers-frontend-registers.yml"),
        corpus!("023-mattclarkdotnet-cf-flask-skeleton-flask-dev.yml"),
        corpus!("024-cloudfoundry-samples-cf-ex-php-info-php-info.yml"),
        corpus!("025-cloudfoundry-samples-cf-ex-drupal-drupal.yml"),
        corpus!("027-cloudfoundry-cf-acceptance-tests-dora-route-options.yml"),
        corpus!("028-cloudfoundry-cf-acceptance-tests-java-spring.yml"),
        corpus!("029-cloudfoundry-cf-acceptance-tests-cnb-node.yml"),
        corpus!("031-cloudfoundry-cf-acceptance-tests-proxy-internal.yml"),
        corpus!("032-cloudfoundry-cf-acceptance-tests-nora-readiness.yml"),
        corpus!("033-cloudfoundry-cf-networking-release-tick.yml"),
        corpus!("035-SteeltoeOSS-Samples-config-windows.yml"),
        corpus!("036-SteeltoeOSS-Samples-config-linux.yml"),
        corpus!("037-SteeltoeOSS-Samples-authweb.yml"),
        corpus!("039-IBM-Cloud-get-started-python-get-started-python.yml"),
        corpus!("040-watson-developer-cloud-assistant-simple-assistant-simple.yml"),
        corpus!("041-watson-developer-cloud-food-coach-food-coach.yml"),
        corpus!("043-cloud-gov-pages-build-container-build-container.yml"),
        corpus!("044-cloud-gov-cg-dashboard-dashboard-base.yml"),
        corpus!("045-cloud-gov-cg-dashboard-dashboard-prod.yml"),
        corpus!("047-cloud-gov-cg-dashboard-redirect-govcloud.yml"),
        corpus!("048-alphagov-paas-cdn-broker-cdn-cron.yml"),
        corpus!("049-alphagov-paas-cdn-broker-cdn-base.yml"),
        corpus!("051-spring-cloud-services-samples-animal-rescue-animal-rescue.yml"),
        corpus!("052-spring-cloud-services-samples-cook-cook.yml"),
        corpus!("053-GSA-notifications-api-notify-api.yml"),
        corpus!("055-hsdp-api-gateway-demo-docker-multi.yml"),
        corpus!("056-hsdp-api-gateway-demo-buildpack-multi.yml"),
        corpus!("057-US-EPA-CAMD-easey-emissions-api-emissions.yml"),
        corpus!("059-meshcloud-dumptruck-dumptruck.yml"),
        corpus!("060-GSA-TTS-cg-egress-proxy-egress-proxy.yml"),
        corpus!("061-cloudfoundry-samples-capi-sidecar-samples-sidecar-java.yml"),
        corpus!("063-cloudfoundry-samples-capi-sidecar-samples-sidecar-go.yml"),
        corpus!("064-HHS-Head-Start-TTADP-smarthub.yml"),
        corpus!("065-HHS-Head-Start-TTADP-dynamic.yml"),
        corpus!("067-DOI-ONRR-nrrd-hasura.yml"),
        corpus!("068-pivotal-customer0-hello-java-docker-image.yml"),
        corpus!("069-requarks-wiki-ibm-cloud-foundry-wikijs.yml"),
        corpus!("071-linuxacademy-content-cf-hello-node-manifest-random-route.yml"),
        corpus!("072-linuxacademy-content-cf-hello-node-manifest-docker-ghost.yml"),
        corpus!("073-linuxacademy-content-cf-hello-node-manifest-inherit.yml"),
        corpus!("075-cloud-gov-clamav-rest-image-clamav-docker.yml"),
        corpus!("076-cloud-gov-clamav-rest-image-clamav-test.yml"),
        corpus!("077-swisscom-blogpost-cnb-cnb-docker.yml"),
        corpus!("079-cloudfoundry-cli-merge-fixture.yml"),
        corpus!("080-cloudfoundry-cli-empty-fixture.yml"),
        corpus!("081-cloudfoundry-samples-rails_sample_app-rails.yml"),
        corpus!("083-cloud-gov-pages-site-gantry-site-gantry.yml"),
        // The same manifests with their vars files and the --var values their pipelines pass.
        Case {
            manifest: "tests/fixtures/manifests/corpus/007-cloud-gov-pages-core-pages.yml",
            vars_files: &[
                "tests/fixtures/manifests/corpus/007-cloud-gov-pages-core-pages-vars.yml",
            ],
            vars: &[],
            golden: "007-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/008-GSA-TTS-FAC-fac.yml",
            vars_files: &["tests/fixtures/manifests/corpus/008-GSA-TTS-FAC-fac-vars.yml"],
            vars: &[],
            golden: "008-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/009-GSA-catalog.data.gov-catalog.yml",
            vars_files: &[
                "tests/fixtures/manifests/corpus/009-GSA-catalog.data.gov-catalog-vars.yml",
            ],
            vars: &[],
            golden: "009-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/011-SAP-cloud-security-services-integration-library-java-bp-api.yml",
            vars_files: &[],
            vars: &[
                ("ID", "d012345"),
                ("LANDSCAPE_APPS_DOMAIN", "cfapps.eu10.hana.ondemand.com"),
            ],
            golden: "011-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/027-cloudfoundry-cf-acceptance-tests-dora-route-options.yml",
            vars_files: &[],
            vars: &[
                ("domain", "apps.example.com"),
                ("roundrobinhost", "rr"),
                ("leastconnhost", "lc"),
                ("hashbasedroutinghost", "hash"),
            ],
            golden: "027-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/043-cloud-gov-pages-build-container-build-container.yml",
            vars_files: &[
                "tests/fixtures/manifests/corpus/043-cloud-gov-pages-build-container-build-container-vars.yml",
            ],
            vars: &[],
            golden: "043-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/053-GSA-notifications-api-notify-api.yml",
            vars_files: &[
                "tests/fixtures/manifests/corpus/053-GSA-notifications-api-notify-api-vars.yml",
            ],
            vars: &[
                ("ADMIN_CLIENT_SECRET", "s1"),
                ("DANGEROUS_SALT", "s2"),
                (
                    "LOGIN_DOT_GOV_REGISTRATION_URL",
                    "https://login.example.gov/register",
                ),
                ("NEW_RELIC_LICENSE_KEY", "nr"),
                ("NOTIFY_E2E_TEST_EMAIL", "e2e@example.gov"),
                ("NOTIFY_E2E_TEST_PASSWORD", "pw"),
                ("SECRET_KEY", "sk"),
            ],
            golden: "053-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/055-hsdp-api-gateway-demo-docker-multi.yml",
            vars_files: &[
                "tests/fixtures/manifests/corpus/055-hsdp-api-gateway-demo-docker-multi-vars.yml",
            ],
            vars: &[],
            golden: "055-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/056-hsdp-api-gateway-demo-buildpack-multi.yml",
            vars_files: &[
                "tests/fixtures/manifests/corpus/055-hsdp-api-gateway-demo-docker-multi-vars.yml",
            ],
            vars: &[],
            golden: "056-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/057-US-EPA-CAMD-easey-emissions-api-emissions.yml",
            vars_files: &[
                "tests/fixtures/manifests/corpus/057-US-EPA-CAMD-easey-emissions-api-emissions-vars.yml",
            ],
            vars: &[],
            golden: "057-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/060-GSA-TTS-cg-egress-proxy-egress-proxy.yml",
            vars_files: &[],
            vars: &[
                ("proxyname", "egress-proxy"),
                ("hostname", "egress"),
                ("username", "proxy-user"),
                ("password", "proxy-pass"),
                ("proxydeny", ""),
                ("proxyallow", "*.example.gov"),
            ],
            golden: "060-with-empty-var.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/060-GSA-TTS-cg-egress-proxy-egress-proxy.yml",
            vars_files: &[],
            vars: &[
                ("proxyname", "egress-proxy"),
                ("hostname", "egress"),
                ("username", "proxy-user"),
                ("password", "proxy-pass"),
                ("proxydeny", "blocked.example.com"),
                ("proxyallow", "*.example.gov"),
            ],
            golden: "060-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/broken/splice-bool-var.yml",
            vars_files: &[],
            vars: &[("debug", "true")],
            golden: "broken-splice-bool-var-with-var.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/064-HHS-Head-Start-TTADP-smarthub.yml",
            vars_files: &[
                "tests/fixtures/manifests/corpus/064-HHS-Head-Start-TTADP-smarthub-vars.yml",
            ],
            vars: &[
                ("BUILD_BRANCH", "main"),
                ("BUILD_COMMIT", "abc123"),
                ("BUILD_NUMBER", "42"),
                ("BUILD_RELEASE_TAG", "v1.2.3"),
                ("BUILD_TIMESTAMP", "2024-01-01T00:00:00Z"),
                ("NEW_RELIC_LICENSE_KEY", "nr"),
            ],
            golden: "064-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/065-HHS-Head-Start-TTADP-dynamic.yml",
            vars_files: &[],
            vars: &[
                ("memory", "512M"),
                ("disk_quota", "1G"),
                ("instances", "1"),
                ("buildpack", "nodejs_buildpack"),
                ("command", "yarn automation"),
                ("bound_services", "[ttahub-db, ttahub-redis]"),
            ],
            golden: "065-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/069-requarks-wiki-ibm-cloud-foundry-wikijs.yml",
            vars_files: &[
                "tests/fixtures/manifests/corpus/069-requarks-wiki-ibm-cloud-foundry-wikijs-vars.yml",
            ],
            vars: &[],
            golden: "069-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/075-cloud-gov-clamav-rest-image-clamav-docker.yml",
            vars_files: &[],
            vars: &[
                ("app_name", "clamav-rest"),
                (
                    "ecr_repository",
                    "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com/clamav",
                ),
                ("image_version", "1.4.0"),
                ("docker_username", "AWS"),
                ("route", "clamav.apps.internal"),
            ],
            golden: "075-with-vars.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/corpus/083-cloud-gov-pages-site-gantry-site-gantry.yml",
            vars_files: &[
                "tests/fixtures/manifests/corpus/083-cloud-gov-pages-site-gantry-site-gantry-vars.yml",
            ],
            vars: &[("site", "example"), ("api_key", "k")],
            golden: "083-with-vars.yml",
        },
        // Our own valid fixtures.
        case("tests/fixtures/manifests/valid/full.yml", "valid-full.yml"),
        case(
            "tests/fixtures/manifests/valid/anchors-and-merges.yml",
            "valid-anchors-and-merges.yml",
        ),
        Case {
            manifest: "tests/fixtures/manifests/valid/vars-everywhere.yml",
            vars_files: &[
                "tests/fixtures/vars/common.yml",
                "tests/fixtures/vars/override.yml",
            ],
            vars: &[("env", "prod"), ("memory_mb", "1024")],
            golden: "valid-vars-everywhere.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/valid/vars-everywhere.yml",
            vars_files: &["tests/fixtures/vars/not-a-map.yml"],
            vars: &[],
            golden: "vars-file-not-a-map.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/valid/vars-everywhere.yml",
            vars_files: &["tests/fixtures/vars/invalid.yml"],
            vars: &[],
            golden: "vars-file-invalid.yml",
        },
        Case {
            manifest: "tests/fixtures/manifests/valid/vars-everywhere.yml",
            vars_files: &[],
            vars: &[],
            golden: "vars-all-missing.yml",
        },
        case(
            "tests/fixtures/manifests/valid/docker-app.yml",
            "valid-docker-app.yml",
        ),
        case(
            "tests/fixtures/manifests/valid/single-no-name.yml",
            "valid-single-no-name.yml",
        ),
        case(
            "tests/fixtures/manifests/valid/missing-path.yml",
            "valid-missing-path.yml",
        ),
        case(
            "tests/fixtures/manifests/valid/legacy-v6-keys.yml",
            "valid-legacy-v6-keys.yml",
        ),
        case(
            "tests/fixtures/manifests/valid/bom-and-crlf.yml",
            "valid-bom-and-crlf.yml",
        ),
        case(
            "tests/fixtures/manifests/valid/types-kept.yml",
            "valid-types-kept.yml",
        ),
    ];
    // Every broken fixture.
    for name in list_yml("tests/fixtures/manifests/broken") {
        let manifest: &'static str =
            Box::leak(format!("tests/fixtures/manifests/broken/{name}").into_boxed_str());
        let golden: &'static str = Box::leak(format!("broken-{name}").into_boxed_str());
        v.push(case(manifest, golden));
    }
    v
}

fn list_yml(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// The model as text: warnings, per app the bits and the rendered document; or the error.
fn describe(result: &Result<Manifest, Error>) -> String {
    let root = root().display().to_string();
    let mut out = String::new();
    match result {
        Err(e) => {
            out.push_str(&format!("error: {e}\n"));
        }
        Ok(m) => {
            for w in &m.warnings {
                out.push_str(&format!("warning: {w}\n"));
            }
            for app in &m.applications {
                let bits = match (&app.bits, m.select(Some(&app.name))) {
                    (_, Err(e)) if !app.name.is_empty() => format!("select error: {e}"),
                    (Some(AppBits::Directory(p)), _) => format!("directory {}", p.display()),
                    (Some(AppBits::Archive(p)), _) => format!("archive {}", p.display()),
                    (None, _) => "none".into(),
                };
                out.push_str(&format!("app: {:?}\nbits: {bits}\n", app.name));
                let ov = RenderOverrides {
                    name: app
                        .name
                        .is_empty()
                        .then(|| "name-from-command-line".to_string()),
                    ..Default::default()
                };
                match app.render(&ov) {
                    Ok(text) => {
                        out.push_str("render:\n");
                        out.push_str(&text);
                    }
                    Err(e) => out.push_str(&format!("render error: {e}\n")),
                }
            }
        }
    }
    out.replace(&root, "<root>")
}

#[test]
fn every_fixture_matches_its_expected_model_or_error() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let expected_dir = Path::new(FIXTURES).join("expected");
    let mut failures = Vec::new();
    let all = cases();
    for c in &all {
        let result = manifest::load(Path::new(c.manifest), &opts(c.vars_files, c.vars));
        let got = describe(&result);
        let golden = expected_dir.join(format!("{}.txt", c.golden.trim_end_matches(".yml")));
        if update {
            std::fs::create_dir_all(&expected_dir).expect("create expected dir");
            std::fs::write(&golden, &got).expect("write golden");
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{}: differs\n--- want\n{want}\n--- got\n{got}",
                c.golden
            )),
            Err(_) => failures.push(format!("{}: no golden file {}", c.golden, golden.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(all.len() >= 40, "fixture count {}", all.len());
}

#[test]
fn every_fixture_file_is_covered() {
    let all = cases();
    for dir in ["corpus", "broken", "valid"] {
        for name in list_yml(&format!("{FIXTURES}/{dir}")) {
            if name.ends_with("-vars.yml") {
                continue;
            }
            let path = format!("{FIXTURES}/{dir}/{name}");
            assert!(all.iter().any(|c| c.manifest == path), "{path} has no case");
        }
    }
}

fn load_text(text: &str) -> Result<Manifest, Error> {
    manifest::parse_str(text, Path::new("manifest.yml"), &opts(&[], &[]))
}

fn err_text(text: &str) -> String {
    match load_text(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn syntax_and_type_errors_name_file_line_column_and_key() {
    assert_eq!(
        err_text("applications:\n- name: web\n  instances: two\n"),
        "manifest.yml:3:14: instances: expected a whole number, found 'two'"
    );
    assert_eq!(
        err_text("applications:\n- name: web\n  memory: 1Q\n"),
        "manifest.yml:3:11: memory: Memory must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB (found '1Q')"
    );
    let dup = err_text("applications:\n- name: web\n  memory: 1G\n  memory: 2G\n");
    assert!(
        dup.starts_with("manifest.yml:4:3: manifest is not valid YAML: duplicate key 'memory'"),
        "{dup}"
    );
    let tab = err_text("applications:\n- name: web\n\tmemory: 1G\n");
    assert!(
        tab.starts_with("manifest.yml:3:1: manifest is not valid YAML: tab character"),
        "{tab}"
    );
    assert_eq!(
        err_text("applications: []\n"),
        "manifest.yml: manifest must have at least one application"
    );
    let route = err_text("applications:\n- name: web\n  routes:\n  - route: 'a b.example.com'\n");
    assert!(
        route.starts_with("manifest.yml:4:12: route: invalid route 'a b.example.com'"),
        "{route}"
    );
}

#[test]
fn debug_output_hides_env_values_and_kept_values() {
    let m = load_text(
        "applications:\n- name: web\n  env:\n    DB_PASSWORD: hunter2\n  cnb-credentials:\n    registry: {password: s3cret}\n",
    )
    .unwrap();
    let debug = format!("{:?}", m);
    assert!(
        debug.contains("DB_PASSWORD") && debug.contains("cnb-credentials"),
        "{debug}"
    );
    assert!(
        !debug.contains("hunter2") && !debug.contains("s3cret"),
        "{debug}"
    );
}

#[test]
fn errors_expose_the_offending_key_and_location() {
    let e = load_text("applications:\n- name: web\n  processes:\n  - type: web\n    memory: 12\n")
        .unwrap_err();
    assert_eq!(e.key(), Some("processes.memory"));
    let l = e.location().unwrap();
    assert_eq!((l.line, l.col), (5, 13));
    let e = load_text("applications:\n- name: web\n  env: {A: 1, A: 2}\n").unwrap_err();
    assert_eq!(e.key(), Some("A"));
}

#[test]
fn quoted_numbers_are_not_numbers() {
    assert_eq!(
        err_text("applications:\n- name: web\n  instances: \"2\"\n"),
        "manifest.yml:3:14: instances: expected a whole number, found the string '2' (remove the quotes)"
    );
}

#[test]
fn type_errors_after_interpolation_point_at_the_variable() {
    let e = manifest::parse_str(
        "applications:\n- name: web\n  instances: ((n))\n",
        Path::new("m.yml"),
        &opts(&[], &[("n", "two")]),
    )
    .unwrap_err();
    // The variable is named, its value never shown: it may be a secret.
    assert_eq!(
        e.to_string(),
        "m.yml:3:14: instances: expected a whole number, found the value of ((n))"
    );
}

/// A secret that lands where it does not fit is named by its variable and field only, in every
/// message a bad value can produce, spliced or whole.
#[test]
fn errors_about_interpolated_values_never_show_the_value() {
    let secret = "hunter2!s3cr3t";
    let cases = [
        ("  memory: ((db_password))\n", "memory"),
        ("  disk_quota: ((db_password))\n", "disk_quota"),
        ("  instances: ((db_password))\n", "instances"),
        ("  no-route: ((db_password))\n", "no-route"),
        (
            "  health-check-type: ((db_password))\n",
            "health-check-type",
        ),
        (
            "  health-check-http-endpoint: ((db_password))\n",
            "health-check-http-endpoint",
        ),
        (
            "  log-rate-limit-per-second: ((db_password))\n",
            "log-rate-limit-per-second",
        ),
        ("  timeout: ((db_password))\n", "timeout"),
        ("  routes:\n  - route: ((db_password))\n", "route"),
        (
            "  routes:\n  - route: x.example.com/a?((db_password))\n",
            "route",
        ),
        (
            "  routes:\n  - route: x.example.com\n    protocol: ((db_password))\n",
            "protocol",
        ),
        ("  memory: 1((db_password))\n", "memory"),
    ];
    for (entry, field) in cases {
        let text = format!("applications:\n- name: web\n{entry}");
        let e = manifest::parse_str(
            &text,
            Path::new("m.yml"),
            &opts(&[], &[("db_password", secret)]),
        )
        .expect_err(entry)
        .to_string();
        assert!(!e.contains("hunter2"), "{entry}: {e}");
        assert!(e.contains("((db_password))"), "{entry}: {e}");
        assert!(e.contains(&format!("{field}:")), "{entry}: {e}");
    }
    // The same for a value too large to be a count.
    let e = manifest::parse_str(
        "applications:\n- name: web\n  instances: ((n))\n",
        Path::new("m.yml"),
        &opts(&[], &[("n", "987654321987")]),
    )
    .unwrap_err()
    .to_string();
    assert!(!e.contains("987654321987"), "{e}");
    assert!(e.contains("((n)) is too large"), "{e}");
}

/// 50 chained anchors in under 20 KB used to expand to ~9,500 levels and overflow the stack
/// (exit 134); now a located error. Vars files share the parser.
#[test]
fn chained_aliases_deeper_than_the_limit_are_a_located_error() {
    let mut doc = String::from("x0: &a0 x\n");
    for i in 1..=50 {
        doc.push_str(&format!(
            "x{i}: &a{i} {}*a{} {}\n",
            "[".repeat(190),
            i - 1,
            "]".repeat(190)
        ));
    }
    doc.push_str("applications:\n- name: web\n");
    assert!(doc.len() < 20_000);
    let e = err_text(&doc);
    assert!(e.starts_with("manifest.yml:3:"), "{e}");
    assert!(e.contains("nested too deeply"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("vars.yml");
    std::fs::write(&vars, &doc).unwrap();
    let vars = vars.to_str().unwrap().to_owned();
    let e = manifest::parse_str(
        "applications:\n- name: web\n",
        Path::new("manifest.yml"),
        &LoadOptions {
            vars_files: vec![PathBuf::from(&vars)],
            ..opts(&[], &[])
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with(&format!("{vars}:3:")), "{e}");
    assert!(e.contains("nested too deeply"), "{e}");
}

#[test]
fn missing_variables_are_listed_at_once_before_anything_else() {
    let e = load_text("applications:\n- name: ((b))\n  memory: ((a))\n  env: {X: ((c.d))}\n")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "manifest.yml: Expected to find variables: a, b, c.d"
    );
    assert!(matches!(e, Error::MissingVars { ref names, .. } if names.len() == 3));
}

#[test]
fn vars_files_then_var_flags_with_types_kept() {
    let m = manifest::load(
        Path::new("tests/fixtures/manifests/valid/vars-everywhere.yml"),
        &opts(
            &[
                "tests/fixtures/vars/common.yml",
                "tests/fixtures/vars/override.yml",
            ],
            &[("env", "prod"), ("memory_mb", "1024")],
        ),
    )
    .unwrap();
    let app = &m.applications[0];
    assert_eq!(app.name, "shop-prod");
    assert_eq!(app.instances, Some(2), "the later vars file wins");
    assert_eq!(
        app.memory.as_deref(),
        Some("1024M"),
        "--var wins over files"
    );
    assert_eq!(app.routes[0].route, "shop-staging.example.com");
    assert_eq!(app.services.len(), 2);
    assert_eq!(app.services[1].binding_name.as_deref(), Some("c"));
    assert_eq!(app.env["DB_PORT"], Value::Int(5432));
    assert_eq!(
        app.env["DB_URL"],
        Value::Str("postgres://db.internal:5432/shop".into())
    );
    assert_eq!(app.env["DEBUG"], Value::Bool(false));
    assert_eq!(app.env["FROM_FILE"], Value::Str("set-by-key".into()));
    assert_eq!(app.env["BANG"], Value::Str("prod".into()));
}

#[test]
fn anchors_aliases_and_merge_keys_expand_as_the_cf_cli_does() {
    let m = manifest::load(
        Path::new("tests/fixtures/manifests/valid/anchors-and-merges.yml"),
        &opts(&[], &[]),
    )
    .unwrap();
    let api = &m.applications[0];
    assert_eq!(api.instances, Some(4), "explicit keys win over merged ones");
    assert_eq!(api.memory.as_deref(), Some("256M"));
    assert_eq!(api.buildpacks, Some(vec!["go_buildpack".to_string()]));
    let worker = &m.applications[1];
    assert_eq!(
        worker.env["TRACING"],
        Value::Str("on".into()),
        "earlier maps in a merge list win"
    );
    assert!(!worker.env.contains_key("LOG_LEVEL"));
    assert_eq!(worker.health_check_type.as_deref(), Some("process"));
    assert_eq!(worker.instances, Some(2));
    let plain = &m.applications[2];
    assert_eq!(plain.env["REGION"], Value::Str("eu".into()));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn paths_resolve_against_the_manifest_folder_and_default_to_cwd() {
    let dir = root().join("tests/fixtures/manifests/valid");
    let m = manifest::load(
        Path::new("tests/fixtures/manifests/valid/full.yml"),
        &opts(&[], &[]),
    )
    .unwrap();
    assert_eq!(
        m.applications[0].bits,
        Some(AppBits::Directory(dir.join("app")))
    );
    let m = manifest::load(
        Path::new("tests/fixtures/manifests/valid/single-no-name.yml"),
        &opts(&[], &[]),
    )
    .unwrap();
    assert_eq!(
        m.applications[0].bits,
        Some(AppBits::Archive(dir.join("app.jar")))
    );
    let m = manifest::load(
        Path::new("tests/fixtures/manifests/valid/anchors-and-merges.yml"),
        &opts(&[], &[]),
    )
    .unwrap();
    assert_eq!(
        m.applications[0].bits,
        Some(AppBits::Directory(cwd())),
        "no path: the working directory"
    );
    let m = manifest::load(
        Path::new("tests/fixtures/manifests/valid/docker-app.yml"),
        &opts(&[], &[]),
    )
    .unwrap();
    assert_eq!(m.applications[0].bits, None);
}

#[test]
fn a_missing_path_fails_only_the_app_that_is_selected() {
    let m = manifest::load(
        Path::new("tests/fixtures/manifests/valid/missing-path.yml"),
        &opts(&[], &[]),
    )
    .unwrap();
    assert_eq!(m.select(Some("present")).unwrap().len(), 1);
    let e = m.select(Some("absent")).unwrap_err().to_string();
    assert!(
        e.starts_with("tests/fixtures/manifests/valid/missing-path.yml:5:9: file not found locally, make sure the file exists at given path"),
        "{e}"
    );
    assert!(e.ends_with("valid/build/libs/absent.jar"), "{e}");
    assert!(m.select(None).is_err());
}

#[test]
fn select_names_an_app_or_lists_the_apps() {
    let m = manifest::load(
        Path::new("tests/fixtures/manifests/corpus/079-cloudfoundry-cli-merge-fixture.yml"),
        &opts(&[], &[]),
    )
    .unwrap();
    assert_eq!(m.select(None).unwrap().len(), 3);
    assert_eq!(m.select(Some("green")).unwrap()[0].name, "green");
    assert_eq!(
        m.select(Some("red")).unwrap_err().to_string(),
        "could not find app named 'red' in manifest tests/fixtures/manifests/corpus/079-cloudfoundry-cli-merge-fixture.yml; it has: blue, green, big-blue"
    );
    let nameless = load_text("applications:\n- memory: 64M\n").unwrap();
    assert!(matches!(nameless.select(None), Err(Error::NameRequired)));
}

#[test]
fn flags_follow_the_cf_cli_rules() {
    let multi = || {
        manifest::load(
            Path::new("tests/fixtures/manifests/corpus/079-cloudfoundry-cli-merge-fixture.yml"),
            &opts(&[], &[]),
        )
        .unwrap()
    };
    let stack = FlagOverrides {
        stack: Some("cflinuxfs4".into()),
        ..Default::default()
    };
    let e = multi().apply_flags(None, &stack).unwrap_err();
    assert_eq!(
        e.to_string(),
        "incorrect usage: command line flags (except -f and --no-start) cannot be applied when pushing multiple apps from a manifest file"
    );
    let mut m = multi();
    m.apply_flags(Some("green"), &stack).unwrap();
    assert_eq!(m.applications[1].stack.as_deref(), Some("cflinuxfs4"));
    assert_eq!(m.applications[0].stack, None);
    assert!(multi().apply_flags(None, &FlagOverrides::default()).is_ok());
    assert!(matches!(
        multi().apply_flags(Some("nope"), &stack),
        Err(Error::AppNotFound { .. })
    ));

    // Single app: the argument renames it; -p is relative to the working directory.
    let mut single = load_text("applications:\n- name: web\n  memory: 64M\n").unwrap();
    single
        .apply_flags(
            Some("web-2"),
            &FlagOverrides {
                path: Some("valid/app.jar".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(single.applications[0].name, "web-2");
    assert_eq!(
        single.applications[0].bits,
        Some(AppBits::Archive(cwd().join("valid/app.jar")))
    );
    let e = single
        .apply_flags(
            None,
            &FlagOverrides {
                path: Some("no/such/dir".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(e.to_string().starts_with("file not found locally"), "{e}");

    // -o makes a docker app; it conflicts with -p and with manifest buildpacks.
    let mut d = load_text("applications:\n- name: web\n").unwrap();
    d.apply_flags(
        None,
        &FlagOverrides {
            docker_image: Some("nginx:1.27".into()),
            docker_username: Some("me".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let app = &d.applications[0];
    assert_eq!(
        app.docker.as_ref().map(|d| d.image.as_str()),
        Some("nginx:1.27")
    );
    assert_eq!(
        app.docker.as_ref().and_then(|d| d.username.as_deref()),
        Some("me")
    );
    assert_eq!(app.bits, None);
    let both = FlagOverrides {
        docker_image: Some("nginx".into()),
        path: Some("valid".into()),
        ..Default::default()
    };
    assert!(matches!(
        load_text("applications:\n- name: web\n")
            .unwrap()
            .apply_flags(None, &both),
        Err(Error::Usage(_))
    ));
    let with_bp = FlagOverrides {
        docker_image: Some("nginx".into()),
        ..Default::default()
    };
    assert!(matches!(
        load_text("applications:\n- name: web\n  buildpacks: [go_buildpack]\n")
            .unwrap()
            .apply_flags(None, &with_bp),
        Err(Error::Usage(_))
    ));
    let user_only = FlagOverrides {
        docker_username: Some("me".into()),
        ..Default::default()
    };
    assert!(matches!(
        load_text("applications:\n- name: web\n")
            .unwrap()
            .apply_flags(None, &user_only),
        Err(Error::Usage(_))
    ));
    let path_flag = FlagOverrides {
        path: Some("valid".into()),
        ..Default::default()
    };
    assert!(matches!(
        load_text("applications:\n- name: web\n  docker: {image: nginx}\n")
            .unwrap()
            .apply_flags(None, &path_flag),
        Err(Error::Usage(_))
    ));
}

#[test]
fn without_file_is_one_app_pushed_from_the_working_directory() {
    let m = manifest::without_file("web", &opts(&[], &[]));
    assert_eq!(m.file, None);
    let apps = m.select(None).unwrap();
    assert_eq!(apps[0].name, "web");
    assert_eq!(apps[0].bits, Some(AppBits::Directory(cwd())));
    assert_eq!(
        apps[0].render(&RenderOverrides::default()).unwrap(),
        "version: 1\napplications:\n- name: web\n  default-route: true\n"
    );
}

#[test]
fn render_applies_strategy_overrides() {
    let m = manifest::load(
        Path::new("tests/fixtures/manifests/valid/full.yml"),
        &opts(&[], &[]),
    )
    .unwrap();
    let app = &m.applications[0];
    let ov = RenderOverrides {
        name: Some("shop-candidate".into()),
        routes: Some(vec!["shop-temp.example.com".into()]),
        instances: None,
        process_instances: BTreeMap::from([
            ("web".to_string(), 7),
            ("worker".to_string(), 5),
            ("clock".to_string(), 1),
        ]),
        extra_labels: BTreeMap::from([(
            "cf-zero-downtime/role".to_string(),
            "candidate".to_string(),
        )]),
        extra_annotations: BTreeMap::from([(
            "cf-zero-downtime/app".to_string(),
            "shop".to_string(),
        )]),
    };
    let text = app.render(&ov).unwrap();
    let back = manifest::parse_str(&text, Path::new("rendered.yml"), &opts(&[], &[])).unwrap();
    let r = &back.applications[0];
    assert_eq!(r.name, "shop-candidate");
    assert_eq!(r.routes.len(), 1);
    assert_eq!(r.routes[0].route, "shop-temp.example.com");
    assert!(r.default_route);
    assert_eq!(r.processes[0].instances, Some(7));
    assert_eq!(r.processes[1].instances, Some(5));
    assert_eq!(r.processes.len(), 2, "unknown process types are not added");
    assert_eq!(
        r.labels["cf-zero-downtime/role"].as_deref(),
        Some("candidate")
    );
    assert_eq!(r.labels["team"].as_deref(), Some("payments"));
    assert_eq!(
        r.annotations["cf-zero-downtime/app"].as_deref(),
        Some("shop")
    );
    assert!(!text.contains("path:"), "path is never rendered:\n{text}");
    assert_eq!(r.extra("sidecars"), app.extra("sidecars"));

    let no_routes = app
        .render(&RenderOverrides {
            routes: Some(vec![]),
            ..Default::default()
        })
        .unwrap();
    assert!(no_routes.contains("  no-route: true\n"), "{no_routes}");
    assert!(
        !no_routes.contains("routes:") && !no_routes.contains("default-route"),
        "{no_routes}"
    );

    let simple = load_text("applications:\n- name: web\n  instances: 2\n").unwrap();
    let text = simple.applications[0]
        .render(&RenderOverrides {
            instances: Some(5),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        text,
        "version: 1\napplications:\n- name: web\n  instances: 5\n  default-route: true\n"
    );
    let random = load_text("applications:\n- name: web\n  random-route: true\n").unwrap();
    let text = random.applications[0]
        .render(&RenderOverrides::default())
        .unwrap();
    assert!(
        text.contains("random-route: true") && !text.contains("default-route"),
        "{text}"
    );
}

#[test]
fn rendered_types_survive_a_round_trip() {
    let m = manifest::load(
        Path::new("tests/fixtures/manifests/valid/types-kept.yml"),
        &opts(&[], &[]),
    )
    .unwrap();
    let app = &m.applications[0];
    assert_eq!(app.env["QUOTED_INT"], Value::Str("42".into()));
    assert_eq!(app.env["INT"], Value::Int(42));
    assert_eq!(app.env["HEX"], Value::Int(31));
    assert_eq!(app.env["OCTAL"], Value::Int(511));
    assert_eq!(app.env["BOOL_YES"], Value::Bool(true));
    assert_eq!(app.env["STR_YES"], Value::Str("yes".into()));
    assert_eq!(app.env["MULTI"], Value::Str("line one\nline two\n".into()));
    let text = app.render(&RenderOverrides::default()).unwrap();
    assert!(text.contains("QUOTED_INT: \"42\""), "{text}");
    assert!(text.contains("STR_YES: \"yes\""), "{text}");
    assert!(text.contains("DATE_LIKE: \"2024-01-01\""), "{text}");
    let back = manifest::parse_str(&text, Path::new("r.yml"), &opts(&[], &[])).unwrap();
    let mut want = app.clone();
    want.default_route = true;
    assert_eq!(
        back.applications[0]
            .to_value(&RenderOverrides::default())
            .unwrap(),
        want.to_value(&RenderOverrides::default()).unwrap()
    );
    assert_eq!(back.applications[0].env, app.env);
}

// --- property: render → parse keeps every kept key -------------------------------------------------

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Int(i.into())),
        "[0-9]{1,3}\\.[0-9]{1,3}".prop_map(Value::Float),
        // `((` would be read as a variable by the second parse; Cloud Controller does not interpolate.
        "\\PC{0,12}"
            .prop_filter("no vars", |t| !t.contains("(("))
            .prop_map(Value::Str),
        any::<String>()
            .prop_filter("no vars", |t| !t.contains("(("))
            .prop_map(Value::Str),
        prop_oneof![
            Just("yes"),
            Just("no"),
            Just("on"),
            Just("~"),
            Just("null"),
            Just("1e3"),
            Just("0x1F"),
            Just("0777"),
            Just("- a"),
            Just("a: b"),
            Just("#x"),
            Just("*a"),
            Just("&a"),
            Just("!t"),
            Just("  padded "),
            Just("multi\nline"),
            Just("tab\there"),
            Just("\"q\""),
            Just("'s'"),
            Just("[a]"),
            Just("{a: 1}"),
            Just("2024-01-01"),
            Just("1:20"),
            Just(".5"),
            Just("<<"),
            Just("?"),
            Just("|"),
            Just(">"),
            Just("%x"),
            Just("@x"),
            Just("`x"),
            Just("nul\u{0}"),
            Just("\u{85}next"),
            Just("\u{feff}bom"),
            Just("ls\u{2028}"),
            Just("\u{a0}"),
            Just("bell\u{7}"),
            Just("del\u{7f}"),
            Just("a  b"),
            Just(" "),
            Just("-"),
            Just("--- x"),
            Just("...")
        ]
        .prop_map(|s| Value::Str(s.to_string())),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Seq),
            prop::collection::btree_map("[a-z_][a-z0-9_.-]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Map(m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect())),
        ]
    })
}

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn yaml_values_survive_emit_then_parse(v in tree()) {
        let doc = Value::Map(vec![
            (s("applications"), Value::Seq(vec![Value::Map(vec![(s("name"), s("a")), (s("x-v"), v.clone())])])),
        ]);
        let parsed = manifest::parse_str(&doc.to_yaml(), Path::new("a.yml"), &opts(&[], &[])).unwrap();
        prop_assert_eq!(parsed.applications[0].extra("x-v"), Some(&v));
    }

    #[test]
    fn render_then_parse_is_identity_on_kept_keys(
        name in "[a-z][a-z0-9-]{0,20}",
        instances in proptest::option::of(0u32..500),
        memory in proptest::option::of("[1-9][0-9]{0,3}(M|G|MB|GB)"),
        env in prop::collection::btree_map("E_[A-Z0-9_]{0,10}", scalar(), 0..6),
        extra in prop::collection::btree_map("x-[a-z]{1,8}", tree(), 0..4),
        labels in prop::collection::btree_map("[a-z]{1,8}", proptest::option::of("\\PC{0,10}".prop_filter("no vars", |t| !t.contains("(("))), 0..3),
        routes in prop::collection::vec("[a-z]{1,10}\\.example\\.com(/[a-z]{1,5})?", 0..3),
        random_route in any::<bool>(),
    ) {
        let random_route = random_route && routes.is_empty();
        let mut entry = vec![(s("name"), s(&name))];
        if let Some(i) = instances {
            entry.push((s("instances"), Value::Int(i.into())));
        }
        if let Some(m) = &memory {
            entry.push((s("memory"), s(m)));
        }
        entry.push((s("env"), Value::Map(env.iter().map(|(k, v)| (s(k), v.clone())).collect())));
        let label_map = labels.iter().map(|(k, v)| (s(k), v.as_deref().map_or(Value::Null, s))).collect();
        entry.push((s("metadata"), Value::Map(vec![(s("labels"), Value::Map(label_map))])));
        if !routes.is_empty() {
            let list = routes.iter().map(|r| Value::Map(vec![(s("route"), s(r))])).collect();
            entry.push((s("routes"), Value::Seq(list)));
        }
        if random_route {
            entry.push((s("random-route"), Value::Bool(true)));
        }
        for (k, v) in &extra {
            entry.push((s(k), v.clone()));
        }
        let source = Value::Map(vec![(s("applications"), Value::Seq(vec![Value::Map(entry)]))]).to_yaml();
        let parsed = manifest::parse_str(&source, Path::new("a.yml"), &opts(&[], &[])).unwrap();
        let app = &parsed.applications[0];
        prop_assert_eq!(&app.name, &name);
        prop_assert_eq!(app.instances, instances);
        prop_assert_eq!(&app.memory, &memory);
        prop_assert_eq!(&app.env, &env);
        prop_assert_eq!(&app.labels, &labels);
        prop_assert_eq!(app.routes.iter().map(|r| r.route.clone()).collect::<Vec<_>>(), routes);
        prop_assert_eq!(app.random_route, random_route);
        for (k, v) in &extra {
            prop_assert_eq!(app.extra(k), Some(v));
        }

        let rendered = app.render(&RenderOverrides::default()).unwrap();
        let back = manifest::parse_str(&rendered, Path::new("r.yml"), &opts(&[], &[])).unwrap();
        let b = &back.applications[0];
        prop_assert_eq!(&b.name, &app.name);
        prop_assert_eq!(b.instances, app.instances);
        prop_assert_eq!(&b.memory, &app.memory);
        prop_assert_eq!(&b.env, &app.env);
        prop_assert_eq!(&b.labels, &app.labels);
        prop_assert_eq!(&b.routes, &app.routes);
        prop_assert_eq!(b.random_route, app.random_route);
        prop_assert_eq!(b.default_route, !random_route);
        for (k, v) in &extra {
            prop_assert_eq!(b.extra(k), Some(v));
        }
        // A second round changes nothing at all.
        prop_assert_eq!(b.render(&RenderOverrides::default()).unwrap(), rendered);
    }
}

#[test]
fn a_directory_means_its_manifest_yml_or_yaml() {
    let dir = Path::new("tests/fixtures/manifests/dir-with-manifest");
    assert_eq!(manifest::locate(dir), Some(dir.join("manifest.yaml")));
    let m = manifest::load(dir, &opts(&[], &[])).unwrap();
    assert_eq!(m.file.as_deref(), Some(dir.join("manifest.yaml").as_path()));
    assert_eq!(m.applications[0].name, "found-by-directory");
    assert_eq!(
        m.applications[0].bits,
        Some(AppBits::Directory(root().join(dir)))
    );
    let e = manifest::load(Path::new("tests/fixtures/vars"), &opts(&[], &[])).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read manifest tests/fixtures/vars/manifest.yml"),
        "{e}"
    );
    assert!(manifest::locate(Path::new("tests/fixtures/vars")).is_none());
}

#[test]
fn cf_push_flags_change_the_rendered_entry_like_cf_push() {
    let mut m = load_text(
        "applications:\n- name: web\n  memory: 256M\n  health-check-type: http\n  health-check-http-endpoint: /ready\n  buildpack: ruby_buildpack\n  command: old.sh\n",
    )
    .unwrap();
    m.apply_flags(
        None,
        &FlagOverrides {
            buildpacks: vec!["default".into()],
            start_command: Some("null".into()),
            instances: Some(3),
            memory: Some("1G".into()),
            disk: Some("2G".into()),
            log_rate_limit: Some("4K".into()),
            health_check_type: Some("port".into()),
            app_start_timeout: Some(120),
            random_route: true,
            lifecycle: Some("cnb".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let app = &m.applications[0];
    assert_eq!(app.buildpacks, Some(Vec::new()));
    assert_eq!(app.extra("buildpack"), None);
    assert_eq!(app.command, None);
    assert_eq!(app.extra("command"), Some(&Value::Null));
    assert_eq!(app.instances, Some(3));
    assert_eq!(app.memory.as_deref(), Some("1G"));
    assert_eq!(app.disk_quota.as_deref(), Some("2G"));
    assert_eq!(app.log_rate_limit_per_second.as_deref(), Some("4K"));
    assert_eq!(app.health_check_type.as_deref(), Some("port"));
    assert_eq!(app.health_check_http_endpoint, None);
    assert_eq!(app.extra("timeout"), Some(&Value::Int(120)));
    assert!(app.random_route);
    assert_eq!(app.lifecycle.as_deref(), Some("cnb"));
    let yaml = app.render(&RenderOverrides::default()).unwrap();
    assert!(yaml.contains("  buildpacks: []\n"), "{yaml}");
    assert!(yaml.contains("  command: null\n"), "{yaml}");
    assert!(yaml.contains("  random-route: true\n"), "{yaml}");
    assert!(!yaml.contains("default-route"), "{yaml}");
}

#[test]
fn cf_push_flags_refuse_what_the_manifest_contradicts() {
    let refuse = |text: &str, flags: FlagOverrides, want: &str| {
        let e = load_text(text)
            .unwrap()
            .apply_flags(None, &flags)
            .unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e:?}");
        assert!(e.to_string().contains(want), "{e}");
    };
    refuse(
        "applications:\n- name: web\n  health-check-type: process\n",
        FlagOverrides {
            health_check_endpoint: Some("/health".into()),
            ..Default::default()
        },
        "health-check-type 'process'",
    );
    refuse(
        "applications:\n- name: web\n  docker: {image: nginx}\n",
        FlagOverrides {
            buildpacks: vec!["go_buildpack".into()],
            ..Default::default()
        },
        "--buildpack, -b cannot be used with app 'web'",
    );
    refuse(
        "applications:\n- name: web\n",
        FlagOverrides {
            memory: Some("512".into()),
            ..Default::default()
        },
        "--memory, -m '512'",
    );
    refuse(
        "applications:\n- name: web\n- name: api\n",
        FlagOverrides {
            no_route: true,
            ..Default::default()
        },
        "cannot be applied when pushing multiple apps",
    );
}

// Bounded input: what a manifest expands to (aliases and ((vars)) together) has one budget of
// 64 MiB. Each input below used to abort the process ("memory allocation failed") or take seconds.

fn load_with_vars(text: &str, vars: &[(&str, &str)]) -> Result<Manifest, Error> {
    manifest::parse_str(text, Path::new("manifest.yml"), &opts(&[], vars))
}

#[test]
fn an_anchor_aliased_thousands_of_times_is_a_clear_error() {
    // 1 MiB anchored string, 4000 aliases: 4 GB once expanded.
    let mut doc = format!("big: &big {}\nlist:\n", "x".repeat(1 << 20));
    for _ in 0..4000 {
        doc.push_str("- *big\n");
    }
    let e = err_text(&doc);
    assert!(
        e.starts_with("manifest.yml:")
            && e.contains("manifest expands to more than 64 MiB once its aliases are expanded"),
        "{e}"
    );
    // The alias that crossed the budget is named: line 3 holds the first alias.
    let line: usize = e.split(':').nth(1).unwrap().parse().unwrap();
    assert!((3..4003).contains(&line), "{e}");
}

#[test]
fn a_large_variable_referenced_thousands_of_times_is_a_clear_error() {
    // A 100k-element list referenced 3000 times: 300 million nodes once interpolated.
    let list = format!("[{}]", vec!["1"; 100_000].join(","));
    let mut doc = String::from("applications:\n- name: web\n  env:\n");
    for i in 0..3000 {
        doc.push_str(&format!("    K{i}: ((big))\n"));
    }
    let e = load_with_vars(&doc, &[("big", &list)]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("manifest expands to more than 64 MiB once its ((vars)) are interpolated"),
        "{text}"
    );
    let location = e.location().expect("the error has a location");
    // A `((big))` value: `    K<i>: ((big))` on line 4 + i.
    assert!(location.line >= 4, "{text}");
    let i = location.line - 4;
    assert_eq!(location.col, 8 + i.to_string().len(), "{text}");
}

#[test]
fn a_variable_spliced_into_one_string_many_times_is_a_clear_error() {
    // A 64 KiB string spliced 2000 times into one value: 128 MiB.
    let value = "v".repeat(64 << 10);
    let doc = format!(
        "applications:\n- name: web\n  env:\n    K: x{}\n",
        "((s))".repeat(2000)
    );
    let e = load_with_vars(&doc, &[("s", &value)]).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "manifest.yml:4:8: manifest is not valid YAML: manifest expands to more than 64 MiB"
        ),
        "{e}"
    );
}

#[test]
fn modest_reuse_of_anchors_and_vars_stays_within_the_budget() {
    let mut doc = String::from("base: &base {memory: 64M, disk_quota: 128M}\napplications:\n");
    for i in 0..200 {
        doc.push_str(&format!(
            "- name: app{i}\n  <<: *base\n  env: {{A: ((a)), B: x-((a))}}\n"
        ));
    }
    let m = load_with_vars(&doc, &[("a", &"y".repeat(1000))]).unwrap();
    assert_eq!(m.applications.len(), 200);
    assert_eq!(m.applications[199].memory.as_deref(), Some("64M"));
}

#[test]
fn duplicate_keys_in_a_large_mapping_are_found() {
    // 40k keys: the duplicate check used to compare every pair.
    let mut doc = String::from("applications:\n- name: web\n  env:\n");
    for i in 0..40_000 {
        doc.push_str(&format!("    K{i}: v\n"));
    }
    doc.push_str("    K17: again\n");
    let e = err_text(&doc);
    assert!(
        e.starts_with("manifest.yml:40004:5: manifest is not valid YAML: duplicate key 'K17' (first defined at line 21)"),
        "{e}"
    );
    // Without the duplicate, the same mapping loads, merged into another as a whole.
    let mut doc = String::from("big: &big\n");
    for i in 0..40_000 {
        doc.push_str(&format!("  K{i}: v\n"));
    }
    doc.push_str("applications:\n- name: web\n  env:\n    K5: mine\n    <<: *big\n");
    let m = load_text(&doc).unwrap();
    let env = &m.applications[0].env;
    assert_eq!(env.len(), 40_000);
    assert_eq!(env["K5"], Value::Str("mine".into()));
    assert_eq!(env["K39999"], Value::Str("v".into()));
}
