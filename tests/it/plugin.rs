//! The plugin binary as the cf CLI runs it: against Go's own net/rpc + gob (tests/go, a fake
//! cf CLI), against broken peers, and in standalone mode with a cf config file and a fake UAA.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cf_zero_downtime::cf::{AuthError, TokenProvider};
use cf_zero_downtime::plugin::gob::{Type, Value};
use cf_zero_downtime::plugin::rpc::{self, RpcClient};
use cf_zero_downtime::plugin::rpc_token::fetch_rpc_token;
use cf_zero_downtime::plugin::{CliConnection, Error, TokenSource, standalone};
use secrecy::ExposeSecret;
use serde_json::{Value as Json, json};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::cf_cli::{BIN, FORBIDDEN, fakecf, methods, stderr, under_fake_cf};

/// Runs the plugin binary with a watchdog: a hang fails the test instead of blocking it.
fn run_bin(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the plugin binary");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the plugin binary hung: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

// ---------------------------------------------------------------------------------------
// Go interop: tests/go is a fake cf CLI built from Go's net/rpc.
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn send_metadata_is_decoded_by_go_as_a_valid_plugin() {
    let Some(report) = under_fake_cf(&[], &["SendMetadata"]) else {
        return;
    };
    assert_eq!(report["exit_code"], 0, "{report}");
    assert_eq!(methods(&report), ["SetPluginMetadata"]);
    assert_eq!(report["stdout"], "");
    let m = &report["metadata"];
    assert_eq!(m["Name"], "zero-downtime");
    let version = format!(
        "{}.{}.{}",
        m["Version"]["Major"], m["Version"]["Minor"], m["Version"]["Build"]
    );
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert!(m["LibraryVersion"]["Major"].as_i64().expect("int") <= 1);
    assert_eq!(m["MinCliVersion"]["Major"], 7);
    let cmds = m["Commands"].as_array().expect("commands");
    assert_eq!(cmds.len(), 2);
    assert_eq!(cmds[0]["Name"], "zero-downtime-push");
    assert_eq!(cmds[0]["Alias"], "zdp");
    assert_eq!(cmds[1]["Name"], "zero-downtime-rollback");
    assert_eq!(cmds[1]["Alias"], "zdr");
    let rollback_usage = cmds[1]["UsageDetails"]["Usage"].as_str().expect("usage");
    assert!(
        rollback_usage.starts_with("cf zero-downtime-rollback APP_NAME"),
        "{rollback_usage}"
    );
    assert!(!cmds[0]["HelpText"].as_str().unwrap_or_default().is_empty());
    let usage = cmds[0]["UsageDetails"]["Usage"].as_str().expect("usage");
    assert!(
        usage.starts_with("cf zero-downtime-push [APP_NAME]"),
        "{usage}"
    );
    let options = cmds[0]["UsageDetails"]["Options"]
        .as_object()
        .expect("options");
    // Every flag of DESIGN.md section 2.
    for flag in [
        "manifest, -f",
        "path, -p",
        "var",
        "vars-file",
        "docker-image, -o",
        "docker-username",
        "stack, -s",
        "strategy",
        "smoke-test",
        "smoke-test-path",
        "old-app",
        "drain",
        "timeout",
        "max-in-flight",
        "instance-steps",
        "keep-scale",
        "temp-route-suffix",
        "dry-run",
        "output",
    ] {
        assert!(
            options.contains_key(flag),
            "option {flag} missing: {options:?}"
        );
        let long = flag.split(',').next().unwrap_or(flag);
        assert!(
            usage.contains(&format!("--{long}")) || flag.contains(", -"),
            "--{long} missing from usage"
        );
    }
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn push_gathers_the_whole_target_from_go_before_anything_else() {
    // An endpoint nothing listens on: the push must stop before contacting it anyway.
    let closed = closed_port();
    let Some(report) = under_fake_cf(
        &["-user=alice", &format!("-api=http://127.0.0.1:{closed}")],
        &[
            "zero-downtime-push",
            "myapp",
            "-f",
            "no-such-manifest.yml",
            "--strategy",
            "rolling",
        ],
    ) else {
        return;
    };
    let calls = methods(&report);
    for needed in [
        "IsMinCliVersion",
        "HasAPIEndpoint",
        "IsLoggedIn",
        "GetCurrentOrg",
        "GetCurrentSpace",
        "ApiEndpoint",
        "IsSSLDisabled",
        "Username",
        "AccessToken",
    ] {
        assert!(
            calls.iter().any(|c| c == needed),
            "{needed} not called: {calls:?}"
        );
    }
    for forbidden in FORBIDDEN {
        assert!(
            !calls.iter().any(|c| c == forbidden),
            "{forbidden} was called"
        );
    }
    let min = report["calls"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["method"] == "IsMinCliVersion"))
        .map(|c| c["arg"].clone());
    assert_eq!(min, Some(json!("7.0.0")));
    // The deploy engine got org, space and user, and stopped at the missing manifest with
    // nothing changed (the manifest is read before any API request).
    let out = report["stdout"].as_str().unwrap_or_default();
    let err = report["stderr"].as_str().unwrap_or_default();
    assert!(
        out.contains("Pushing app myapp to org my-org / space dev as alice..."),
        "{out}"
    );
    assert!(out.contains("cannot read manifest"), "{out}");
    assert!(out.contains("no-such-manifest.yml"), "{out}");
    assert!(out.trim_end().ends_with("nothing was changed"), "{out}");
    assert!(
        !out.contains("eyJ") && !err.contains("eyJ"),
        "token leaked: {out}{err}"
    );
    assert_eq!(report["exit_code"], 1);
}

/// A local port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a local port")
        .port()
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn uninstall_exits_zero() {
    let Some(report) = under_fake_cf(&[], &["CLI-MESSAGE-UNINSTALL"]) else {
        return;
    };
    assert_eq!(report["exit_code"], 0, "{report}");
    assert_eq!(report["stderr"], "");
}

fn expect_cf_failure(flags: &[&str], message: &str) -> Option<Vec<String>> {
    let report = under_fake_cf(flags, &["zero-downtime-push", "myapp"])?;
    assert_eq!(report["exit_code"], 1, "{report}");
    let err = report["stderr"].as_str().unwrap_or_default();
    assert!(err.contains(message), "expected '{message}' in: {err}");
    assert!(err.contains("FAILED"), "{err}");
    let calls = methods(&report);
    assert!(
        !calls.iter().any(|c| c == "AccessToken"),
        "went on after the failed check: {calls:?}"
    );
    Some(calls)
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn not_logged_in_gives_the_cf_message() {
    expect_cf_failure(
        &["-logged-in=false"],
        "Not logged in. Use 'cf login' or 'cf login --sso' to log in.",
    );
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn no_space_targeted_gives_the_cf_message() {
    expect_cf_failure(
        &["-space=", "-space-guid="],
        "No space targeted, use 'cf target -s SPACE' to target a space.",
    );
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn no_org_targeted_gives_the_cf_message() {
    expect_cf_failure(
        &["-org=", "-org-guid="],
        "No org targeted, use 'cf target -o ORG' to target an org.",
    );
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn no_api_endpoint_gives_the_cf_message() {
    expect_cf_failure(&["-api="], "No API endpoint set.");
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn a_cli_older_than_the_minimum_is_refused() {
    if let Some(calls) = expect_cf_failure(
        &["-min-ok=false"],
        "Minimum CLI version 7.0.0 is required to run this plugin command",
    ) {
        assert_eq!(calls, ["IsMinCliVersion"]);
    }
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn a_token_error_from_cf_is_reported() {
    let Some(report) = under_fake_cf(
        &["-token-error=refresh token expired"],
        &["zero-downtime-push", "myapp"],
    ) else {
        return;
    };
    assert_eq!(report["exit_code"], 1);
    let err = report["stderr"].as_str().unwrap_or_default();
    assert!(err.contains("refresh token expired"), "{err}");
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn bad_arguments_print_usage_and_touch_nothing() {
    let Some(report) = under_fake_cf(&[], &["zero-downtime-push", "--strategy", "sideways"]) else {
        return;
    };
    assert_eq!(report["exit_code"], 1);
    let err = report["stderr"].as_str().unwrap_or_default();
    assert!(err.contains("sideways"), "{err}");
    assert!(
        err.contains("USAGE:\n   cf zero-downtime-push [APP_NAME]"),
        "{err}"
    );
    assert_eq!(methods(&report), Vec::<String>::new());
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn send_metadata_round_trip_time() {
    let Some(report) = under_fake_cf(&["-runs=10"], &["SendMetadata"]) else {
        return;
    };
    assert_eq!(report["exit_code"], 0);
    // Reported, not asserted: tests do not check wall-clock time.
    eprintln!(
        "SendMetadata round trip (process start to exit, mean of {}): {} ms",
        report["runs"], report["elapsed_ms"]
    );
}

/// The fake cf CLI serving on its own; killed when dropped.
struct GoServer(std::process::Child, u16);

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn go_server(flags: &[&str]) -> Option<GoServer> {
    use std::io::BufRead as _;
    let mut child = Command::new(fakecf()?)
        .arg("-serve")
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start fakecf -serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("port line");
    let port = line.trim().parse().expect("port");
    Some(GoServer(child, port))
}

#[tokio::test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
async fn every_typed_call_works_against_go() {
    let Some(server) = go_server(&["-ssl-disabled", "-api-version=3.201.0"]) else {
        return;
    };
    let conn = CliConnection::new(server.1);
    assert!(conn.is_min_cli_version("7.0.0").await.expect("rpc"));
    assert_eq!(
        conn.api_endpoint().await.expect("rpc"),
        "https://api.example.com"
    );
    assert!(conn.has_api_endpoint().await.expect("rpc"));
    assert!(conn.is_logged_in().await.expect("rpc"));
    assert!(conn.is_ssl_disabled().await.expect("rpc"));
    assert_eq!(conn.username().await.expect("rpc"), "admin");
    assert_eq!(conn.api_version().await.expect("rpc"), "3.201.0");
    assert!(
        conn.access_token()
            .await
            .expect("rpc")
            .expose_secret()
            .starts_with("bearer ")
    );
    let org = conn.get_current_org().await.expect("rpc").expect("org");
    assert_eq!(
        (org.name.as_str(), org.guid.as_str()),
        ("my-org", "org-guid-1")
    );
    let space = conn.get_current_space().await.expect("rpc").expect("space");
    assert_eq!(
        (space.name.as_str(), space.guid.as_str()),
        ("dev", "space-guid-1")
    );
    // The generic call, with a []string argument and a method not typed here.
    let email = conn
        .call("UserEmail", &Type::String, &Value::string(""))
        .await
        .expect("rpc");
    assert_eq!(email.as_str(), Some("user@example.com"));
    let users = conn
        .call(
            "CliRpcCmd.GetOrgUsers",
            &Type::slice("", Type::String),
            &Value::List(vec![Value::string("my-org")]),
        )
        .await
        .expect("rpc");
    assert_eq!(users.as_list().map(<[Value]>::len), Some(0));
}

#[tokio::test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
async fn rich_go_replies_decode() {
    let Some(server) = go_server(&[]) else {
        return;
    };
    let conn = CliConnection::new(server.1);
    // GetApp: int64, float64, *struct, []struct, map[string]interface{}, time.Time.
    let app = conn
        .call("GetApp", &Type::String, &Value::string("web"))
        .await
        .expect("rpc");
    assert_eq!(app.str_field("Name"), Some("web"));
    assert_eq!(app.field("InstanceCount"), Some(&Value::Int(2)));
    let env = match app.field("EnvironmentVars") {
        Some(Value::Map(entries)) => entries.clone(),
        other => panic!("env: {other:?}"),
    };
    assert_eq!(env.len(), 3);
    assert!(env.contains(&(
        Value::string("RATIO"),
        Value::Interface {
            name: "float64".into(),
            value: Box::new(Value::Float(1.5))
        }
    )));
    let instances = app
        .field("Instances")
        .and_then(Value::as_list)
        .expect("list");
    assert_eq!(instances.len(), 2);
    assert!(matches!(instances[0].field("Since"), Some(Value::Encoded(b)) if b.len() == 15));
    assert_eq!(instances[1].field("Since"), None);
    // GetSpace: an embedded struct and []map[string]interface{}.
    let space = conn
        .call("GetSpace", &Type::String, &Value::string("dev"))
        .await
        .expect("rpc");
    assert_eq!(
        space
            .field("GetSpaces_Model")
            .and_then(|m| m.str_field("Name")),
        Some("dev")
    );
    let groups = space
        .field("SecurityGroups")
        .and_then(Value::as_list)
        .expect("groups");
    let rules = groups[0]
        .field("Rules")
        .and_then(Value::as_list)
        .expect("rules");
    assert!(matches!(&rules[0], Value::Map(m) if m.len() == 2));
    // An error reply from Go.
    let err = conn
        .call("GetApp", &Type::String, &Value::string("missing"))
        .await
        .expect_err("error reply");
    assert!(
        matches!(&err, rpc::Error::Remote { message, .. } if message == "App missing not found"),
        "{err}"
    );
    // An unknown method, as a real cf answers IsSkipSSLValidation.
    let err = conn
        .call("IsSkipSSLValidation", &Type::String, &Value::string(""))
        .await
        .expect_err("unknown method");
    assert!(err.to_string().contains("can't find method"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Broken peers.
// ---------------------------------------------------------------------------------------

/// A peer that reads the request, answers with `reply`, then closes.
fn peer(reply: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(5) {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(&reply);
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    });
    port
}

/// The first bytes of a valid reply (the Response type definition, cut short).
const RESPONSE_DEF: &str = "3aff8103010108526573706f6e736501ff82000103010d536572766963654d6574686f64010c00010353657101060001054572726f72010c000000";

#[test]
fn nothing_listening_is_a_clear_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = run_bin(&[&port.to_string(), "SendMetadata"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("could not connect"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn a_peer_closing_mid_reply_is_a_clear_error() {
    let full = hex::decode(RESPONSE_DEF).expect("hex");
    let port = peer(full[..30].to_vec());
    let out = run_bin(&[&port.to_string(), "zero-downtime-push", "app"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("closed the connection after 30 bytes"),
        "{err}"
    );
    assert!(err.contains("CliRpcCmd.IsMinCliVersion"), "{err}");
}

#[test]
fn a_peer_sending_garbage_is_a_clear_error() {
    let port = peer(b"\xfe\x00\x05HTTP/1.1 400 Bad Request\r\n\r\n".to_vec());
    let out = run_bin(&[&port.to_string(), "SendMetadata"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("malformed reply to CliRpcCmd.SetPluginMetadata"),
        "{err}"
    );
    assert!(err.contains("gob:"), "{err}");
}

#[test]
fn a_peer_answering_with_the_wrong_type_is_a_clear_error() {
    // A valid Response for the method followed by a string where a bool belongs.
    let mut reply = hex::decode(RESPONSE_DEF).expect("hex");
    reply.extend(
        hex::decode("20ff82011b436c69527063436d642e536574506c7567696e4d6574616461746100")
            .expect("hex"),
    );
    reply.extend(hex::decode("080c0005362e372e30").expect("hex"));
    let port = peer(reply);
    let out = run_bin(&[&port.to_string(), "SendMetadata"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("expected a bool"), "{}", stderr(&out));
}

#[test]
fn bad_ports_are_rejected() {
    for bad in ["0", "70000", "123456789012345678901234567890"] {
        let out = run_bin(&[bad, "SendMetadata"], &[]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(
            stderr(&out).contains("invalid RPC port"),
            "{}",
            stderr(&out)
        );
    }
    let out = run_bin(&["4000"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing the command"));
}

#[tokio::test]
async fn a_silent_peer_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let holder = tokio::spawn(async move {
        // Accept and hold the connection open without answering.
        let conn = listener.accept().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(conn);
    });
    let client = RpcClient::new(port).with_timeout(Duration::from_millis(200));
    let err = client
        .call("CliRpcCmd.Username", &Type::String, &Value::string(""))
        .await
        .expect_err("times out");
    assert!(matches!(err, rpc::Error::Timeout { .. }), "{err}");
    holder.abort();
}

// ---------------------------------------------------------------------------------------
// Standalone mode: the cf CLI's config.json and the UAA refresh grant.
// ---------------------------------------------------------------------------------------

fn jwt(claims: &Json) -> String {
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2ln",
        enc(r#"{"alg":"RS256"}"#),
        enc(&claims.to_string())
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Writes `$CF_HOME/.cf/config.json` as cf v8 does; returns the temp CF_HOME and the file.
fn cf_home(config: &Json) -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join(".cf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("config.json");
    std::fs::write(&file, serde_json::to_vec_pretty(config).expect("json")).expect("write");
    (home, file)
}

fn config(auth: &str, access: &str, refresh: &str) -> Json {
    json!({
        "ConfigVersion": 4,
        "Target": "http://api.example.com/",
        "APIVersion": "3.228.0",
        "AuthorizationEndpoint": auth,
        "UaaEndpoint": auth,
        "AccessToken": access,
        "RefreshToken": refresh,
        "SSLDisabled": true,
        "UAAGrantType": "",
        "UAAOAuthClient": "cf",
        "UAAOAuthClientSecret": "",
        "OrganizationFields": {"GUID": "org-guid", "Name": "my-org"},
        "SpaceFields": {"GUID": "space-guid", "Name": "dev", "AllowSSH": true},
        "PluginRepos": [{"Name": "CF-Community", "URL": "https://plugins.cloudfoundry.org"}]
    })
}

#[tokio::test]
async fn a_valid_config_gives_the_target_and_its_token_without_refreshing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let access = format!(
        "bearer {}",
        jwt(&json!({"exp": now() + 3600, "user_name": "alice"}))
    );
    let (_home, file) = cf_home(&config(&server.uri(), &access, "refresh-1"));
    let login = standalone::load(&file).expect("loads");
    assert_eq!(login.target.api_endpoint, "http://api.example.com");
    assert!(login.target.skip_ssl_validation);
    assert_eq!(
        login.target.org.as_ref().map(|o| o.guid.as_str()),
        Some("org-guid")
    );
    assert_eq!(
        login.target.space.as_ref().map(|s| s.name.as_str()),
        Some("dev")
    );
    assert_eq!(login.target.user.as_deref(), Some("alice"));
    let token = login.token.token().await.expect("token");
    assert_eq!(token.expose_secret(), access);
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_through_uaa_and_saved_back() {
    let server = MockServer::start().await;
    let new_access = jwt(&json!({"exp": now() + 3600, "user_name": "alice"}));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(header("authorization", "Basic Y2Y6"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=refresh-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": new_access,
            "token_type": "bearer",
            "refresh_token": "refresh-2",
            "expires_in": 3599
        })))
        .expect(1)
        .mount(&server)
        .await;
    let old = format!(
        "bearer {}",
        jwt(&json!({"exp": now() + 10, "user_name": "alice"}))
    );
    let (_home, file) = cf_home(&config(&server.uri(), &old, "refresh-1"));
    let login = standalone::load(&file).expect("loads");
    let token = login.token.token().await.expect("refreshed");
    assert_eq!(token.expose_secret(), format!("bearer {new_access}"));
    // A second call uses the fresh token (the mock allows only one refresh).
    let again = login.token.token().await.expect("cached");
    assert_eq!(again.expose_secret(), token.expose_secret());

    let saved: Json = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    assert_eq!(saved["AccessToken"], format!("bearer {new_access}"));
    assert_eq!(saved["RefreshToken"], "refresh-2");
    assert_eq!(saved["PluginRepos"][0]["Name"], "CF-Community");
    assert_eq!(saved["SpaceFields"]["AllowSSH"], true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_rejected_refresh_token_means_not_logged_in() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_token",
            "error_description": "Invalid refresh token (expired)"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (_home, file) = cf_home(&config(&server.uri(), "bearer garbage", "refresh-1"));
    let login = standalone::load(&file).expect("loads");
    let err = login.token.token().await.expect_err("not logged in");
    assert!(matches!(err, AuthError::NotLoggedIn), "{err}");
}

#[tokio::test]
async fn client_credentials_logins_refresh_with_the_client_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("client_id=deployer"))
        .and(body_string_contains("client_secret=s3cret"))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "new-client-token",
            "token_type": "bearer",
            "expires_in": 3599
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri(), "bearer expired.not.jwt", "");
    cfg["UAAGrantType"] = json!("client_credentials");
    cfg["UAAOAuthClient"] = json!("deployer");
    cfg["UAAOAuthClientSecret"] = json!("s3cret");
    let (_home, file) = cf_home(&cfg);
    let login = standalone::load(&file).expect("loads");
    let token = login.token.refresh().await.expect("refreshed");
    assert_eq!(token.expose_secret(), "bearer new-client-token");
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(requests[0].headers.get("authorization").is_none());
}

/// `cf login` to foundation B in a second terminal during a long push to A: B's tokens are
/// neither sent to A nor read, B's config is not written, and the run says so once.
#[tokio::test]
async fn a_config_switched_to_another_foundation_mid_run_is_left_alone() {
    let uaa_a = MockServer::start().await;
    let fresh_a = jwt(&json!({"exp": now() + 3600, "user_name": "alice"}));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("refresh_token=refresh-A"))
        .respond_with(token_answer(&fresh_a, "second-A"))
        .expect(1)
        .mount(&uaa_a)
        .await;
    let fresh_a2 = jwt(&json!({"exp": now() + 3601, "user_name": "alice"}));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("refresh_token=second-A"))
        .respond_with(token_answer(&fresh_a2, "third-A"))
        .expect(1)
        .mount(&uaa_a)
        .await;
    let uaa_b = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&uaa_b)
        .await;
    let expiring = format!(
        "bearer {}",
        jwt(&json!({"exp": now() + 10, "user_name": "alice"}))
    );
    let mut cfg_a = config(&uaa_a.uri(), &expiring, "refresh-A");
    cfg_a["Target"] = json!("http://api.a.example.com");
    let (_home, file) = cf_home(&cfg_a);
    let login = standalone::load(&file).expect("loads");

    // Foundation B, logged in meanwhile, with a token that is valid for a long time.
    let token_b = format!(
        "bearer {}",
        jwt(&json!({"exp": now() + 3600, "user_name": "bob"}))
    );
    let mut cfg_b = config(&uaa_b.uri(), &token_b, "refresh-B");
    cfg_b["Target"] = json!("http://api.b.example.com");
    let b_bytes = serde_json::to_vec_pretty(&cfg_b).expect("json");
    std::fs::write(&file, &b_bytes).expect("switch foundation");

    let token = login
        .token
        .token()
        .await
        .expect("refreshed at A's login server");
    assert_eq!(token.expose_secret(), format!("bearer {fresh_a}"));
    // The file is B's, untouched.
    assert_eq!(std::fs::read(&file).expect("read"), b_bytes);
    let warnings = login.token.take_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("now targets http://api.b.example.com"),
        "{warnings:?}"
    );
    assert!(!warnings[0].contains("eyJ") && !warnings[0].contains("refresh-"));

    // A rejected token is refreshed at A again with the refresh token the run holds (never
    // B's), and the warning is not repeated.
    let again = login.token.refresh().await.expect("refreshed at A again");
    assert_eq!(again.expose_secret(), format!("bearer {fresh_a2}"));
    assert!(login.token.take_warnings().is_empty(), "warned once only");
    assert_eq!(std::fs::read(&file).expect("read"), b_bytes);
    assert!(
        uaa_b
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

/// A login server that answers 307 to another host gets no second request: the refresh token
/// does not follow redirects.
#[tokio::test]
async fn the_refresh_token_does_not_follow_a_redirect() {
    let elsewhere = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(token_answer("stolen", "stolen"))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let uaa = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/oauth/token", elsewhere.uri())),
        )
        .expect(1)
        .mount(&uaa)
        .await;
    let expired = format!("bearer {}", jwt(&json!({"exp": now() - 10})));
    let (_home, file) = cf_home(&config(&uaa.uri(), &expired, "refresh-1"));
    let login = standalone::load(&file).expect("loads");
    let err = login
        .token
        .token()
        .await
        .expect_err("a redirect is no token");
    assert!(err.to_string().contains("307"), "{err}");
    assert!(
        elsewhere
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

/// A login server whose answer never ends is not read without bound.
#[tokio::test]
async fn a_huge_token_answer_is_refused() {
    let uaa = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(vec![b' '; 4 << 20], "application/json"),
        )
        .expect(1)
        .mount(&uaa)
        .await;
    let expired = format!("bearer {}", jwt(&json!({"exp": now() - 10})));
    let (_home, file) = cf_home(&config(&uaa.uri(), &expired, "refresh-1"));
    let login = standalone::load(&file).expect("loads");
    let err = login.token.token().await.expect_err("too large");
    assert!(
        err.to_string().contains("answer larger than 1024 KiB"),
        "{err}"
    );
}

/// An https API whose config names a plain-http login server: the refresh token is not sent.
#[tokio::test]
async fn the_refresh_token_is_not_sent_over_http_for_an_https_api() {
    let uaa = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&uaa)
        .await;
    let expired = format!("bearer {}", jwt(&json!({"exp": now() - 10})));
    let mut cfg = config(&uaa.uri(), &expired, "refresh-1");
    cfg["Target"] = json!("https://api.example.com");
    let (_home, file) = cf_home(&cfg);
    let login = standalone::load(&file).expect("loads");
    let err = login.token.token().await.expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("is not an https URL"), "{text}");
    assert!(!text.contains("refresh-1"), "{text}");
}

#[test]
fn missing_login_org_or_space_give_the_cf_messages() {
    let (_h, file) = cf_home(&config("https://login.example.com", "", ""));
    assert!(matches!(standalone::load(&file), Err(Error::NotLoggedIn)));

    let mut no_space = config("https://login.example.com", "bearer x", "r");
    no_space["SpaceFields"] = json!({"GUID": "", "Name": ""});
    let (_h2, file) = cf_home(&no_space);
    assert!(matches!(
        standalone::load(&file),
        Err(Error::NoSpaceTargeted)
    ));

    let mut no_org = config("https://login.example.com", "bearer x", "r");
    no_org["OrganizationFields"] = json!({"GUID": "", "Name": ""});
    let (_h3, file) = cf_home(&no_org);
    assert!(matches!(standalone::load(&file), Err(Error::NoOrgTargeted)));

    let mut old = config("https://login.example.com", "bearer x", "r");
    old["ConfigVersion"] = json!(2);
    let (_h4, file) = cf_home(&old);
    assert!(matches!(
        standalone::load(&file),
        Err(Error::ConfigVersion { found: 2, .. })
    ));

    let (_h5, file) = cf_home(&json!("not an object"));
    assert!(matches!(
        standalone::load(&file),
        Err(Error::ConfigParse { .. })
    ));

    let empty = tempfile::tempdir().expect("tempdir");
    let missing = empty.path().join(".cf/config.json");
    assert!(matches!(
        standalone::load(&missing),
        Err(Error::NoApiEndpoint)
    ));
}

#[test]
fn standalone_push_reports_not_logged_in_like_cf() {
    let (home, _file) = cf_home(&config("https://login.example.com", "", ""));
    let out = run_bin(&["push", "myapp"], &[("CF_HOME", home.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Not logged in. Use 'cf login' or 'cf login --sso' to log in."),
        "{}",
        stderr(&out)
    );
}

#[test]
fn standalone_push_reaches_the_deploy_hand_over() {
    let access = format!(
        "bearer {}",
        jwt(&json!({"exp": now() + 3600, "user_name": "alice"}))
    );
    // The config targets an endpoint nothing listens on.
    let api = format!("http://127.0.0.1:{}", closed_port());
    let mut cfg = config("https://login.example.com", &access, "r");
    cfg["Target"] = json!(api);
    let (home, _file) = cf_home(&cfg);
    let app = tempfile::tempdir().expect("tempdir");
    std::fs::write(app.path().join("index.js"), "ok").expect("write app");
    let app_path = app.path().to_str().expect("utf-8 temp path");
    let out = run_bin(
        // No waiting for the closed port to open (an outage budget of 0).
        &[
            "push",
            "myapp",
            "-p",
            app_path,
            "--dry-run",
            "--api-outage-budget",
            "0s",
        ],
        &[("CF_HOME", home.path())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = stderr(&out);
    assert!(
        stdout.contains("Pushing app myapp to org my-org / space dev as alice..."),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("cannot reach the cloud controller at {api}")),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("nothing was changed"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("eyJ") && !err.contains("eyJ"),
        "token leaked"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// A hostile manifest is refused before any request: exit 1, a located message, nothing sent
/// to the API. 50 chained anchors (~19 KB, ~9,500 levels once expanded) used to overflow the
/// stack (exit 134); a bad value from a `((var))` used to be shown in the message and in the
/// JSON output.
#[test]
fn hostile_manifests_are_refused_before_any_request() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    let access = format!(
        "bearer {}",
        jwt(&json!({"exp": now() + 3600, "user_name": "alice"}))
    );
    let mut cfg = config(&api, &access, "r");
    cfg["Target"] = json!(api);
    let (home, _file) = cf_home(&cfg);
    let app = tempfile::tempdir().expect("tempdir");
    std::fs::write(app.path().join("index.js"), "ok").expect("write app");

    let mut deep = String::from("x0: &a0 x\n");
    for i in 1..=50 {
        deep.push_str(&format!(
            "x{i}: &a{i} {}*a{} {}\n",
            "[".repeat(190),
            i - 1,
            "]".repeat(190)
        ));
    }
    deep.push_str("applications:\n- name: web\n");
    let manifest = app.path().join("manifest.yml");
    std::fs::write(&manifest, &deep).expect("write manifest");
    let manifest = manifest.to_str().expect("utf-8 temp path");
    let out = run_bin(
        &["push", "web", "-f", manifest],
        &[("CF_HOME", home.path())],
    );
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("{manifest}:3:")), "{text}");
    assert!(text.contains("nested too deeply"), "{text}");

    std::fs::write(
        app.path().join("manifest.yml"),
        "applications:\n- name: web\n  memory: ((db_password))\n",
    )
    .expect("write manifest");
    for output in ["text", "json"] {
        let out = run_bin(
            &[
                "push",
                "web",
                "-f",
                manifest,
                "--var",
                "db_password=hunter2-PLANTED",
                "--output",
                output,
            ],
            &[("CF_HOME", home.path())],
        );
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(!text.contains("PLANTED"), "{output}: {text}");
        assert!(text.contains("((db_password))"), "{output}: {text}");
        assert!(text.contains("memory"), "{output}: {text}");
    }
    // Not one connection reached the API.
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a request was sent"
    );
}

#[test]
fn the_metadata_lists_the_rollback_command_with_its_alias_and_flags() {
    let m = cf_zero_downtime::command::plugin::metadata::plugin_metadata();
    let names: Vec<(&str, &str)> = m
        .commands
        .iter()
        .map(|c| (c.name.as_str(), c.alias.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("zero-downtime-push", "zdp"),
            ("zero-downtime-rollback", "zdr")
        ]
    );
    let zdr = &m.commands[1];
    assert!(
        zdr.help_text.contains("previous version"),
        "{}",
        zdr.help_text
    );
    let usage = &zdr.usage_details.usage;
    assert!(
        usage.starts_with("cf zero-downtime-rollback APP_NAME\n"),
        "{usage}"
    );
    let opts = &zdr.usage_details.options;
    for flag in [
        "smoke-test",
        "smoke-test-path",
        "smoke-test-timeout",
        "smoke-test-router",
        "smoke-test-scheme",
        "current-app",
        "drain",
        "timeout",
        "temp-route-suffix",
        "dry-run",
        "output",
    ] {
        assert!(opts.contains_key(flag), "option {flag} missing: {opts:?}");
        assert!(usage.contains(&format!("[--{flag}")), "--{flag}: {usage}");
    }
    assert!(opts["current-app"].contains("[default: stop]"), "{opts:?}");
    assert!(!opts.keys().any(|k| k.starts_with("manifest")), "{opts:?}");
}

#[test]
fn standalone_rollback_reaches_the_deploy_hand_over() {
    let access = format!(
        "bearer {}",
        jwt(&json!({"exp": now() + 3600, "user_name": "alice"}))
    );
    let api = format!("http://127.0.0.1:{}", closed_port());
    let mut cfg = config("https://login.example.com", &access, "r");
    cfg["Target"] = json!(api);
    let (home, _file) = cf_home(&cfg);
    let out = run_bin(
        &[
            "rollback",
            "myapp",
            "--dry-run",
            "--api-outage-budget",
            "0s",
        ],
        &[("CF_HOME", home.path())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains(
            "Rolling back app myapp to its previous version in org my-org / space dev as alice..."
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("cannot reach the cloud controller at {api}")),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("nothing was changed"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1));
    let out = run_bin(&["rollback"], &[]);
    assert_eq!(out.status.code(), Some(1), "the app name is required");
}

#[test]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
fn zdr_under_cf_checks_its_arguments_and_the_target() {
    let Some(report) = under_fake_cf(&[], &["zero-downtime-rollback"]) else {
        return;
    };
    assert_eq!(report["exit_code"], 1);
    let err = report["stderr"].as_str().unwrap_or_default();
    assert!(
        err.contains("USAGE:\n   cf zero-downtime-rollback APP_NAME"),
        "{err}"
    );
    assert_eq!(methods(&report), Vec::<String>::new());
}

#[test]
fn the_standalone_cli_has_version_and_help() {
    let out = run_bin(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = run_bin(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("push"));
    let out = run_bin(&["push", "--strategy", "nope"], &[]);
    assert_eq!(out.status.code(), Some(1));
}

// ---------------------------------------------------------------------------------------
// Ctrl-C under the real cf CLI ends cf and its RPC server: tokens must not depend on it.
// ---------------------------------------------------------------------------------------

fn token_answer(access: &str, refresh: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": access,
        "token_type": "bearer",
        "refresh_token": refresh,
        "expires_in": 3599
    }))
}

#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
#[tokio::test]
async fn the_token_source_outlives_a_killed_go_cli() {
    // cf hands out a token about to expire, so every request asks cf again while it lives.
    let expiring = format!("bearer {}", jwt(&json!({"exp": now() + 30})));
    let Some(server) = go_server(&[&format!("-token={expiring}")]) else {
        return;
    };
    let uaa = MockServer::start().await;
    let fresh = jwt(&json!({"exp": now() + 3600}));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("refresh_token=refresh-1"))
        .respond_with(token_answer(&fresh, "refresh-2"))
        .expect(1)
        .mount(&uaa)
        .await;
    let (_home, file) = cf_home(&config(&uaa.uri(), &expiring, "refresh-1"));
    let conn = CliConnection::new(server.1);
    let first = fetch_rpc_token(&conn).await.expect("token from Go");
    let mut source = TokenSource::from_rpc(conn, first);
    source
        .add_config_fallback(&file, "http://api.example.com")
        .expect("config targets the same API");
    // While the cf CLI lives, it is asked (nothing reaches the login server).
    let t = source.token().await.expect("from the cf CLI");
    assert_eq!(t.expose_secret(), expiring);
    assert!(uaa.received_requests().await.unwrap_or_default().is_empty());

    drop(server); // the cf CLI dies (Ctrl-C) and its RPC server with it

    let t = source.token().await.expect("refreshed through config.json");
    assert_eq!(t.expose_secret(), format!("bearer {fresh}"));
    let saved: Json = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    assert_eq!(saved["RefreshToken"], "refresh-2");
    // Cached now: the login server is not asked again.
    let again = source.token().await.expect("cached");
    assert_eq!(again.expose_secret(), t.expose_secret());
    assert!(source.take_warnings().is_empty());
}

/// Ctrl-C as on a terminal (SIGINT to cf's process group): the cf-like CLI dies at once, the
/// plugin handles the interrupt itself and its report still reaches cf's terminal.
#[cfg(unix)]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_under_a_cf_like_cli_ends_cf_but_not_the_plugin() {
    use crate::support::cf_cli::{CfLikeSetup, process_alive, start_cf_like};
    use std::os::unix::process::ExitStatusExt as _;

    let Some(fakecf) = fakecf() else {
        return;
    };
    // A CF API that answers slowly, so the push is still running when Ctrl-C comes.
    let api = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_secs(2)))
        .mount(&api)
        .await;
    let uaa = MockServer::start().await;
    let fresh = jwt(&json!({"exp": now() + 3600, "user_name": "alice"}));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token_answer(&fresh, "refresh-2"))
        .mount(&uaa)
        .await;
    let expiring = format!(
        "bearer {}",
        jwt(&json!({"exp": now() + 30, "user_name": "alice"}))
    );
    let app = tempfile::tempdir().expect("tempdir");
    std::fs::write(app.path().join("index.js"), "ok").expect("write app");
    let setup = CfLikeSetup {
        peer_flags: vec![format!("-token={expiring}"), "-user=alice".into()],
        plugin_args: vec![
            "zero-downtime-push".into(),
            "myapp".into(),
            "-p".into(),
            app.path().display().to_string(),
        ],
        api: &api.uri(),
        uaa: &uaa.uri(),
        access_token: &expiring,
        refresh_token: "refresh-1",
    };
    let mut run = start_cf_like(fakecf, &setup);
    let pid = run
        .plugin_pid(Duration::from_secs(20))
        .expect("the plugin started");
    assert_ne!(pid, run.pgid());
    // SAFETY: getpgid(2) only reads the process table.
    let plugin_group = unsafe { libc::getpgid(pid) };
    assert_eq!(
        plugin_group,
        run.pgid(),
        "the plugin runs in cf's process group"
    );
    // Wait (bounded) until the push talks to the API: the target is gathered by then.
    let mut asked = false;
    for _ in 0..500 {
        if !api.received_requests().await.unwrap_or_default().is_empty() {
            asked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(asked, "the plugin never reached the API");

    run.interrupt();
    let status = run
        .wait_peer(Duration::from_secs(10))
        .expect("the fake cf CLI died at once");
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    let out = run
        .wait_plugin_exit(pid, Duration::from_secs(60))
        .expect("the plugin ended by itself");
    assert!(!process_alive(pid));
    // The plugin handled the interrupt itself and reported to the terminal cf had left.
    assert!(
        out.stdout
            .contains("Pushing app myapp to org my-org / space dev as alice..."),
        "{out:?}"
    );
    assert!(
        out.stdout.trim_end().ends_with("nothing was changed"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("eyJ") && !out.stderr.contains("eyJ"));
    // No token was needed after the interrupt, so the saved login is untouched.
    let saved: Json =
        serde_json::from_slice(&std::fs::read(run.config_file()).expect("read")).expect("json");
    assert_eq!(saved["RefreshToken"], "refresh-1");
    assert!(uaa.received_requests().await.unwrap_or_default().is_empty());
}

/// The real binary under a cf-like CLI that dies mid-push (killed alone, so the plugin is
/// not interrupted): the plugin's next token comes from `$CF_HOME/.cf/config.json` and the
/// login server, and is saved back.
#[cfg(unix)]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_refreshes_through_config_json_once_cf_is_gone() {
    use crate::support::cf_cli::{CfLikeSetup, start_cf_like};
    use std::os::unix::process::ExitStatusExt as _;

    let Some(fakecf) = fakecf() else {
        return;
    };
    let api = MockServer::start().await;
    let root = json!({"links": {"cloud_controller_v3": {
        "href": format!("{}/v3", api.uri()),
        "meta": {"version": "3.228.0"}
    }}});
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(root))
        .with_priority(1)
        .mount(&api)
        .await;
    // Every authenticated request is answered slowly with "invalid token": the first one
    // is in flight when cf dies, and its 401 makes the plugin refresh without cf.
    Mock::given(wiremock::matchers::any())
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"errors": [{
                    "code": 1000, "title": "CF-InvalidAuthToken", "detail": "Invalid Auth Token"
                }]}))
                .set_delay(Duration::from_secs(2)),
        )
        .with_priority(5)
        .mount(&api)
        .await;
    let uaa = MockServer::start().await;
    let fresh = jwt(&json!({"exp": now() + 3600, "user_name": "alice"}));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("refresh_token=refresh-1"))
        .respond_with(token_answer(&fresh, "refresh-2"))
        .mount(&uaa)
        .await;
    // The refreshed token is accepted (the push then fails on a 503, which is fine here).
    let fresh_header = format!("bearer {fresh}");
    Mock::given(header("authorization", fresh_header.as_str()))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(2)
        .mount(&api)
        .await;
    // cf's token expires within the refresh margin: each request asks for a new one.
    let expiring = format!(
        "bearer {}",
        jwt(&json!({"exp": now() + 30, "user_name": "alice"}))
    );
    let app = tempfile::tempdir().expect("tempdir");
    std::fs::write(app.path().join("index.js"), "ok").expect("write app");
    let setup = CfLikeSetup {
        peer_flags: vec![format!("-token={expiring}")],
        plugin_args: vec![
            "zero-downtime-push".into(),
            "myapp".into(),
            "-p".into(),
            app.path().display().to_string(),
            "--timeout".into(),
            "20s".into(),
        ],
        api: &api.uri(),
        uaa: &uaa.uri(),
        access_token: &expiring,
        refresh_token: "refresh-1",
    };
    let mut run = start_cf_like(fakecf, &setup);
    let pid = run
        .plugin_pid(Duration::from_secs(20))
        .expect("the plugin started");
    let mut asked = false;
    for _ in 0..500 {
        let requests = api.received_requests().await.unwrap_or_default();
        if requests
            .iter()
            .any(|r| r.headers.contains_key("authorization"))
        {
            asked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(asked, "the plugin never sent an authenticated request");
    assert!(uaa.received_requests().await.unwrap_or_default().is_empty());

    run.kill_cli();
    let status = run.wait_peer(Duration::from_secs(10)).expect("cf died");
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    // The plugin's next request needs a token: the cf CLI is gone, config.json is not.
    let mut used = false;
    for _ in 0..1000 {
        let requests = api.received_requests().await.unwrap_or_default();
        if requests.iter().any(|r| {
            r.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == fresh_header)
        }) {
            used = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !used {
        let n = api.received_requests().await.unwrap_or_default().len();
        let u = uaa.received_requests().await.unwrap_or_default().len();
        let out = run.wait_plugin_exit(pid, Duration::from_secs(30));
        panic!("no API request carried the refreshed token ({n} API, {u} UAA requests): {out:?}");
    }
    assert!(!uaa.received_requests().await.unwrap_or_default().is_empty());
    let saved: Json =
        serde_json::from_slice(&std::fs::read(run.config_file()).expect("read")).expect("json");
    assert_eq!(saved["RefreshToken"], "refresh-2");
    assert_eq!(saved["AccessToken"], fresh_header);

    // Ctrl-C for the plugin alone now; it ends by itself.
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = run
        .wait_plugin_exit(pid, Duration::from_secs(60))
        .expect("the plugin ended");
    assert!(!out.stdout.contains("eyJ") && !out.stderr.contains("eyJ"));
}
