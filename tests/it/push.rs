//! The wiring of issue 7 against wiremock: the `CfBackend` adapter's mappings (errors with
//! request ids, job and package waits, resource matching in chunks and the multipart upload
//! through `package::push_bits`), and `wiring::push`'s preflight (manifest and flag errors stop
//! with no request; discovery failures stop with nothing changed; a dry run plans from reads).

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cf_zero_downtime::cf::{self, Client, ClientConfig, NamedGuid, RetryPolicy, StaticToken};
use cf_zero_downtime::command::adapter::CfBackend;
use cf_zero_downtime::command::flags::CommonFlags;
use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::command::push::{PushOptions, push};
use cf_zero_downtime::deploy::api::{
    AppGuid, AppSource, BuildGuid, BuildState, CfApi, NetworkPolicy, NewDestination, PackageGuid,
    ProgressSink, RouteGuid, SpaceGuid,
};
use cf_zero_downtime::deploy::{Event, Outcome};
use cf_zero_downtime::package;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{any, body_json, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::mock_api::{fixture, multipart_parts, ok_json, requests};
use crate::support::sha1_hex;

const TOKEN: &str = "bearer secret-token-123";

fn token() -> Arc<dyn cf::TokenProvider> {
    Arc::new(StaticToken(SecretString::from(TOKEN)))
}

fn backend(server: &MockServer) -> CfBackend {
    let mut c = ClientConfig::new(server.uri(), token());
    c.retry = RetryPolicy::never();
    c.request_timeout = Duration::from_secs(10);
    let client = Client::new(c).unwrap();
    CfBackend::new(client, "space-1", Some("org-1".into()))
        .with_poll(Duration::from_millis(5), Duration::from_secs(5))
}

fn target(endpoint: &str) -> cf::Target {
    cf::Target {
        api_endpoint: endpoint.to_string(),
        skip_ssl_validation: false,
        org: Some(NamedGuid {
            name: "my-org".into(),
            guid: "org-1".into(),
        }),
        space: Some(NamedGuid {
            name: "dev".into(),
            guid: "space-1".into(),
        }),
        user: Some("alice".into()),
    }
}

fn args() -> PushArgs {
    PushArgs {
        common: CommonFlags {
            drain: cf_zero_downtime::command::flags::DrainArg::fixed(Duration::ZERO),
            timeout: Duration::from_secs(30),
            ..CommonFlags::default()
        },
        ..PushArgs::default()
    }
}

async fn run_push(endpoint: &str, args: PushArgs, cwd: &Path) -> (Outcome, Vec<Event>) {
    let mut opts = PushOptions::new(target(endpoint), token(), args, cwd.to_path_buf());
    opts.poll_interval = Duration::from_millis(5);
    let mut events: Vec<Event> = Vec::new();
    let outcome = push(opts, &mut events, &CancellationToken::new()).await;
    (outcome, events)
}

fn nothing_changed(outcome: &Outcome) -> String {
    match outcome {
        Outcome::NothingChanged { error } => error.to_string(),
        other => panic!("expected nothing changed, got {other:?}"),
    }
}

/// A server that fails the test if any request reaches it.
async fn untouchable() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    server
}

// ---------------------------------------------------------------- adapter: errors

#[tokio::test]
async fn cc_errors_keep_status_code_title_details_and_request_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/app-1"))
        .respond_with(
            ResponseTemplate::new(422)
                .insert_header("X-Vcap-Request-Id", "req-42")
                .set_body_json(fixture("errors/unprocessable_two.json", &server)),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/apps/gone"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(fixture("errors/not_found_app.json", &server)),
        )
        .mount(&server)
        .await;
    let b = backend(&server);
    let e = b.get_app(&AppGuid::from("app-1")).await.unwrap_err();
    assert_eq!(e.status, Some(422));
    assert_eq!(e.code, Some(10008));
    assert_eq!(e.title, "CF-UnprocessableEntity");
    assert!(e.detail.contains("GET /v3/apps/app-1"), "{}", e.detail);
    assert!(
        e.detail.contains("Memory must use a supported unit"),
        "{}",
        e.detail
    );
    assert!(
        e.detail.contains("App with the name 'x' already exists."),
        "{}",
        e.detail
    );
    assert_eq!(e.request_id.as_deref(), Some("req-42"));
    assert!(e.to_string().contains("[request id req-42]"), "{e}");
    assert!(!e.is_not_found());

    let gone = b.get_app(&AppGuid::from("gone")).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone:?}");
}

#[tokio::test]
async fn transport_failures_and_bad_tokens_are_named() {
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = ClientConfig::new(format!("http://127.0.0.1:{port}"), token());
    c.retry = RetryPolicy::never();
    c.connect_timeout = Duration::from_secs(2);
    let b = CfBackend::new(Client::new(c).unwrap(), "space-1", None);
    let e = b.get_app(&AppGuid::from("app-1")).await.unwrap_err();
    assert_eq!(e.status, None);
    assert_eq!(e.title, "transport");
    assert!(e.detail.contains("GET /v3/apps/app-1"), "{}", e.detail);
    assert!(!e.to_string().contains("secret-token"), "{e}");
    // No org: no default domain, and no request for it.
    assert_eq!(b.default_domain().await, Ok(None));
}

// ---------------------------------------------------------------- adapter: waits

#[tokio::test]
async fn apply_manifest_waits_for_its_job_and_collects_job_warnings() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/spaces/space-1/actions/apply_manifest"))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header("Location", format!("{}/v3/jobs/job-1", server.uri())),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/jobs/job-1"))
        .respond_with(ok_json(fixture("jobs/processing.json", &server)))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/jobs/job-1"))
        .respond_with(ok_json(fixture("jobs/complete.json", &server)))
        .mount(&server)
        .await;
    let b = backend(&server);
    b.apply_manifest(&SpaceGuid::from("space-1"), "applications:\n- name: web\n")
        .await
        .unwrap();
    let reqs = requests(&server).await;
    assert_eq!(reqs[0].body, b"applications:\n- name: web\n");
    let polls = reqs
        .iter()
        .filter(|r| r.url.path() == "/v3/jobs/job-1")
        .count();
    assert_eq!(polls, 3, "polled until COMPLETE");
    assert_eq!(b.take_warnings(), vec!["memory quota close to limit"]);
}

#[tokio::test]
async fn a_failed_job_keeps_the_cc_title() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/v3/routes/route-1"))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header("Location", format!("{}/v3/jobs/job-1", server.uri())),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/jobs/job-1"))
        .respond_with(ok_json(fixture("jobs/failed.json", &server)))
        .mount(&server)
        .await;
    let e = backend(&server)
        .delete_route(&RouteGuid::from("route-1"))
        .await
        .unwrap_err();
    assert_eq!(e.title, "CF-UnprocessableEntity");
    assert_eq!(e.code, Some(10008));
    assert!(e.detail.contains("Routes cannot be mapped"), "{}", e.detail);
}

#[tokio::test]
async fn job_waits_are_bounded() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/v3/apps/app-1"))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header("Location", format!("{}/v3/jobs/job-1", server.uri())),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/jobs/job-1"))
        .respond_with(ok_json(fixture("jobs/processing.json", &server)))
        .mount(&server)
        .await;
    let b = backend(&server).with_poll(Duration::from_millis(5), Duration::from_millis(60));
    let e = b.delete_app(&AppGuid::from("app-1")).await.unwrap_err();
    assert_eq!(e.title, "timeout", "{e:?}");
    assert!(e.detail.contains("job-1"), "{}", e.detail);
}

// ---------------------------------------------------------------- adapter: bits

#[tokio::test]
async fn upload_bits_matches_in_chunks_uploads_the_rest_and_waits_for_ready() {
    let dir = tempfile::tempdir().unwrap();
    let files = package::MATCH_CHUNK_SIZE + 1;
    for i in 0..files {
        std::fs::write(dir.path().join(format!("f{i:05}.txt")), format!("file {i}")).unwrap();
    }
    let scan = package::scan(&package::AppSource::Directory(dir.path().to_path_buf())).unwrap();

    let server = MockServer::start().await;
    // The server already has f00000.txt.
    let known = "file 0";
    Mock::given(method("POST"))
        .and(path("/v3/resource_matches"))
        .respond_with(ok_json(json!({"resources": [{
            "checksum": {"value": sha1_hex(known.as_bytes())},
            "size_in_bytes": known.len(),
            "path": "f00000.txt",
            "mode": "644"
        }]})))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/packages/pkg-1/upload"))
        .respond_with(ok_json(fixture("packages/processing_upload.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/packages/pkg-1"))
        .respond_with(ok_json(fixture("packages/processing_upload.json", &server)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/packages/pkg-1"))
        .respond_with(ok_json(fixture("packages/ready.json", &server)))
        .mount(&server)
        .await;

    let b = backend(&server);
    let (sink, mut rx) = ProgressSink::channel();
    b.upload_bits(&PackageGuid::from("pkg-1"), &scan, sink)
        .await
        .unwrap();

    let reqs = requests(&server).await;
    let matches: Vec<Value> = reqs
        .iter()
        .filter(|r| r.url.path() == "/v3/resource_matches")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let sizes: Vec<usize> = matches
        .iter()
        .map(|m| m["resources"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![package::MATCH_CHUNK_SIZE, 1]);
    let first = &matches[0]["resources"][0];
    assert_eq!(first["path"], "f00000.txt");
    assert_eq!(first["checksum"]["value"], sha1_hex(b"file 0"));
    assert_eq!(first["size_in_bytes"], 6);

    let upload = reqs
        .iter()
        .find(|r| r.url.path() == "/v3/packages/pkg-1/upload")
        .unwrap();
    let parts = multipart_parts(upload);
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["resources", "bits"]);
    let resources: Value = serde_json::from_slice(&parts[0].content).unwrap();
    assert_eq!(
        resources,
        json!([{
            "checksum": {"value": sha1_hex(b"file 0")},
            "size_in_bytes": 6,
            "path": "f00000.txt",
            "mode": "644"
        }])
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(parts[1].content.clone())).unwrap();
    assert_eq!(
        zip.len(),
        files - 1,
        "every unmatched file, not the matched one"
    );
    assert!(zip.by_name("f00000.txt").is_err());
    let mut content = String::new();
    zip.by_name("f00001.txt")
        .unwrap()
        .read_to_string(&mut content)
        .unwrap();
    assert_eq!(content, "file 1");

    let polls = reqs
        .iter()
        .filter(|r| r.url.path() == "/v3/packages/pkg-1")
        .count();
    assert_eq!(polls, 2, "waited for READY");
    let mut last = None;
    while let Ok(p) = rx.try_recv() {
        last = Some(p);
    }
    let last = last.expect("upload progress reported");
    assert_eq!(Some(last.sent), last.total);
    assert_eq!(last.sent, parts[1].content.len() as u64);
}

#[tokio::test]
async fn a_failed_upload_keeps_the_cc_error_and_names_the_package() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.js"), "x").unwrap();
    let scan = package::scan(&package::AppSource::Directory(dir.path().to_path_buf())).unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/resource_matches"))
        .respond_with(ok_json(json!({"resources": []})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/packages/pkg-1/upload"))
        .respond_with(
            ResponseTemplate::new(422)
                .insert_header("X-Vcap-Request-Id", "up-1")
                .set_body_json(fixture("errors/unprocessable_two.json", &server)),
        )
        .mount(&server)
        .await;
    let (sink, _rx) = ProgressSink::channel();
    let e = backend(&server)
        .upload_bits(&PackageGuid::from("pkg-1"), &scan, sink)
        .await
        .unwrap_err();
    assert_eq!(e.status, Some(422));
    assert_eq!(e.request_id.as_deref(), Some("up-1"));
    assert!(
        e.detail.starts_with("upload of package pkg-1"),
        "{}",
        e.detail
    );
}

#[tokio::test]
async fn docker_packages_send_the_password_only_in_the_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/packages"))
        .and(body_json(json!({
            "type": "docker",
            "relationships": {"app": {"data": {"guid": "app-1"}}},
            "data": {"image": "registry/image:latest", "username": "bob", "password": "s3cret-pw"}
        })))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(fixture("packages/docker_ready.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let b = backend(&server).with_docker_password(Some(SecretString::from("s3cret-pw")));
    assert!(!format!("{b:?}").contains("s3cret-pw"));
    let source: AppSource<package::Scan> = AppSource::Docker {
        image: "registry/image:latest".into(),
        username: Some("bob".into()),
    };
    let guid = b
        .create_package(&AppGuid::from("app-1"), &source)
        .await
        .unwrap();
    assert!(!guid.as_str().is_empty());
}

// ---------------------------------------------------------------- adapter: routes, builds, policies

#[tokio::test]
async fn add_destination_returns_the_apps_destination_and_builds_map_states() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/routes/route-1/destinations"))
        .and(body_json(json!({"destinations": [
            {"app": {"guid": "app-2", "process": {"type": "web"}}, "protocol": "http1"}
        ]})))
        .respond_with(ok_json(json!({"destinations": [
            {"guid": "d-1", "app": {"guid": "app-1", "process": {"type": "web"}}, "port": 8080, "protocol": "http1"},
            {"guid": "d-2", "app": {"guid": "app-2", "process": {"type": "web"}}, "port": 8080, "protocol": "http1"}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/builds/b-1"))
        .respond_with(ok_json(fixture("builds/failed.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/builds/b-2"))
        .respond_with(ok_json(fixture("builds/staged.json", &server)))
        .mount(&server)
        .await;
    let b = backend(&server);
    let d = b
        .add_destination(
            &RouteGuid::from("route-1"),
            &NewDestination {
                app_guid: "app-2".into(),
                process_type: "web".into(),
                port: None,
                protocol: Some("http1".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(d.guid, "d-2");
    assert_eq!(d.port, Some(8080));
    assert!(
        matches!(b.get_build(&BuildGuid::from("b-1")).await.unwrap(), BuildState::Failed(e) if !e.is_empty())
    );
    assert!(
        matches!(b.get_build(&BuildGuid::from("b-2")).await.unwrap(), BuildState::Staged(d) if !d.as_str().is_empty())
    );
}

#[tokio::test]
async fn network_policies_are_listed_created_and_deleted_on_the_networking_api() {
    let server = MockServer::start().await;
    let wire = json!({"policies": [{
        "source": {"id": "app-1"},
        "destination": {"id": "app-9", "protocol": "tcp", "ports": {"start": 8080, "end": 8081}}
    }]});
    Mock::given(method("GET"))
        .and(path("/networking/v1/external/policies"))
        .and(query_param("id", "app-1"))
        .respond_with(ok_json(wire.clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/networking/v1/external/policies"))
        .and(body_json(wire.clone()))
        .respond_with(ok_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/networking/v1/external/policies/delete"))
        .and(body_json(wire.clone()))
        .respond_with(ok_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let b = backend(&server);
    let listed = b.list_network_policies(&["app-1".into()]).await.unwrap();
    assert_eq!(
        listed,
        vec![NetworkPolicy {
            source_app: "app-1".into(),
            destination_app: "app-9".into(),
            protocol: "tcp".into(),
            start_port: 8080,
            end_port: 8081,
        }]
    );
    b.create_network_policies(&listed).await.unwrap();
    b.delete_network_policies(&listed).await.unwrap();
    // Empty lists make no request (the expectations above count exactly one each).
    b.delete_network_policies(&[]).await.unwrap();
}

// ---------------------------------------------------------------- push: preflight

#[tokio::test]
async fn a_broken_manifest_stops_with_its_file_and_line_and_no_request() {
    let server = untouchable().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manifest.yml"),
        "applications:\n- name: web\n  instances: many\n",
    )
    .unwrap();
    let (outcome, events) = run_push(&server.uri(), args(), dir.path()).await;
    let error = nothing_changed(&outcome);
    assert!(error.contains("manifest.yml:3:"), "{error}");
    assert!(error.contains("instances"), "{error}");
    assert!(requests(&server).await.is_empty());
    // The app names are not known (the manifest did not load): only the outcome is reported.
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(events.last(), Some(Event::Finished { outcome: o, .. }) if *o == outcome));
    assert_eq!(outcome.exit_code(), 1);
}

#[tokio::test]
async fn missing_vars_bad_flags_and_bad_paths_stop_before_any_request() {
    let server = untouchable().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manifest.yml"),
        "applications:\n- name: web\n  instances: ((count))\n",
    )
    .unwrap();
    let (o, _) = run_push(&server.uri(), args(), dir.path()).await;
    assert!(nothing_changed(&o).contains("count"), "{o:?}");

    std::fs::write(
        dir.path().join("manifest.yml"),
        "applications:\n- name: web\n",
    )
    .unwrap();
    let bad_flags = PushArgs {
        path: Some("app".into()),
        docker_image: Some("nginx".into()),
        ..args()
    };
    let (o, _) = run_push(&server.uri(), bad_flags, dir.path()).await;
    assert!(nothing_changed(&o).contains("--docker-image"), "{o:?}");

    let missing_path = PushArgs {
        path: Some("no-such-dir".into()),
        ..args()
    };
    let (o, _) = run_push(&server.uri(), missing_path, dir.path()).await;
    assert!(nothing_changed(&o).contains("no-such-dir"), "{o:?}");

    // A dangling symlink in the app directory is found by the scan, before any request.
    #[cfg(unix)]
    {
        let app = dir.path().join("app");
        std::fs::create_dir(&app).unwrap();
        std::fs::write(app.join("index.js"), "x").unwrap();
        std::os::unix::fs::symlink(app.join("nowhere"), app.join("link")).unwrap();
        let dangling = PushArgs {
            path: Some("app".into()),
            ..args()
        };
        let (o, _) = run_push(&server.uri(), dangling, dir.path()).await;
        let e = nothing_changed(&o);
        assert!(e.contains("app 'web'") && e.contains("link"), "{e}");
    }

    let no_manifest = tempfile::tempdir().unwrap();
    let (o, _) = run_push(&server.uri(), args(), no_manifest.path()).await;
    assert!(nothing_changed(&o).contains("no app name given"), "{o:?}");

    let docker_user = PushArgs {
        app_name: Some("web".into()),
        docker_image: Some("registry/image".into()),
        docker_username: Some("bob".into()),
        ..args()
    };
    let mut opts = PushOptions::new(
        target(&server.uri()),
        token(),
        docker_user,
        no_manifest.path().to_path_buf(),
    );
    opts.docker_password = None;
    let mut events: Vec<Event> = Vec::new();
    let o = push(opts, &mut events, &CancellationToken::new()).await;
    assert!(nothing_changed(&o).contains("CF_DOCKER_PASSWORD"), "{o:?}");

    let mut no_space = target(&server.uri());
    no_space.space = None;
    let opts = PushOptions::new(
        no_space,
        token(),
        PushArgs {
            app_name: Some("web".into()),
            ..args()
        },
        dir.path().to_path_buf(),
    );
    let o = push(opts, &mut Vec::new(), &CancellationToken::new()).await;
    assert!(nothing_changed(&o).contains("no space targeted"), "{o:?}");
    // `untouchable` verifies on drop that it saw no request.
}

#[tokio::test]
async fn an_unreachable_api_stops_with_nothing_changed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(ResponseTemplate::new(503).set_body_string("down for maintenance"))
        // GETs are retried by the client's policy; nothing but the discovery is asked.
        .expect(1..)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.js"), "x").unwrap();
    let a = {
        let base = args();
        PushArgs {
            app_name: Some("web".into()),

            common: CommonFlags {
                // The outage is waited out this long (at most 15 s before the first answer).
                api_outage_budget: Some(Duration::from_millis(300)),
                ..base.common
            },
            ..base
        }
    };
    let (o, events) = run_push(&server.uri(), a, dir.path()).await;
    let e = nothing_changed(&o);
    assert!(e.contains("cannot reach the cloud controller at"), "{e}");
    assert!(e.contains("503"), "{e}");
    assert!(!e.contains("secret-token"), "{e}");
    assert!(requests(&server).await.iter().all(|r| r.url.path() == "/"));
    match events.first() {
        Some(Event::Started {
            org,
            space,
            user,
            apps,
            ..
        }) => {
            assert_eq!((org.as_str(), space.as_str()), ("my-org", "dev"));
            assert_eq!(user.as_deref(), Some("alice"));
            assert_eq!(apps, &["web".to_string()]);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_cancelled_push_changes_nothing() {
    let server = untouchable().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.js"), "x").unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let opts = PushOptions::new(
        target(&server.uri()),
        token(),
        PushArgs {
            app_name: Some("web".into()),
            ..args()
        },
        dir.path().to_path_buf(),
    );
    let o = push(opts, &mut Vec::new(), &cancel).await;
    assert!(nothing_changed(&o).contains("interrupted"), "{o:?}");
}

// ---------------------------------------------------------------- push: a dry run from reads

/// A first deploy planned against wiremock: the preflight, the adapter's reads and the plan
/// work together, and a dry run sends nothing but GETs.
#[tokio::test]
async fn a_dry_run_plans_a_first_deploy_with_reads_only() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(ok_json(fixture("root/get.json", &server)))
        .mount(&server)
        .await;
    let empty = fixture("apps/list_empty.json", &server);
    for p in ["/v3/apps", "/v3/routes"] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ok_json(empty.clone()))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v3/organizations/org-1/domains/default"))
        .respond_with(ok_json(fixture("domains/default.json", &server)))
        .mount(&server)
        .await;
    let mut domains = fixture("apps/list_empty.json", &server);
    domains["resources"] = json!([fixture("domains/default.json", &server)]);
    domains["pagination"]["total_results"] = json!(1);
    Mock::given(method("GET"))
        .and(path("/v3/domains"))
        .respond_with(ok_json(domains))
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.js"), "x").unwrap();
    std::fs::write(
        dir.path().join("manifest.yml"),
        "applications:\n- name: web\n  instances: 2\n  routes:\n  - route: web.example.com\n  unknown-key: 1\n",
    )
    .unwrap();
    let a = {
        let mut args = args();
        args.common.dry_run = true;
        args
    };
    let (o, events) = run_push(&server.uri(), a, dir.path()).await;
    assert_eq!(o, Outcome::DryRun, "{events:#?}");
    let reqs = requests(&server).await;
    assert!(
        reqs.iter().all(|r| r.method.as_str() == "GET"),
        "{:?}",
        reqs.iter()
            .map(|r| format!("{} {}", r.method, r.url))
            .collect::<Vec<_>>()
    );
    let plan = events
        .iter()
        .find_map(|e| match e {
            Event::Plan { apps, steps, .. } => Some((apps.clone(), steps.clone())),
            _ => None,
        })
        .expect("a plan");
    assert!(plan.0.iter().any(|l| l.contains("web")), "{plan:?}");
    assert!(!plan.1.is_empty(), "{plan:?}");
    // Manifest warnings come right after Started.
    assert!(matches!(events.first(), Some(Event::Started { .. })));
    assert!(
        matches!(&events[1], Event::Warning { message, .. } if message.contains("unknown-key")),
        "{events:#?}"
    );
}

// ---------------------------------------------------------------- push: cf push flags

/// A Cloud Controller with no apps and no routes that creates routes and answers every
/// `apply_manifest` with a 422: a first deploy gets as far as sending its manifest and stops.
async fn first_deploy_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(ok_json(fixture("root/get.json", &server)))
        .mount(&server)
        .await;
    let empty = fixture("apps/list_empty.json", &server);
    for p in ["/v3/apps", "/v3/routes"] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ok_json(empty.clone()))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v3/organizations/org-1/domains/default"))
        .respond_with(ok_json(fixture("domains/default.json", &server)))
        .mount(&server)
        .await;
    let mut domains = fixture("apps/list_empty.json", &server);
    domains["resources"] = json!([fixture("domains/default.json", &server)]);
    domains["pagination"]["total_results"] = json!(1);
    Mock::given(method("GET"))
        .and(path("/v3/domains"))
        .respond_with(ok_json(domains))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/routes"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("routes/created.json", &server)),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/apps"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("apps/get.json", &server)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/spaces/space-1/actions/apply_manifest"))
        .respond_with(
            ResponseTemplate::new(422)
                .set_body_json(fixture("errors/unprocessable_two.json", &server)),
        )
        .mount(&server)
        .await;
    server
}

/// The manifest YAML Cloud Controller receives when `args` push `manifest` (none: no file)
/// from a folder with an `index.js`.
async fn applied_manifest(manifest: Option<&str>, args: PushArgs) -> String {
    let server = first_deploy_server().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.js"), "x").unwrap();
    if let Some(text) = manifest {
        std::fs::write(dir.path().join("manifest.yml"), text).unwrap();
    }
    let (o, events) = run_push(&server.uri(), args, dir.path()).await;
    let reqs = requests(&server).await;
    let applied: Vec<&Request> = reqs
        .iter()
        .filter(|r| r.url.path().ends_with("/actions/apply_manifest"))
        .collect();
    assert_eq!(
        applied.len(),
        1,
        "{o:?} {events:#?} {:?}",
        reqs.iter()
            .map(|r| format!("{} {}", r.method, r.url))
            .collect::<Vec<_>>()
    );
    let before: Vec<String> = reqs
        .iter()
        .take_while(|r| !r.url.path().ends_with("/actions/apply_manifest"))
        .filter(|r| {
            // Routes are created first on a first deploy, and the app itself (exclusively,
            // `POST /v3/apps`), before its manifest is applied.
            r.method.as_str() != "GET" && r.url.path() != "/v3/routes" && r.url.path() != "/v3/apps"
        })
        .map(|r| format!("{} {}", r.method, r.url))
        .collect();
    assert!(before.is_empty(), "writes before the manifest: {before:?}");
    String::from_utf8(applied[0].body.clone()).unwrap()
}

const ONE_APP: &str = "applications:\n- name: web\n  memory: 256M\n  instances: 1\n";

/// `applied_manifest` for a push of the one-app manifest with the flags of `args`.
async fn one_app_with(args: PushArgs) -> String {
    applied_manifest(Some(ONE_APP), args).await
}

/// Whether the push against `first_deploy_server` asked for a route to be created.
async fn creates_a_route(manifest: &str, args: PushArgs) -> bool {
    let server = first_deploy_server().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.js"), "x").unwrap();
    std::fs::write(dir.path().join("manifest.yml"), manifest).unwrap();
    let _ = run_push(&server.uri(), args, dir.path()).await;
    requests(&server)
        .await
        .iter()
        .any(|r| r.method.as_str() == "POST" && r.url.path() == "/v3/routes")
}

#[tokio::test]
async fn flag_buildpack_replaces_the_buildpacks_in_order() {
    let y = one_app_with(PushArgs {
        buildpacks: vec!["java_buildpack".into(), "go_buildpack".into()],
        ..args()
    })
    .await;
    assert!(
        y.contains("  buildpacks:\n  - java_buildpack\n  - go_buildpack\n"),
        "{y}"
    );
    // The deprecated `buildpack` key of the manifest goes: the flags replace it.
    let y = applied_manifest(
        Some("applications:\n- name: web\n  buildpack: ruby_buildpack\n"),
        PushArgs {
            buildpacks: vec!["java_buildpack".into()],
            ..args()
        },
    )
    .await;
    assert!(!y.contains("ruby_buildpack"), "{y}");
    assert!(y.contains("- java_buildpack"), "{y}");
}

#[tokio::test]
async fn flag_buildpack_null_or_default_means_auto_detection() {
    for auto in ["null", "default"] {
        let y = applied_manifest(
            Some("applications:\n- name: web\n  buildpacks: [java_buildpack]\n"),
            PushArgs {
                buildpacks: vec![auto.into()],
                ..args()
            },
        )
        .await;
        assert!(y.contains("  buildpacks: []\n"), "-b {auto}: {y}");
        assert!(!y.contains("java_buildpack"), "-b {auto}: {y}");
    }
}

#[tokio::test]
async fn flag_start_command_sets_or_resets_the_command() {
    let y = one_app_with(PushArgs {
        start_command: Some("node server.js".into()),
        ..args()
    })
    .await;
    assert!(y.contains("  command: node server.js\n"), "{y}");
    let y = applied_manifest(
        Some("applications:\n- name: web\n  command: old.sh\n"),
        PushArgs {
            start_command: Some("null".into()),
            ..args()
        },
    )
    .await;
    assert!(y.contains("  command: null\n"), "{y}");
    assert!(!y.contains("old.sh"), "{y}");
}

#[tokio::test]
async fn flag_instances_overrides_the_manifest() {
    let y = one_app_with(PushArgs {
        instances: Some(4),
        ..args()
    })
    .await;
    assert!(y.contains("  instances: 4\n"), "{y}");
    assert!(!y.contains("instances: 1\n"), "{y}");
}

#[tokio::test]
async fn flag_memory_overrides_the_manifest() {
    let y = one_app_with(PushArgs {
        memory: Some("1G".into()),
        ..args()
    })
    .await;
    assert!(
        y.contains("  memory: \"1G\"\n") || y.contains("  memory: 1G\n"),
        "{y}"
    );
    assert!(!y.contains("256M"), "{y}");
}

#[tokio::test]
async fn flag_disk_sets_the_disk_quota() {
    let y = one_app_with(PushArgs {
        disk: Some("2G".into()),
        ..args()
    })
    .await;
    assert!(
        y.contains("  disk_quota: \"2G\"\n") || y.contains("  disk_quota: 2G\n"),
        "{y}"
    );
}

#[tokio::test]
async fn flag_log_rate_limit_sets_the_limit() {
    let y = one_app_with(PushArgs {
        log_rate_limit: Some("-1".into()),
        ..args()
    })
    .await;
    assert!(y.contains("  log-rate-limit-per-second: \"-1\"\n"), "{y}");
}

#[tokio::test]
async fn flag_health_check_type_and_endpoint() {
    use cf_zero_downtime::command::push::HealthCheckType;
    let y = one_app_with(PushArgs {
        health_check_type: Some(HealthCheckType::Http),
        endpoint: Some("/health".into()),
        ..args()
    })
    .await;
    assert!(y.contains("  health-check-type: http\n"), "{y}");
    assert!(y.contains("  health-check-http-endpoint: /health\n"), "{y}");
    // A non-http type drops the manifest's endpoint, as cf push does.
    let y = applied_manifest(
        Some("applications:\n- name: web\n  health-check-type: http\n  health-check-http-endpoint: /ready\n"),
        PushArgs {
            health_check_type: Some(HealthCheckType::Process),
            ..args()
        },
    )
    .await;
    assert!(y.contains("  health-check-type: process\n"), "{y}");
    assert!(!y.contains("/ready"), "{y}");
    // --endpoint alone keeps the manifest's http type.
    let y = applied_manifest(
        Some("applications:\n- name: web\n  health-check-type: http\n  health-check-http-endpoint: /ready\n"),
        PushArgs {
            endpoint: Some("/live".into()),
            ..args()
        },
    )
    .await;
    assert!(y.contains("  health-check-http-endpoint: /live\n"), "{y}");
}

#[tokio::test]
async fn flag_app_start_timeout_sets_timeout() {
    let y = applied_manifest(
        Some("applications:\n- name: web\n  timeout: 60\n"),
        PushArgs {
            app_start_timeout: Some(180),
            ..args()
        },
    )
    .await;
    assert!(y.contains("  timeout: 180\n"), "{y}");
    assert!(!y.contains("timeout: 60"), "{y}");
}

#[tokio::test]
async fn flag_no_route_renders_no_route_and_creates_none() {
    let manifest = "applications:\n- name: web\n  routes:\n  - route: web.example.com\n";
    let a = PushArgs {
        no_route: true,
        ..args()
    };
    let y = applied_manifest(Some(manifest), a.clone()).await;
    assert!(y.contains("  no-route: true\n"), "{y}");
    assert!(
        !y.contains("routes:") && !y.contains("default-route"),
        "{y}"
    );
    assert!(!creates_a_route(manifest, a).await);
    assert!(creates_a_route(manifest, args()).await);
}

#[tokio::test]
async fn flag_random_route_renders_random_route() {
    let a = PushArgs {
        random_route: true,
        ..args()
    };
    let y = applied_manifest(Some("applications:\n- name: web\n"), a.clone()).await;
    assert!(y.contains("  random-route: true\n"), "{y}");
    assert!(!y.contains("default-route"), "{y}");
    // Cloud Controller picks the random host: no route of ours is created.
    assert!(!creates_a_route("applications:\n- name: web\n", a).await);
    // The manifest's no-route still wins, as with cf push.
    let y = applied_manifest(
        Some("applications:\n- name: web\n  no-route: true\n"),
        PushArgs {
            random_route: true,
            ..args()
        },
    )
    .await;
    assert!(
        y.contains("no-route: true") && !y.contains("random-route"),
        "{y}"
    );
}

#[tokio::test]
async fn flag_no_manifest_ignores_the_manifest_file() {
    let y = applied_manifest(
        Some("applications:\n- name: web\n  memory: 256M\n  env: {A: b}\n"),
        PushArgs {
            app_name: Some("api".into()),
            no_manifest: true,
            memory: Some("512M".into()),
            ..args()
        },
    )
    .await;
    assert!(y.contains("- name: api\n"), "{y}");
    assert!(!y.contains("256M") && !y.contains("env"), "{y}");
    assert!(y.contains("512M"), "{y}");
}

#[tokio::test]
async fn flag_lifecycle_sets_the_lifecycle() {
    use cf_zero_downtime::command::push::Lifecycle;
    let y = one_app_with(PushArgs {
        lifecycle: Some(Lifecycle::Cnb),
        ..args()
    })
    .await;
    assert!(y.contains("  lifecycle: cnb\n"), "{y}");
}

/// The app is created (`POST /v3/apps`) with the lifecycle its manifest applies later (Cloud
/// Controller cannot change it), and with this run's lock annotations.
#[tokio::test]
async fn the_app_is_created_first_with_the_manifests_lifecycle_and_the_lock() {
    use cf_zero_downtime::command::push::Lifecycle;
    use cf_zero_downtime::deploy::lock::{
        HEARTBEAT_ANNOTATION, RUN_BY_ANNOTATION, RUN_ID_ANNOTATION,
    };
    let cases = [
        (ONE_APP, None, None, "buildpack"),
        (ONE_APP, Some(Lifecycle::Cnb), None, "cnb"),
        (ONE_APP, None, Some("nginx"), "docker"),
        (
            "applications:\n- name: web\n  docker:\n    image: nginx\n",
            None,
            None,
            "docker",
        ),
    ];
    for (manifest, lifecycle, image, want) in cases {
        let server = first_deploy_server().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.js"), "x").unwrap();
        std::fs::write(dir.path().join("manifest.yml"), manifest).unwrap();
        let a = PushArgs {
            lifecycle,
            docker_image: image.map(str::to_string),
            ..args()
        };
        let (o, events) = run_push(&server.uri(), a, dir.path()).await;
        let reqs = requests(&server).await;
        let created: Vec<serde_json::Value> = reqs
            .iter()
            .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v3/apps")
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        assert_eq!(created.len(), 1, "{want}: {o:?} {events:#?}");
        let body = &created[0];
        assert_eq!(body["name"], "web", "{body}");
        assert_eq!(body["lifecycle"]["type"], want, "{body}");
        let notes = &body["metadata"]["annotations"];
        assert_eq!(
            notes[RUN_ID_ANNOTATION].as_str().map(str::len),
            Some(16),
            "{body}"
        );
        assert!(
            notes[RUN_BY_ANNOTATION]
                .as_str()
                .is_some_and(|b| b.contains('@')),
            "{body}"
        );
        assert!(
            notes[HEARTBEAT_ANNOTATION]
                .as_str()
                .is_some_and(|h| h.ends_with('Z')),
            "{body}"
        );
    }
}

#[tokio::test]
async fn scale_and_health_flags_go_to_the_web_process_entry() {
    let y = applied_manifest(
        Some("applications:\n- name: web\n  processes:\n  - type: web\n    instances: 1\n    memory: 256M\n  - type: worker\n    instances: 2\n"),
        PushArgs {
            instances: Some(3),
            memory: Some("1G".into()),
            start_command: Some("./web".into()),
            app_start_timeout: Some(90),
            ..args()
        },
    )
    .await;
    let web = y.split("- type: worker").next().unwrap_or_default();
    let web = web.split("- type: web").nth(1).unwrap_or_default();
    assert!(web.contains("instances: 3"), "{y}");
    assert!(web.contains("1G") && !y.contains("256M"), "{y}");
    assert!(web.contains("command: \"./web\""), "{y}");
    assert!(web.contains("timeout: 90"), "{y}");
    assert!(y.contains("- type: worker\n    instances: 2\n"), "{y}");
}

#[tokio::test]
async fn flags_with_a_multi_app_manifest_need_the_app_name() {
    let server = untouchable().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manifest.yml"),
        "applications:\n- name: web\n- name: worker\n",
    )
    .unwrap();
    let (o, _) = run_push(
        &server.uri(),
        PushArgs {
            instances: Some(4),
            ..args()
        },
        dir.path(),
    )
    .await;
    assert!(
        nothing_changed(&o).contains("cannot be applied when pushing multiple apps"),
        "{o:?}"
    );
    // With the app name, the flags apply to that app only.
    let y = applied_manifest(
        Some("applications:\n- name: web\n- name: worker\n"),
        PushArgs {
            app_name: Some("worker".into()),
            instances: Some(4),
            ..args()
        },
    )
    .await;
    assert!(y.contains("- name: worker\n  instances: 4\n"), "{y}");
    assert!(!y.contains("name: web"), "{y}");
}

/// A push with `args` from a folder with a one-app manifest stops before any request with an
/// error containing `want`.
async fn refused_before_any_request(args: PushArgs, want: &str) {
    let server = untouchable().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.js"), "x").unwrap();
    std::fs::write(dir.path().join("manifest.yml"), ONE_APP).unwrap();
    let (o, _) = run_push(&server.uri(), args, dir.path()).await;
    let e = nothing_changed(&o);
    assert!(e.contains(want), "want '{want}' in: {e}");
    assert!(requests(&server).await.is_empty());
}

macro_rules! refused {
    ($name:ident, $want:expr, { $($field:ident : $value:expr),* $(,)? }) => {
        #[tokio::test]
        async fn $name() {
            refused_before_any_request(PushArgs { $($field: $value,)* ..args() }, $want).await;
        }
    };
}

// Flags without a sound meaning for a zero-downtime push.
refused!(refuses_no_start, "--no-start is not supported", { no_start: true });
refused!(refuses_task, "--task is not supported", { task: true });
refused!(refuses_no_wait, "--no-wait is not supported", { no_wait: true });
refused!(refuses_droplet, "--droplet is not supported", { droplet: Some("app.tgz".into()) });
refused!(refuses_zero_instances, "at least one instance", { instances: Some(0) });

// The cf CLI's combinations.
refused!(conflict_no_manifest_and_manifest, "--no-manifest, --manifest, -f", {
    no_manifest: true, manifest: Some("manifest.yml".into())
});
refused!(conflict_no_manifest_and_vars_file, "--no-manifest, --vars-file", {
    no_manifest: true, vars_files: vec!["vars.yml".into()]
});
refused!(conflict_no_manifest_and_var, "--no-manifest, --var", {
    no_manifest: true, vars: vec![("a".into(), "b".into())]
});
refused!(conflict_no_manifest_without_app_name, "--no-manifest needs the app name", {
    no_manifest: true
});
refused!(conflict_docker_image_and_buildpack, "--buildpack, -b, --docker-image, -o", {
    docker_image: Some("nginx".into()), buildpacks: vec!["go_buildpack".into()]
});
refused!(conflict_docker_image_and_path, "--docker-image, -o, --path, -p", {
    docker_image: Some("nginx".into()), path: Some(".".into())
});
refused!(conflict_docker_image_and_stack, "--stack, -s, --docker-image, -o", {
    docker_image: Some("nginx".into()), stack: Some("cflinuxfs4".into())
});
refused!(conflict_docker_username_without_image, "must be used together", {
    docker_username: Some("me".into())
});
refused!(conflict_keep_scale_and_instances, "--keep-scale, --instances, -i", {
    keep_scale: true, instances: Some(2)
});
refused!(conflict_no_route_and_random_route, "--no-route, --random-route", {
    no_route: true, random_route: true
});
refused!(conflict_http_health_check_without_endpoint, "'--endpoint' and '--health-check-type=http, -u=http'", {
    health_check_type: Some(cf_zero_downtime::command::push::HealthCheckType::Http)
});
refused!(conflict_buildpack_null_with_others, "cannot have null/default", {
    buildpacks: vec!["null".into(), "go_buildpack".into()]
});
refused!(conflict_lifecycle_docker_and_buildpack, "--lifecycle docker, --buildpack, -b", {
    lifecycle: Some(cf_zero_downtime::command::push::Lifecycle::Docker), buildpacks: vec!["go_buildpack".into()]
});
refused!(conflict_lifecycle_docker_and_stack, "--lifecycle docker, --stack, -s", {
    lifecycle: Some(cf_zero_downtime::command::push::Lifecycle::Docker), stack: Some("cflinuxfs4".into())
});
refused!(conflict_lifecycle_buildpack_and_docker_image, "--lifecycle buildpack, --docker-image, -o", {
    lifecycle: Some(cf_zero_downtime::command::push::Lifecycle::Buildpack), docker_image: Some("nginx".into())
});
refused!(conflict_lifecycle_cnb_and_docker_username, "--lifecycle cnb, --docker-username", {
    lifecycle: Some(cf_zero_downtime::command::push::Lifecycle::Cnb),
    docker_username: Some("me".into())
});
refused!(conflict_memory_without_unit, "--memory, -m '1024'", { memory: Some("1024".into()) });
refused!(conflict_disk_without_unit, "--disk, -k '2'", { disk: Some("2".into()) });
refused!(conflict_bad_log_rate_limit, "--log-rate-limit, -l 'lots'", { log_rate_limit: Some("lots".into()) });
refused!(conflict_endpoint_not_a_path, "--endpoint 'health'", { endpoint: Some("health".into()) });

#[tokio::test]
async fn conflicts_with_the_manifest_stop_before_any_request() {
    let server = untouchable().await;
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, PushArgs, &str); 3] = [
        (
            "applications:\n- name: web\n  docker: {image: nginx}\n",
            PushArgs {
                buildpacks: vec!["go_buildpack".into()],
                ..args()
            },
            "--buildpack, -b cannot be used with app 'web' because its manifest sets a docker image",
        ),
        (
            "applications:\n- name: web\n  health-check-type: port\n",
            PushArgs {
                endpoint: Some("/health".into()),
                ..args()
            },
            "--endpoint cannot be used with app 'web' because its manifest sets health-check-type 'port'",
        ),
        (
            "applications:\n- name: web\n  docker: {image: nginx}\n",
            PushArgs {
                lifecycle: Some(cf_zero_downtime::command::push::Lifecycle::Buildpack),
                ..args()
            },
            "--lifecycle buildpack cannot be used with app 'web' because its manifest sets a docker image",
        ),
    ];
    for (manifest, a, want) in cases {
        std::fs::write(dir.path().join("manifest.yml"), manifest).unwrap();
        let (o, _) = run_push(&server.uri(), a, dir.path()).await;
        assert!(nothing_changed(&o).contains(want), "{o:?}");
    }
    assert!(requests(&server).await.is_empty());
}

// ---------------------------------------------------------------- lost create answers

fn new_route() -> cf_zero_downtime::deploy::api::NewRoute {
    cf_zero_downtime::deploy::api::NewRoute {
        domain_guid: "domain-1".into(),
        host: "myapp".into(),
        path: String::new(),
        port: None,
    }
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_read_back_not_sent_again() {
    let server = MockServer::start().await;
    // The route was created, but the answer is a 500 (CC applied it, then failed).
    Mock::given(method("POST"))
        .and(path("/v3/routes"))
        .respond_with(ResponseTemplate::new(500).set_body_string("lost"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/routes"))
        .and(query_param("hosts", "myapp"))
        .respond_with(ok_json(fixture("routes/list_one.json", &server)))
        .expect(1)
        .mount(&server)
        .await;
    let r = backend(&server)
        .create_route(&SpaceGuid::new("space-1"), &new_route())
        .await
        .expect("the route that exists is the answer");
    assert_eq!(r.guid, RouteGuid::new("route-1"));
}

#[tokio::test]
async fn a_create_that_did_not_happen_is_sent_again_after_the_read() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/routes"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/routes"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("routes/created.json", &server)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut empty = fixture("routes/list_one.json", &server);
    empty["resources"] = json!([]);
    empty["pagination"]["total_results"] = json!(0);
    Mock::given(method("GET"))
        .and(path("/v3/routes"))
        .respond_with(ok_json(empty))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = ClientConfig::new(server.uri(), token());
    c.retry = RetryPolicy {
        outage_budget: Duration::from_secs(10),
        ..RetryPolicy::never()
    };
    let b = CfBackend::new(Client::new(c).unwrap(), "space-1", None);
    b.create_route(&SpaceGuid::new("space-1"), &new_route())
        .await
        .expect("created on the second POST");
    let posts = requests(&server)
        .await
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 2, "one read between the two creates");
}
