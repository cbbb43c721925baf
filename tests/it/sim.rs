//! Integration tests of the Cloud Foundry simulator, driven over HTTP with reqwest the way
//! the cf CLI and the plugin drive it: login, push (apply_manifest → package → build →
//! droplet → restart), routing, faults, deployments, and the process lifecycle.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use cf_zero_downtime::sim::{Sim, SimConfig, SimHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{WAIT_BOUND, poll, sha1_hex};

/// A CC API client for these tests (also used by `sim_stop` against the simulator binary).
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(sim: &SimHandle) -> Api {
        Api::at(sim.api_url(), sim.token())
    }

    /// A client of the API at `base` sending `token` (`bearer ...`).
    pub(crate) fn at(base: String, token: String) -> Api {
        Api {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base,
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let resp = rb
            .header("Authorization", &self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, v)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.send(self.http.get(self.url(path))).await;
        (s, v)
    }

    pub(crate) async fn ok(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    async fn post(
        &self,
        path: &str,
        body: Value,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self.send(self.http.patch(self.url(path)).json(&body)).await;
        (s, v)
    }

    /// Polls a job URL until it is no longer PROCESSING.
    async fn job(&self, location: &str) -> Value {
        poll("the job to end", || async {
            let v = self.ok(location).await;
            (v["state"] != "PROCESSING").then_some(v)
        })
        .await
    }

    async fn apply_manifest(&self, space: &str, yaml: &str) -> Value {
        let (s, h, v) = self
            .send(
                self.http
                    .post(self.url(&format!("/v3/spaces/{space}/actions/apply_manifest")))
                    .header("Content-Type", "application/x-yaml")
                    .body(yaml.to_string()),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "apply_manifest: {v}");
        let loc = h["location"].to_str().unwrap().to_string();
        assert!(
            loc.starts_with("http://127.0.0.1:"),
            "absolute job url: {loc}"
        );
        self.job(&loc).await
    }

    async fn app_guid(&self, space: &str, name: &str) -> String {
        let v = self
            .ok(&format!("/v3/apps?names={name}&space_guids={space}"))
            .await;
        v["resources"][0]["guid"].as_str().unwrap().to_string()
    }

    /// resource_matches → package → upload (only unmatched files) → READY → build → STAGED.
    /// Returns (droplet guid, number of files uploaded).
    async fn stage(&self, app: &str, files: &[(&str, &[u8])]) -> (String, usize) {
        let (build, uploaded) = self.build(app, files).await;
        assert_eq!(build["state"], "STAGED", "{build}");
        let droplet = build["droplet"]["guid"].as_str().unwrap().to_string();
        let d = self.ok(&format!("/v3/droplets/{droplet}")).await;
        assert_eq!(d["state"], "STAGED");
        (droplet, uploaded)
    }

    /// Uploads and stages; returns the finished build and the number of files uploaded.
    async fn build(&self, app: &str, files: &[(&str, &[u8])]) -> (Value, usize) {
        let resources: Vec<Value> = files
            .iter()
            .map(|(p, data)| {
                json!({"path": p, "mode": "644", "size_in_bytes": data.len(),
                       "checksum": {"value": sha1_hex(data)}})
            })
            .collect();
        let (s, _, matched) = self
            .post("/v3/resource_matches", json!({ "resources": resources }))
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let matched: Vec<Value> = matched["resources"].as_array().unwrap().clone();
        for m in &matched {
            assert!(
                m["mode"].as_str().is_some_and(|x| !x.is_empty()),
                "mode echoed"
            );
        }
        let matched_paths: Vec<&str> = matched
            .iter()
            .map(|m| m["path"].as_str().unwrap())
            .collect();
        let (s, _, pkg) = self
            .post(
                "/v3/packages",
                json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{pkg}");
        assert_eq!(pkg["state"], "AWAITING_UPLOAD");
        let pkg_guid = pkg["guid"].as_str().unwrap().to_string();
        let unmatched: Vec<(&str, &[u8])> = files
            .iter()
            .filter(|(p, _)| !matched_paths.contains(p))
            .copied()
            .collect();
        let mut form =
            reqwest::multipart::Form::new().text("resources", json!(matched).to_string());
        if !unmatched.is_empty() {
            form = form.part(
                "bits",
                reqwest::multipart::Part::bytes(zip_of(&unmatched)).file_name("package.zip"),
            );
        }
        let (s, _, up) = self
            .send(
                self.http
                    .post(self.url(&format!("/v3/packages/{pkg_guid}/upload")))
                    .multipart(form),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{up}");
        assert_eq!(up["state"], "PROCESSING_UPLOAD");
        poll("the package to be READY", || async {
            let v = self.ok(&format!("/v3/packages/{pkg_guid}")).await;
            (v["state"] == "READY").then_some(())
        })
        .await;
        let (s, _, build) = self
            .post("/v3/builds", json!({"package": {"guid": pkg_guid}}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{build}");
        assert_eq!(build["state"], "STAGING");
        let build_guid = build["guid"].as_str().unwrap().to_string();
        let build = poll("the build to end staging", || async {
            let v = self.ok(&format!("/v3/builds/{build_guid}")).await;
            (v["state"] != "STAGING").then_some(v)
        })
        .await;
        (build, unmatched.len())
    }

    /// Sets the droplet, restarts, and waits until every web instance is RUNNING.
    async fn start(&self, app: &str, droplet: &str) {
        let (s, v) = self
            .patch(
                &format!("/v3/apps/{app}/relationships/current_droplet"),
                json!({"data": {"guid": droplet}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _, v) = self
            .post(&format!("/v3/apps/{app}/actions/restart"), json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["state"], "STARTED");
        self.wait_running(app).await;
    }

    async fn wait_running(&self, app: &str) {
        let procs = self.ok(&format!("/v3/apps/{app}/processes")).await;
        for p in procs["resources"].as_array().unwrap() {
            let pg = p["guid"].as_str().unwrap().to_string();
            poll("every instance RUNNING and routable", || async {
                let stats = self.ok(&format!("/v3/processes/{pg}/stats")).await;
                assert!(
                    stats.get("pagination").is_none(),
                    "stats have no pagination"
                );
                let all = stats["resources"].as_array().unwrap();
                all.iter()
                    .all(|i| i["state"] == "RUNNING" && i["routable"] == true)
                    .then_some(())
            })
            .await;
        }
    }
}

/// Waits (bounded) until an instance of process `process_guid` has crashed twice and been
/// restarted; `what` names it in the failure.
async fn restarted_after_two_crashes(sim: &SimHandle, process_guid: &str, what: &str) {
    poll(what, || async {
        sim.state_dump()["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["process"] == process_guid && i["crash_count"].as_u64() >= Some(2))
            .then_some(())
    })
    .await;
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn config() -> SimConfig {
    SimConfig {
        admin_api: true,
        ..SimConfig::default()
    }
}

/// A GET through the router with a Host header: (status, body, backend).
async fn through_router(
    sim: &SimHandle,
    host: &str,
    path: &str,
    extra: Option<(&str, &str)>,
) -> (StatusCode, String, String, String) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut rb = http
        .get(format!("{}{path}", sim.router_url()))
        .header("Host", host);
    if let Some((k, v)) = extra {
        rb = rb.header(k, v);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let backend = h("x-sim-backend");
    let router_error = h("x-cf-routererror");
    (status, resp.text().await.unwrap(), backend, router_error)
}

async fn push(
    api: &Api,
    sim: &SimHandle,
    yaml: &str,
    name: &str,
    files: &[(&str, &[u8])],
) -> (String, String) {
    push_to(api, &sim.space_guid(), yaml, name, files).await
}

/// Pushes app `name` (the manifest `yaml`, then `files` as its bits) to `space` and waits
/// until its instances run; returns the app and droplet GUIDs.
pub(crate) async fn push_to(
    api: &Api,
    space: &str,
    yaml: &str,
    name: &str,
    files: &[(&str, &[u8])],
) -> (String, String) {
    let job = api.apply_manifest(space, yaml).await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let app = api.app_guid(space, name).await;
    let (droplet, _) = api.stage(&app, files).await;
    api.start(&app, &droplet).await;
    (app, droplet)
}

#[tokio::test]
async fn sim_cf_push_sequence_serves_the_app_through_the_router() {
    let sim = Sim::start(config()).await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // cf api
    let root: Value = http
        .get(sim.api_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["links"]["login"]["href"], sim.api_url());
    assert_eq!(root["links"]["uaa"]["href"], sim.api_url());
    assert!(root["links"]["cloud_controller_v3"]["meta"]["version"].is_string());
    assert!(root["links"]["network_policy_v1"]["href"].is_string());
    let v3: Value = http
        .get(format!("{}/v3", sim.api_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v3["links"]["apps"]["href"].is_string());
    let login = http
        .get(format!("{}/login", sim.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    // cf auth admin <the generated password>
    let tok: Value = http
        .post(format!("{}/oauth/token", sim.api_url()))
        .basic_auth("cf", Some(""))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", sim.admin().password.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tok["token_type"], "bearer");
    let mut api = Api::new(&sim);
    api.token = format!("bearer {}", tok["access_token"].as_str().unwrap());
    // cf target -o org -s space
    let orgs = api.ok("/v3/organizations?names=org").await;
    let org = orgs["resources"][0]["guid"].as_str().unwrap().to_string();
    assert_eq!(org, sim.org_guid());
    let spaces = api
        .ok(&format!("/v3/spaces?names=space&organization_guids={org}"))
        .await;
    assert_eq!(spaces["resources"][0]["guid"], sim.space_guid());
    // cf push
    let yaml = "applications:\n- name: web\n  instances: 2\n  memory: 64M\n  health-check-type: http\n  health-check-http-endpoint: /health\n  default-route: true\n  env:\n    GREETING: hi\n";
    let (s, _, diff) = api
        .send(
            api.http
                .post(api.url(&format!("/v3/spaces/{}/manifest_diff", sim.space_guid())))
                .header("Content-Type", "application/x-yaml")
                .body(yaml),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(diff["diff"], json!([]));
    // A 3 MiB file of pseudo-random bytes: bigger than axum's default body limit.
    let mut big = Vec::with_capacity(3 << 20);
    let mut x: u32 = 12345;
    while big.len() < 3 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        big.push((x >> 16) as u8);
    }
    let files: &[(&str, &[u8])] = &[
        ("index.html", b"<h1>v1</h1>"),
        ("css/site.css", b"body{}"),
        ("big.bin", &big),
    ];
    let (app, droplet) = push(&api, &sim, yaml, "web", files).await;
    let procs = api.ok(&format!("/v3/apps/{app}/processes")).await;
    let web = &procs["resources"][0];
    assert_eq!(web["instances"], 2);
    assert_eq!(web["memory_in_mb"], 64);
    assert_eq!(web["health_check"]["type"], "http");
    assert_eq!(web["health_check"]["data"]["endpoint"], "/health");
    let env = api
        .ok(&format!("/v3/apps/{app}/environment_variables"))
        .await;
    assert_eq!(env["var"]["GREETING"], "hi");
    let routes = api.ok(&format!("/v3/apps/{app}/routes")).await;
    assert_eq!(routes["resources"][0]["url"], "web.example.com");
    // As Cloud Controller: `include=domain` is honoured on `/v3/routes`, accepted and ignored
    // on an app's routes.
    let inc = api
        .ok(&format!("/v3/routes?app_guids={app}&include=domain"))
        .await;
    assert_eq!(inc["included"]["domains"][0]["name"], "example.com");
    let plain = api
        .ok(&format!("/v3/apps/{app}/routes?include=domain"))
        .await;
    assert!(plain.get("included").is_none(), "{plain}");
    // An update refused changes nothing, its name and metadata included.
    let (s, v) = api
        .patch(
            &format!("/v3/apps/{app}"),
            json!({"name": "renamed", "metadata": {"labels": {"x": "y"}},
                   "lifecycle": {"type": "docker", "data": {}}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let unchanged = api.ok(&format!("/v3/apps/{app}")).await;
    assert_eq!(unchanged["name"], "web");
    assert!(
        unchanged["metadata"]["labels"].get("x").is_none(),
        "{unchanged}"
    );
    let current = api.ok(&format!("/v3/apps/{app}/droplets/current")).await;
    assert_eq!(current["guid"], droplet.as_str());
    // curl through the router
    let (status, body, _, _) = poll(
        "web.example.com answering 200 through the router",
        || async {
            let r = through_router(&sim, "web.example.com", "/", None).await;
            (r.0 == StatusCode::OK).then_some(r)
        },
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "<h1>v1</h1>");
    let (status, body, _, _) = through_router(&sim, "web.example.com", "/css/site.css", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "body{}"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let got = http
        .get(format!("{}/big.bin", sim.router_url()))
        .header("Host", "web.example.com")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got[..] == big[..], "the big file comes back intact");
    // A second push of the same files uploads nothing (all matched) and still works.
    let (droplet2, uploaded) = api.stage(&app, files).await;
    assert_eq!(uploaded, 0);
    api.start(&app, &droplet2).await;
    let (status, body, _, _) = poll(
        "web.example.com answering 200 through the router",
        || async {
            let r = through_router(&sim, "web.example.com", "/", None).await;
            (r.0 == StatusCode::OK).then_some(r)
        },
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "<h1>v1</h1>"));
    // The call log saw the push sequence in order.
    let calls: Vec<String> = sim
        .call_log()
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    let want = [
        "POST /oauth/token".to_string(),
        format!(
            "POST /v3/spaces/{}/actions/apply_manifest",
            sim.space_guid()
        ),
        "POST /v3/resource_matches".to_string(),
        "POST /v3/packages".to_string(),
        "POST /v3/builds".to_string(),
        format!("PATCH /v3/apps/{app}/relationships/current_droplet"),
        format!("POST /v3/apps/{app}/actions/restart"),
    ];
    let mut at = 0;
    for w in &want {
        at += calls[at..]
            .iter()
            .position(|c| c == w)
            .unwrap_or_else(|| panic!("{w} missing after #{at}"));
    }
    assert!(sim.call_log().iter().all(|c| !c.request_id.is_empty()));
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_faults_fail_calls_staging_and_starts() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    api.apply_manifest(&sim.space_guid(), "applications:\n- name: a\n")
        .await;
    let app = api.app_guid(&sim.space_guid(), "a").await;
    // The 2nd GET of /v3/apps/:guid fails with 503.
    sim.faults().fail_nth("GET", "/v3/apps/:guid", 2, 503);
    assert_eq!(api.get(&format!("/v3/apps/{app}")).await.0, StatusCode::OK);
    let (s, v) = api.get(&format!("/v3/apps/{app}")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["errors"][0]["title"], "CF-ServiceUnavailable");
    assert_eq!(api.get(&format!("/v3/apps/{app}")).await.0, StatusCode::OK);
    // Staging failure.
    sim.faults().fail_staging("A", None);
    let resources = json!([]);
    let _ = resources;
    let (s, _, pkg) = api
        .post(
            "/v3/packages",
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let pkg = pkg["guid"].as_str().unwrap().to_string();
    let form = reqwest::multipart::Form::new()
        .text("resources", "[]")
        .part(
            "bits",
            reqwest::multipart::Part::bytes(zip_of(&[("index.html", b"x")]))
                .file_name("package.zip"),
        );
    let (s, _, _) = api
        .send(
            api.http
                .post(api.url(&format!("/v3/packages/{pkg}/upload")))
                .multipart(form),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // A second upload is refused.
    let form = reqwest::multipart::Form::new().text("resources", "[]");
    let (s, _, v) = api
        .send(
            api.http
                .post(api.url(&format!("/v3/packages/{pkg}/upload")))
                .multipart(form),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"][0]["code"], 150004);
    // Building before READY is refused.
    let (s, _, v) = api
        .post("/v3/builds", json!({"package": {"guid": pkg}}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    api.ok(&format!("/v3/packages/{pkg}")).await;
    // The first POST /v3/builds fails with 500 (injected), the next is accepted but staging fails.
    sim.faults().fail_nth("POST", "/v3/builds", 1, 500);
    let (s, _, v) = api
        .post("/v3/builds", json!({"package": {"guid": pkg}}))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["errors"][0]["title"], "UnknownError");
    let (s, _, b) = api
        .post("/v3/builds", json!({"package": {"guid": pkg}}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let bg = b["guid"].as_str().unwrap().to_string();
    let b = poll("the build to end staging", || async {
        let v = api.ok(&format!("/v3/builds/{bg}")).await;
        (v["state"] != "STAGING").then_some(v)
    })
    .await;
    assert_eq!(b["state"], "FAILED");
    assert!(b["error"].as_str().unwrap().starts_with("StagingError"));
    // Crash on start, the old model kept as an option: every instance stays CRASHED.
    api.apply_manifest(
        &sim.space_guid(),
        "applications:\n- name: crashy\n  instances: 2\n",
    )
    .await;
    let crashy = api.app_guid(&sim.space_guid(), "crashy").await;
    let (droplet, _) = api.stage(&crashy, &[("index.html", b"c")]).await;
    sim.faults().crash_and_stay_crashed("crashy");
    api.patch(
        &format!("/v3/apps/{crashy}/relationships/current_droplet"),
        json!({"data": {"guid": droplet}}),
    )
    .await;
    let (s, _, _) = api
        .post(&format!("/v3/apps/{crashy}/actions/start"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let web = api.ok(&format!("/v3/apps/{crashy}/processes/web")).await;
    let pg = web["guid"].as_str().unwrap().to_string();
    poll("every instance of crashy CRASHED", || async {
        let stats = api.ok(&format!("/v3/processes/{pg}/stats")).await;
        stats["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"] == "CRASHED")
            .then_some(())
    })
    .await;
    // Crash on start: restarted at once (new instance GUID) for the first crashes.
    sim.faults().crash_on_start("crashy");
    restarted_after_two_crashes(&sim, &pg, "an instance of crashy restarted after 2 crashes").await;
    // A failing job, and a 429 with Retry-After.
    sim.faults().fail_jobs("space.apply_manifest", "boom");
    let job = api
        .apply_manifest(&sim.space_guid(), "applications:\n- name: j\n")
        .await;
    assert_eq!(job["state"], "FAILED");
    assert_eq!(job["errors"][0]["detail"], "boom");
    sim.faults().clear();
    sim.faults()
        .apply(cf_zero_downtime::sim::FaultSpec::FailCalls(
            cf_zero_downtime::sim::FailRule {
                method: "*".into(),
                path: "/v3/apps".into(),
                nth: 1,
                times: 2,
                status: 429,
                retry_after: Some(2),
            },
        ));
    for _ in 0..2 {
        let (s, h, v) = api.send(api.http.get(api.url("/v3/apps"))).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(h["retry-after"], "2");
        assert_eq!(v["errors"][0]["code"], 10013);
    }
    assert_eq!(api.get("/v3/apps").await.0, StatusCode::OK);
    // Placement errors keep instances STARTING with details until cleared.
    sim.faults()
        .placement_error("placed", "insufficient resources: memory");
    let (placed, _) = {
        api.apply_manifest(&sim.space_guid(), "applications:\n- name: placed\n")
            .await;
        let g = api.app_guid(&sim.space_guid(), "placed").await;
        let (d, _) = api.stage(&g, &[("index.html", b"p")]).await;
        (g, d)
    };
    let d = api.ok(&format!("/v3/apps/{placed}/droplets")).await["resources"][0]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    api.patch(
        &format!("/v3/apps/{placed}/relationships/current_droplet"),
        json!({"data": {"guid": d}}),
    )
    .await;
    api.post(&format!("/v3/apps/{placed}/actions/start"), json!({}))
        .await;
    let pp = api.ok(&format!("/v3/apps/{placed}/processes/web")).await["guid"]
        .as_str()
        .unwrap()
        .to_string();
    poll(
        "the placement error 'insufficient resources: memory'",
        || async {
            let stats = api.ok(&format!("/v3/processes/{pp}/stats")).await;
            (stats["resources"][0]["details"] == "insufficient resources: memory").then_some(())
        },
    )
    .await;
    let stats = api.ok(&format!("/v3/processes/{pp}/stats")).await;
    assert_eq!(stats["resources"][0]["state"], "STARTING");
    sim.faults().clear();
    api.wait_running(&placed).await;
    // Marker files: a bad version fails staging or crashes on start.
    api.apply_manifest(&sim.space_guid(), "applications:\n- name: marks\n")
        .await;
    let marks = api.app_guid(&sim.space_guid(), "marks").await;
    let (d, _) = api
        .stage(&marks, &[("index.html", b"m"), (".sim-crash", b"")])
        .await;
    api.patch(
        &format!("/v3/apps/{marks}/relationships/current_droplet"),
        json!({"data": {"guid": d}}),
    )
    .await;
    api.post(&format!("/v3/apps/{marks}/actions/start"), json!({}))
        .await;
    let mp = api.ok(&format!("/v3/apps/{marks}/processes/web")).await["guid"]
        .as_str()
        .unwrap()
        .to_string();
    poll("the instance CRASHED", || async {
        let stats = api.ok(&format!("/v3/processes/{mp}/stats")).await;
        (stats["resources"][0]["state"] == "CRASHED").then_some(())
    })
    .await;
    let (b, _) = api
        .build(
            &marks,
            &[
                ("index.html", b"m"),
                (".sim-fail-staging", b"NoAppDetectedError - nope"),
            ],
        )
        .await;
    assert_eq!(b["state"], "FAILED");
    assert_eq!(b["error"], "NoAppDetectedError - nope");
    // Starting without a droplet is refused with CC's message.
    api.apply_manifest(&sim.space_guid(), "applications:\n- name: empty\n")
        .await;
    let empty = api.app_guid(&sim.space_guid(), "empty").await;
    let (s, _, v) = api
        .post(&format!("/v3/apps/{empty}/actions/start"), json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["errors"][0]["detail"],
        "Assign a droplet before starting this app."
    );
    // The admin API takes faults as JSON and dumps state.
    let admin = sim.admin_url().unwrap();
    let r = api
        .http
        .post(format!("{admin}/faults"))
        .header("Authorization", sim.token())
        .json(&json!({"kind": "warning", "text": "sim, says hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, h, _) = api.send(api.http.get(api.url("/v3/apps"))).await;
    assert_eq!(h["x-cf-warnings"].to_str().unwrap(), "sim%2C%20says%20hi");
    let dump: Value = api
        .http
        .get(format!("{admin}/state"))
        .header("Authorization", sim.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(dump["apps"].as_array().unwrap().len() >= 3);
    assert!(dump["calls"].as_array().unwrap().len() > 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_tokens_missing_expired_refreshed() {
    let sim = Sim::start(config()).await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/v3/apps", sim.api_url());
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["title"], "CF-NotAuthenticated");
    assert_eq!(v["errors"][0]["code"], 10002);
    let r = http
        .get(&url)
        .header("Authorization", sim.expired_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["title"], "CF-InvalidAuthToken");
    assert_eq!(v["errors"][0]["code"], 1000);
    // A tampered token is refused too.
    let forged = format!("{}x", sim.token());
    assert_eq!(
        http.get(&url)
            .header("Authorization", forged)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // refresh_token grant.
    let r = http
        .post(format!("{}/oauth/token", sim.api_url()))
        .basic_auth("cf", Some(""))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &sim.refresh_token()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let token = format!("bearer {}", v["access_token"].as_str().unwrap());
    // The claims a client reads.
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["user_name"], "admin");
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
    assert_eq!(
        http.get(&url)
            .header("Authorization", &token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // A refresh token is not an access token, and a bad password is refused.
    let rt = format!("bearer {}", sim.refresh_token());
    assert_eq!(
        http.get(&url)
            .header("Authorization", rt)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = http
        .post(format!("{}/oauth/token", sim.api_url()))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_router_round_robin_404_502_instance_header_and_propagation() {
    let sim = Sim::start(SimConfig {
        route_propagation: Duration::ZERO,
        ..config()
    })
    .await
    .unwrap();
    let api = Api::new(&sim);
    let (app, _) = push(
        &api,
        &sim,
        "applications:\n- name: rr\n  default-route: true\n  instances: 3\n  health-check-type: http\n  health-check-http-endpoint: /health\n",
        "rr",
        &[("index.html", b"rr")],
    )
    .await;
    poll(
        "rr.example.com answering 200 through the router",
        || async {
            (through_router(&sim, "rr.example.com", "/", None).await.0 == StatusCode::OK)
                .then_some(())
        },
    )
    .await;
    poll("rr.example.com routed to 3 instances", || async {
        (sim.router_table()
            .iter()
            .any(|(u, b)| u == "rr.example.com" && b.len() == 3))
        .then_some(())
    })
    .await;
    // Round robin under concurrent, bounded load: 30 requests, 10 per instance.
    let results = futures::future::join_all(
        (0..30).map(|_| through_router(&sim, "RR.example.com:80", "/", None)),
    )
    .await;
    let mut per_backend: HashMap<String, usize> = HashMap::new();
    for (status, body, backend, err) in &results {
        assert_eq!(*status, StatusCode::OK, "{body} {err}");
        assert_eq!(body, "rr");
        *per_backend.entry(backend.clone()).or_default() += 1;
    }
    assert_eq!(per_backend.len(), 3, "{per_backend:?}");
    assert!(per_backend.values().all(|n| *n == 10), "{per_backend:?}");
    // X-Cf-Process-Instance pins the instance.
    let web = api.ok(&format!("/v3/apps/{app}/processes/web")).await;
    let pg = web["guid"].as_str().unwrap().to_string();
    for _ in 0..4 {
        let (s, _, backend, _) = through_router(
            &sim,
            "rr.example.com",
            "/",
            Some(("X-Cf-Process-Instance", &format!("{pg}:1"))),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(backend, format!("{pg}:1"));
    }
    let (s, _, _, err) = through_router(
        &sim,
        "rr.example.com",
        "/",
        Some(("X-Cf-Process-Instance", "nope:x")),
    )
    .await;
    assert_eq!(
        (s, err.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "invalid_cf_process_instance_header"
        )
    );
    let (s, _, _, err) = through_router(
        &sim,
        "rr.example.com",
        "/",
        Some(("X-Cf-Process-Instance", "other-guid:0")),
    )
    .await;
    assert_eq!((s, err.as_str()), (StatusCode::NOT_FOUND, "unknown_route"));
    // Unknown route: 404 unknown_route.
    let (s, _, _, err) = through_router(&sim, "nothing.example.com", "/", None).await;
    assert_eq!((s, err.as_str()), (StatusCode::NOT_FOUND, "unknown_route"));
    // Propagation: with a long delay a new mapping is pending, not routed.
    sim.set_route_propagation(Duration::from_secs(3600));
    let domains = api.ok("/v3/domains?names=example.com").await;
    let domain = domains["resources"][0]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, route) = api
        .post("/v3/routes", json!({"host": "late", "relationships": {"space": {"data": {"guid": sim.space_guid()}}, "domain": {"data": {"guid": domain}}}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{route}");
    let rg = route["guid"].as_str().unwrap().to_string();
    let (s, _, v) = api
        .post(
            &format!("/v3/routes/{rg}/destinations"),
            json!({"destinations": [{"app": {"guid": app}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["destinations"][0]["app"]["process"]["type"], "web");
    poll("a pending route change", || async {
        (sim.pending_route_changes() >= 1).then_some(())
    })
    .await;
    assert!(
        !sim.router_table()
            .iter()
            .any(|(u, _)| u == "late.example.com")
    );
    let (s, _, _, err) = through_router(&sim, "late.example.com", "/", None).await;
    assert_eq!((s, err.as_str()), (StatusCode::NOT_FOUND, "unknown_route"));
    // 502: all instances die (and are restarted, never healthy) while the stale table
    // still lists them.
    sim.faults().unhealthy("rr");
    poll("no instance of rr RUNNING", || async {
        let stats = api.ok(&format!("/v3/processes/{pg}/stats")).await;
        stats["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"] != "RUNNING")
            .then_some(())
    })
    .await;
    assert!(
        sim.router_table()
            .iter()
            .any(|(u, b)| u == "rr.example.com" && b.len() == 3)
    );
    let (s, _, _, err) = through_router(&sim, "rr.example.com", "/", None).await;
    assert_eq!(
        (s, err.as_str()),
        (StatusCode::BAD_GATEWAY, "endpoint_failure")
    );
    // Once propagated, the table has no backend for the route: 404.
    sim.faults().clear();
    sim.set_route_propagation(Duration::ZERO);
    assert_eq!(sim.pending_route_changes(), 0);
    poll(
        "late.example.com answering 200 through the router",
        || async {
            (through_router(&sim, "late.example.com", "/", None).await.0 == StatusCode::OK)
                .then_some(())
        },
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_manifest_routes_services_labels_pagination_and_errors() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let si = sim.create_user_provided_service("db", json!({"uri": "postgres://x"}));
    let yaml = "applications:\n- name: m1\n  routes:\n  - route: m1.example.com\n  - route: m1.example.com/api\n  services: [db]\n  metadata:\n    labels: {zdt: candidate}\n  processes:\n  - type: worker\n    instances: 0\n    command: ./work\n- name: m2\n  random-route: true\n";
    let job = api.apply_manifest(&sim.space_guid(), yaml).await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let m1 = api.app_guid(&sim.space_guid(), "M1").await;
    let routes = api.ok(&format!("/v3/apps/{m1}/routes")).await;
    let urls: Vec<&str> = routes["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, vec!["m1.example.com", "m1.example.com/api"]);
    let m2 = api.app_guid(&sim.space_guid(), "m2").await;
    let r2 = api.ok(&format!("/v3/apps/{m2}/routes")).await;
    assert!(
        r2["resources"][0]["host"]
            .as_str()
            .unwrap()
            .starts_with("m2-")
    );
    let bindings = api
        .ok(&format!(
            "/v3/service_credential_bindings?type=app&app_guids={m1}"
        ))
        .await;
    assert_eq!(
        bindings["resources"][0]["relationships"]["service_instance"]["data"]["guid"],
        si.as_str()
    );
    let env = api.ok(&format!("/v3/apps/{m1}/env")).await;
    assert_eq!(
        env["system_env_json"]["VCAP_SERVICES"]["user-provided"][0]["credentials"]["uri"],
        "postgres://x"
    );
    let procs = api.ok(&format!("/v3/apps/{m1}/processes")).await;
    assert_eq!(procs["resources"].as_array().unwrap().len(), 2);
    // Label selector.
    let found = api.ok("/v3/apps?label_selector=zdt%3Dcandidate").await;
    assert_eq!(found["resources"].as_array().unwrap().len(), 1);
    assert_eq!(found["resources"][0]["name"], "m1");
    // Route lookup with empty paths= filter and hosts=.
    let domains = api.ok("/v3/domains?names=EXAMPLE.com").await;
    let domain = domains["resources"][0]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let exact = api
        .ok(&format!("/v3/routes?domain_guids={domain}&hosts=m1&paths="))
        .await;
    assert_eq!(exact["resources"].as_array().unwrap().len(), 1);
    let default = api
        .ok(&format!(
            "/v3/organizations/{}/domains/default",
            sim.org_guid()
        ))
        .await;
    assert_eq!(default["name"], "example.com");
    // Pagination: 5 routes, 2 per page, absolute next links.
    for i in 0..3 {
        let (s, _, _) = api
            .post("/v3/routes", json!({"host": format!("extra{i}"), "relationships": {"space": {"data": {"guid": sim.space_guid()}}, "domain": {"data": {"guid": domain}}}}))
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let mut url = format!("/v3/routes?space_guids={}&per_page=2", sim.space_guid());
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let page = api.ok(&url).await;
        pages += 1;
        seen += page["resources"].as_array().unwrap().len();
        assert_eq!(page["pagination"]["total_results"], 6);
        match page["pagination"]["next"]["href"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&sim.api_url()));
                url = next.to_string();
            }
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!((seen, pages), (6, 3));
    let (s, v) = api.get("/v3/apps?per_page=0").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"][0]["title"], "CF-BadQueryParameter");
    // Errors: duplicate route, validation, rename uniqueness, unknown app, unknown service.
    let (s, _, v) = api
        .post("/v3/routes", json!({"host": "extra0", "relationships": {"space": {"data": {"guid": sim.space_guid()}}, "domain": {"data": {"guid": domain}}}}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("Route already exists")
    );
    let (s, _, v) = api
        .send(
            api.http
                .post(api.url(&format!(
                    "/v3/spaces/{}/actions/apply_manifest",
                    sim.space_guid()
                )))
                .header("Content-Type", "application/x-yaml")
                .body("applications:\n- name: bad\n  memory: 12\n  instances: -2\n"),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["errors"].as_array().unwrap().len(), 2, "{v}");
    let (s, v) = api
        .patch(&format!("/v3/apps/{m2}"), json!({"name": "M1"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["errors"][0]["title"], "CF-UniquenessError");
    let (s, v) = api.get("/v3/apps/does-not-exist").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v["errors"][0],
        json!({"code": 10010, "title": "CF-ResourceNotFound", "detail": "App not found"})
    );
    let job = api
        .apply_manifest(
            &sim.space_guid(),
            "applications:\n- name: m3\n  services: [nope]\n",
        )
        .await;
    assert_eq!(job["state"], "FAILED");
    assert_eq!(
        job["errors"][0]["detail"],
        "For application 'm3': Service instance 'nope' not found"
    );
    // Rename and delete (as a job).
    let (s, v) = api
        .patch(
            &format!("/v3/apps/{m2}"),
            json!({"name": "m2-venerable", "metadata": {"labels": {"zdt": "old"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "m2-venerable");
    let (s, h, _) = api
        .send(api.http.delete(api.url(&format!("/v3/apps/{m2}"))))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let job = api.job(h["location"].to_str().unwrap()).await;
    assert_eq!(job["state"], "COMPLETE");
    assert_eq!(
        api.get(&format!("/v3/apps/{m2}")).await.0,
        StatusCode::NOT_FOUND
    );
    // Networking policies.
    let (s, _, _) = api
        .post("/networking/v1/external/policies", json!({"policies": [{"source": {"id": m1}, "destination": {"id": m1, "protocol": "tcp", "ports": {"start": 8080, "end": 8080}}}]}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let pol = api
        .ok(&format!("/networking/v1/external/policies?id={m1}"))
        .await;
    assert_eq!(pol["total_policies"], 1);
    sim.shutdown().await;
}

/// Requests through the router until `stop` is set; returns (ok count, failures, bodies seen).
/// Spawns [`load`] and returns once its first request has been answered, so a loaded
/// machine cannot start the load only after the test has finished its work.
async fn spawn_load(
    sim_router: String,
    host: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>, HashMap<String, usize>)> {
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let handle = tokio::spawn(load(sim_router, host, stop, started.clone()));
    tokio::time::timeout(Duration::from_secs(30), started.notified())
        .await
        .expect("the load answered its first request");
    handle
}

async fn load(
    sim_router: String,
    host: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    started: std::sync::Arc<tokio::sync::Notify>,
) -> (usize, Vec<String>, HashMap<String, usize>) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut ok = 0;
    let mut failures = Vec::new();
    let mut bodies: HashMap<String, usize> = HashMap::new();
    // Bounded: at most 5000 requests.
    for _ in 0..5000 {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        match http.get(&sim_router).header("Host", &host).send().await {
            Ok(r) if r.status() == StatusCode::OK => {
                ok += 1;
                *bodies
                    .entry(r.text().await.unwrap_or_default())
                    .or_default() += 1;
            }
            Ok(r) => failures.push(format!("status {}", r.status())),
            Err(e) => failures.push(e.to_string()),
        }
        if ok + failures.len() == 1 {
            started.notify_one();
        }
    }
    (ok, failures, bodies)
}

#[tokio::test]
async fn sim_rolling_deployment_loses_no_request() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let yaml = "applications:\n- name: roll\n  instances: 3\n  default-route: true\n";
    let (app, v1) = push(&api, &sim, yaml, "roll", &[("index.html", b"v1")]).await;
    poll("roll.example.com serving v1", || async {
        (through_router(&sim, "roll.example.com", "/", None).await.1 == "v1").then_some(())
    })
    .await;
    let (v2, _) = api.stage(&app, &[("index.html", b"v2")]).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = spawn_load(
        format!("{}/", sim.router_url()),
        "roll.example.com".into(),
        stop.clone(),
    )
    .await;
    let (s, _, dep) = api
        .post("/v3/deployments", json!({"droplet": {"guid": v2}, "strategy": "rolling", "options": {"max_in_flight": 1, "web_instances": null, "memory_in_mb": null, "disk_in_mb": null, "log_rate_limit_in_bytes_per_second": null}, "relationships": {"app": {"data": {"guid": app}}}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    assert_eq!(dep["status"]["value"], "ACTIVE");
    assert_eq!(dep["previous_droplet"]["guid"], v1.as_str());
    assert!(dep["links"]["cancel"].is_object());
    let dg = dep["guid"].as_str().unwrap().to_string();
    // Two web processes during the rollout.
    let procs = api.ok(&format!("/v3/apps/{app}/processes")).await;
    assert_eq!(
        procs["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] == "web")
            .count(),
        2
    );
    let done = poll("the deployment FINALIZED", || async {
        let d = api.ok(&format!("/v3/deployments/{dg}")).await;
        (d["status"]["value"] == "FINALIZED").then_some(d)
    })
    .await;
    assert_eq!(done["status"]["reason"], "DEPLOYED");
    // Let old instances finish their grace period while the load continues, then stop it.
    poll("roll.example.com serving v2", || async {
        (through_router(&sim, "roll.example.com", "/", None).await.1 == "v2").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failures, bodies) = loader.await.unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        ok > 0 && bodies.contains_key("v1") && bodies.contains_key("v2"),
        "{bodies:?}"
    );
    let procs = api.ok(&format!("/v3/apps/{app}/processes")).await;
    let webs: Vec<&Value> = procs["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "web")
        .collect();
    assert_eq!(webs.len(), 1);
    assert_eq!(webs[0]["instances"], 3);
    assert_eq!(webs[0]["guid"], done["new_processes"][0]["guid"]);
    for _ in 0..6 {
        assert_eq!(
            through_router(&sim, "roll.example.com", "/", None).await.1,
            "v2"
        );
    }
    let list = api.ok(&format!("/v3/deployments?app_guids={app}&status_values=FINALIZED&order_by=-created_at&per_page=1&page=1")).await;
    assert_eq!(list["resources"][0]["guid"], dg.as_str());
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_canary_pause_continue_cancel_and_supersede() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let (app, v1) = push(
        &api,
        &sim,
        "applications:\n- name: can\n  instances: 4\n  default-route: true\n",
        "can",
        &[("index.html", b"v1")],
    )
    .await;
    let (v2, _) = api.stage(&app, &[("index.html", b"v2")]).await;
    let body = |d: &str| json!({"droplet": {"guid": d}, "strategy": "canary", "options": {"canary": {"steps": [{"instance_weight": 25}, {"instance_weight": 50}]}}, "relationships": {"app": {"data": {"guid": app}}}});
    let (s, _, dep) = api.post("/v3/deployments", body(&v2)).await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    let dg = dep["guid"].as_str().unwrap().to_string();
    let paused = poll("the canary deployment PAUSED", || async {
        let d = api.ok(&format!("/v3/deployments/{dg}")).await;
        (d["status"]["reason"] == "PAUSED").then_some(d)
    })
    .await;
    assert_eq!(
        paused["status"]["canary"]["steps"],
        json!({"current": 1, "total": 2})
    );
    assert!(paused["links"]["continue"].is_object());
    let new_pg = paused["new_processes"][0]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let stats = api.ok(&format!("/v3/processes/{new_pg}/stats")).await;
    assert_eq!(stats["resources"].as_array().unwrap().len(), 1);
    // The canary instance answers when addressed by X-Cf-Process-Instance.
    poll("the canary instance serving v2", || async {
        let r = through_router(
            &sim,
            "can.example.com",
            "/",
            Some(("X-Cf-Process-Instance", &format!("{new_pg}:0"))),
        )
        .await;
        (r.1 == "v2").then_some(())
    })
    .await;
    let (s, _, _) = api
        .post(&format!("/v3/deployments/{dg}/actions/continue"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let paused2 = poll("the canary deployment PAUSED at step 2", || async {
        let d = api.ok(&format!("/v3/deployments/{dg}")).await;
        (d["status"]["reason"] == "PAUSED" && d["status"]["canary"]["steps"]["current"] == 2)
            .then_some(d)
    })
    .await;
    assert_eq!(paused2["status"]["value"], "ACTIVE");
    let (s, _, _) = api
        .post(&format!("/v3/deployments/{dg}/actions/continue"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    poll("the deployment DEPLOYED", || async {
        let d = api.ok(&format!("/v3/deployments/{dg}")).await;
        (d["status"]["reason"] == "DEPLOYED").then_some(())
    })
    .await;
    let (s, _, v) = api
        .post(&format!("/v3/deployments/{dg}/actions/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["errors"][0]["detail"],
        "Cannot cancel a deployment with status: FINALIZED and reason: DEPLOYED"
    );
    // Cancel a new canary: the previous droplet comes back and the new process goes.
    let (v3, _) = api.stage(&app, &[("index.html", b"v3")]).await;
    let (_, _, dep) = api.post("/v3/deployments", body(&v3)).await;
    let d3 = dep["guid"].as_str().unwrap().to_string();
    // A newer deployment supersedes it.
    let (_, _, dep4) = api.post("/v3/deployments", body(&v1)).await;
    let d4 = dep4["guid"].as_str().unwrap().to_string();
    let sup = api.ok(&format!("/v3/deployments/{d3}")).await;
    assert_eq!(
        (
            sup["status"]["value"].as_str(),
            sup["status"]["reason"].as_str()
        ),
        (Some("FINALIZED"), Some("SUPERSEDED"))
    );
    poll("the deployment PAUSED", || async {
        let d = api.ok(&format!("/v3/deployments/{d4}")).await;
        (d["status"]["reason"] == "PAUSED").then_some(())
    })
    .await;
    let (s, _, _) = api
        .post(&format!("/v3/deployments/{d4}/actions/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let canceled = poll("the canceled deployment FINALIZED", || async {
        let d = api.ok(&format!("/v3/deployments/{d4}")).await;
        (d["status"]["value"] == "FINALIZED").then_some(d)
    })
    .await;
    assert_eq!(canceled["status"]["reason"], "CANCELED");
    let current = api.ok(&format!("/v3/apps/{app}/droplets/current")).await;
    assert_eq!(current["guid"], v3.as_str());
    api.wait_running(&app).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_process_lifecycle_runs_commands_and_restarts_crashes() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    // `process` health check: a long-running command is RUNNING.
    let (app, _) = push(
        &api,
        &sim,
        "applications:\n- name: sleeper\n  command: sleep 30\n  health-check-type: process\n",
        "sleeper",
        &[("README", b"x")],
    )
    .await;
    let web = api.ok(&format!("/v3/apps/{app}/processes/web")).await;
    assert_eq!(web["command"], "sleep 30");
    // A command that exits is CRASHED and restarted after a back-off.
    let job = api
        .apply_manifest(
            &sim.space_guid(),
            "applications:\n- name: quitter\n  command: exit 3\n  health-check-type: process\n",
        )
        .await;
    assert_eq!(job["state"], "COMPLETE");
    let q = api.app_guid(&sim.space_guid(), "quitter").await;
    let (d, _) = api.stage(&q, &[("README", b"x")]).await;
    api.patch(
        &format!("/v3/apps/{q}/relationships/current_droplet"),
        json!({"data": {"guid": d}}),
    )
    .await;
    api.post(&format!("/v3/apps/{q}/actions/start"), json!({}))
        .await;
    let qp = api.ok(&format!("/v3/apps/{q}/processes/web")).await["guid"]
        .as_str()
        .unwrap()
        .to_string();
    restarted_after_two_crashes(
        &sim,
        &qp,
        "an instance of the Procfile app restarted after 2 crashes",
    )
    .await;
    // With python3 available, a Procfile web server gets PORT, env vars and VCAP_APPLICATION.
    let has_python = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_python {
        let server = b"import http.server, os, json\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        body = (os.environ['GREETING'] + ' ' + json.loads(os.environ['VCAP_APPLICATION'])['application_name']).encode()\n        self.send_response(200); self.end_headers(); self.wfile.write(body)\n    def log_message(self, *a): pass\nhttp.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n";
        let (_, _) = push(
            &api,
            &sim,
            "applications:\n- name: py\n  default-route: true\n  env: {GREETING: hello}\n",
            "py",
            &[
                ("Procfile", b"web: python3 server.py\n"),
                ("server.py", server),
            ],
        )
        .await;
        let (s, body, _, _) = poll(
            "py.example.com answering 200 through the router",
            || async {
                let r = through_router(&sim, "py.example.com", "/", None).await;
                (r.0 == StatusCode::OK).then_some(r)
            },
        )
        .await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "hello py"));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_answers_every_call_the_cf_cli_makes_after_a_push() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let yaml = "applications:\n- name: sum\n  default-route: true\n";
    let (app, _) = push(&api, &sim, yaml, "sum", &[("index.html", b"s")]).await;
    let space = sim.space_guid();
    let web = api.ok(&format!("/v3/apps/{app}/processes/web")).await;
    let pg = web["guid"].as_str().unwrap().to_string();
    for path in [
        format!("/v3/processes/{pg}"),
        format!("/v3/processes/{pg}/sidecars"),
        format!("/v3/apps/{app}/routes"),
        format!("/v3/apps/{app}/droplets/current"),
        format!("/v3/apps?order_by=name&space_guids={space}"),
        format!("/v3/processes?app_guids={app}"),
        format!("/v3/routes?app_guids={app}"),
        format!("/v3/routes?space_guids={space}"),
        format!("/v3/spaces?guids={space}"),
        format!("/v3/apps?guids={app}"),
        format!(
            "/v3/deployments?app_guids={app}&status_values=ACTIVE&order_by=-created_at&per_page=1&page=1"
        ),
        "/api/v1/info".to_string(),
        format!("/api/v1/read/{app}?descending=true&limit=1000&start_time=0"),
        format!("/v3/apps/{app}/features"),
        format!("/v3/apps/{app}/ssh_enabled"),
        format!("/v3/apps/{app}/env"),
        "/v3/info".to_string(),
    ] {
        api.ok(&path).await;
    }
    let inc = api
        .ok(&format!("/v3/apps?guids={app}&include=space.organization"))
        .await;
    assert_eq!(inc["included"]["spaces"][0]["guid"], space.as_str());
    assert_eq!(inc["included"]["organizations"][0]["name"], "org");
    let resp = api
        .http
        .get(api.url(&format!("/v3/apps/{app}/manifest")))
        .header("Authorization", &api.token)
        .header("Accept", "application/x-yaml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let yaml = resp.text().await.unwrap();
    let m: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(m["applications"][0]["name"], "sum");
    assert_eq!(
        m["applications"][0]["routes"][0]["route"],
        "sum.example.com"
    );
    assert_eq!(m["applications"][0]["processes"][0]["type"], "web");
    let list = api.ok(&format!("/v3/processes?app_guids={app}")).await;
    assert_eq!(list["resources"][0]["command"], Value::Null);
    let (s, v) = api.get("/v3/unknown-thing").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["errors"][0]["detail"], "Unknown request");
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_unmap_then_stop_loses_no_request() {
    // The blue-green switch: both versions on the route, unmap the old one, stop it at once.
    let sim = Sim::start(SimConfig {
        route_propagation: Duration::from_millis(50),
        ..config()
    })
    .await
    .unwrap();
    let api = Api::new(&sim);
    let (blue, _) = push(
        &api,
        &sim,
        "applications:\n- name: bg\n  instances: 2\n  default-route: true\n",
        "bg",
        &[("index.html", b"blue")],
    )
    .await;
    let (green, _) = push(
        &api,
        &sim,
        "applications:\n- name: bg-green\n  instances: 2\n  routes:\n  - route: bg.example.com\n",
        "bg-green",
        &[("index.html", b"green")],
    )
    .await;
    poll("bg.example.com routed to 4 instances", || async {
        let t = sim.router_table();
        t.iter()
            .any(|(u, b)| u == "bg.example.com" && b.len() == 4)
            .then_some(())
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = spawn_load(
        format!("{}/", sim.router_url()),
        "bg.example.com".into(),
        stop.clone(),
    )
    .await;
    // Some traffic reaches both versions first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let routes = api.ok(&format!("/v3/apps/{blue}/routes")).await;
    let rg = routes["resources"][0]["guid"].as_str().unwrap().to_string();
    let dests = api
        .ok(&format!("/v3/routes/{rg}/destinations?app_guids={blue}"))
        .await;
    let dg = dests["destinations"][0]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, _) = api
        .send(
            api.http
                .delete(api.url(&format!("/v3/routes/{rg}/destinations/{dg}"))),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, v) = api
        .post(&format!("/v3/apps/{blue}/actions/stop"), json!({}))
        .await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("STOPPED")));
    poll("bg.example.com routed to 2 instances", || async {
        let t = sim.router_table();
        t.iter()
            .any(|(u, b)| u == "bg.example.com" && b.len() == 2)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failures, bodies) = loader.await.unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        ok > 0 && bodies.contains_key("blue") && bodies.contains_key("green"),
        "{bodies:?}"
    );
    let dests = api.ok(&format!("/v3/routes/{rg}/destinations")).await;
    assert_eq!(dests["destinations"][0]["app"]["guid"], green.as_str());
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_malformed_requests_get_client_errors_not_crashes() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    api.apply_manifest(&sim.space_guid(), "applications:\n- name: x\n")
        .await;
    let app = api.app_guid(&sim.space_guid(), "x").await;
    let pg = api.ok(&format!("/v3/apps/{app}/processes/web")).await["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let space = sim.space_guid();
    let endpoints = [
        ("POST", "/v3/apps".to_string()),
        ("PATCH", format!("/v3/apps/{app}")),
        ("PATCH", format!("/v3/apps/{app}/environment_variables")),
        (
            "PATCH",
            format!("/v3/apps/{app}/relationships/current_droplet"),
        ),
        ("PATCH", format!("/v3/apps/{app}/features/ssh")),
        ("POST", "/v3/packages".to_string()),
        ("POST", "/v3/builds".to_string()),
        ("POST", "/v3/resource_matches".to_string()),
        ("POST", "/v3/routes".to_string()),
        ("POST", "/v3/deployments".to_string()),
        ("PATCH", format!("/v3/processes/{pg}")),
        ("POST", format!("/v3/processes/{pg}/actions/scale")),
        ("POST", "/v3/service_instances".to_string()),
        ("POST", "/v3/service_credential_bindings".to_string()),
        ("POST", "/networking/v1/external/policies".to_string()),
        ("POST", format!("/v3/spaces/{space}/actions/apply_manifest")),
        ("POST", format!("/v3/spaces/{space}/manifest_diff")),
    ];
    let bodies: [&[u8]; 8] = [
        b"",
        b"null",
        b"[]",
        b"{\"x\":1}",
        b"\xff\xfe garbage",
        b"{\"instances\": 99999999999, \"memory_in_mb\": -1, \"name\": 5}",
        b"{\"options\": {\"max_in_flight\": 0, \"canary\": {\"steps\": [{\"instance_weight\": 500}]}}}",
        b"{\"health_check\": {\"type\": \"nope\", \"data\": {\"timeout\": 0}}, \"command\": 3}",
    ];
    for (method, path) in &endpoints {
        for body in bodies {
            for ct in [
                "application/json",
                "application/x-yaml",
                "multipart/form-data; boundary=x",
            ] {
                let rb = api
                    .http
                    .request(method.parse().unwrap(), api.url(path))
                    .header("Content-Type", ct)
                    .body(body.to_vec());
                let (s, _, v) = api.send(rb).await;
                assert!(
                    s.is_client_error() || s.is_success(),
                    "{method} {path} {ct} {:?}: {s} {v}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
    let upload = format!("/v3/packages/{}/upload", "no-such-package");
    let (s, _, _) = api.send(api.http.post(api.url(&upload)).body("x")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    api.ok("/v3/apps").await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_crashing_rolling_deployment_is_canceled_and_the_old_version_keeps_serving() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let yaml = "applications:\n- name: bad\n  instances: 2\n  default-route: true\n";
    let (app, v1) = push(&api, &sim, yaml, "bad", &[("index.html", b"v1")]).await;
    poll("bad.example.com serving v1", || async {
        (through_router(&sim, "bad.example.com", "/", None).await.1 == "v1").then_some(())
    })
    .await;
    let (v2, _) = api
        .stage(&app, &[("index.html", b"v2"), (".sim-crash", b"")])
        .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = spawn_load(
        format!("{}/", sim.router_url()),
        "bad.example.com".into(),
        stop.clone(),
    )
    .await;
    let (s, _, dep) = api
        .post(
            "/v3/deployments",
            json!({"droplet": {"guid": v2}, "strategy": "rolling",
                   "relationships": {"app": {"data": {"guid": app}}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    let dg = dep["guid"].as_str().unwrap().to_string();
    let new_pg = dep["new_processes"][0]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    // The new instance crashes; the deployment does not progress.
    poll("the new instance CRASHED", || async {
        let stats = api.ok(&format!("/v3/processes/{new_pg}/stats")).await;
        (stats["resources"][0]["state"] == "CRASHED").then_some(())
    })
    .await;
    let d = api.ok(&format!("/v3/deployments/{dg}")).await;
    assert_eq!(d["status"]["reason"], "DEPLOYING");
    let (s, _, _) = api
        .post(&format!("/v3/deployments/{dg}/actions/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let done = poll("the deployment FINALIZED", || async {
        let d = api.ok(&format!("/v3/deployments/{dg}")).await;
        (d["status"]["value"] == "FINALIZED").then_some(d)
    })
    .await;
    assert_eq!(done["status"]["reason"], "CANCELED");
    assert!(done["links"].get("cancel").is_none());
    let current = api.ok(&format!("/v3/apps/{app}/droplets/current")).await;
    assert_eq!(current["guid"], v1.as_str());
    let procs = api.ok(&format!("/v3/apps/{app}/processes")).await;
    let webs: Vec<&Value> = procs["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "web")
        .collect();
    assert_eq!(webs.len(), 1);
    assert_ne!(webs[0]["guid"], new_pg.as_str());
    assert_eq!(webs[0]["instances"], 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failures, bodies) = loader.await.unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 0, "{bodies:?}");
    assert_eq!(bodies.keys().collect::<Vec<_>>(), vec!["v1"]);
    sim.shutdown().await;
}

/// The envelopes log-cache returns for `app` with `query`.
async fn envelopes(api: &Api, app: &str, query: &str) -> Vec<Value> {
    let v = api.ok(&format!("/api/v1/read/{app}?{query}")).await;
    v["envelopes"]["batch"].as_array().unwrap().clone()
}

/// The decoded payload of a log envelope.
fn log_text(e: &Value) -> String {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(e["log"]["payload"].as_str().unwrap_or(""))
        .unwrap();
    String::from_utf8(raw).unwrap()
}

/// The stats entry of instance 0 of the app's web process.
async fn instance0(api: &Api, pg: &str) -> Value {
    api.ok(&format!("/v3/processes/{pg}/stats")).await["resources"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_crash_restarts_at_once_with_a_new_guid_reset_uptime_and_an_audit_event() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let (app, _) = push(
        &api,
        &sim,
        "applications:\n- name: crasher\n  default-route: true\n",
        "crasher",
        &[("index.html", b"c")],
    )
    .await;
    let pg = api.ok(&format!("/v3/apps/{app}/processes/web")).await["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let before = poll("instance 0 RUNNING for 2 s", || async {
        let i = instance0(&api, &pg).await;
        (i["state"] == "RUNNING" && i["uptime"].as_u64() >= Some(2)).then_some(i)
    })
    .await;
    let old_guid = before["instance_guid"].as_str().unwrap().to_string();
    assert!(!old_guid.is_empty());
    let (s, events) = api.get("/v3/audit_events?types=audit.app.restart").await;
    assert_eq!(s, StatusCode::OK, "{events}");
    assert!(events["pagination"]["total_results"].as_u64() >= Some(1));
    sim.faults().crash_instance("crasher", 0);
    let after = poll("a new instance 0 RUNNING", || async {
        let i = instance0(&api, &pg).await;
        (i["instance_guid"] != old_guid.as_str() && i["state"] == "RUNNING").then_some(i)
    })
    .await;
    assert!(after["uptime"].as_u64() <= Some(1), "{after}");
    assert!(!after["instance_guid"].as_str().unwrap().is_empty());
    // The crash is recorded as CC records it.
    let v = api
        .ok(&format!(
            "/v3/audit_events?types=audit.app.process.crash&target_guids={app}&created_ats%5Bgte%5D=2000-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(v["pagination"]["total_results"], 1, "{v}");
    let e = &v["resources"][0];
    assert_eq!(e["type"], "audit.app.process.crash");
    assert_eq!(e["target"]["guid"], app.as_str());
    assert_eq!(e["target"]["type"], "app");
    assert_eq!(e["target"]["name"], "crasher");
    assert_eq!(e["data"]["index"], 0);
    assert_eq!(e["data"]["instance"], old_guid.as_str());
    assert_eq!(e["data"]["reason"], "CRASHED");
    assert_eq!(e["data"]["exit_status"], 1);
    assert_eq!(
        e["data"]["exit_description"],
        "APP/PROC/WEB: Exited with status 1"
    );
    let eg = e["guid"].as_str().unwrap();
    assert_eq!(api.ok(&format!("/v3/audit_events/{eg}")).await["guid"], eg);
    // Time filters.
    let v = api
        .ok("/v3/audit_events?types=audit.app.process.crash&created_ats%5Bgt%5D=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(v["pagination"]["total_results"], 0);
    let (s, v) = api
        .get("/v3/audit_events?created_ats%5Bgt%5D=yesterday")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errors"][0]["title"], "CF-BadQueryParameter");
    // Pagination like the other lists.
    let v = api.ok("/v3/audit_events?per_page=1").await;
    assert_eq!(v["resources"].as_array().unwrap().len(), 1);
    assert!(v["pagination"]["next"]["href"].is_string());
    // The API line of the crash in log-cache.
    let logs = envelopes(&api, &app, "envelope_types=LOG").await;
    let line = logs
        .iter()
        .filter(|e| e["tags"]["source_type"] == "API")
        .map(log_text)
        .find(|l| l.starts_with(&format!("App instance exited with guid {app} payload: {{")))
        .unwrap_or_else(|| panic!("no crash line in {logs:#?}"));
    assert!(line.contains("\"reason\"=>\"CRASHED\""), "{line}");
    assert!(line.contains(&old_guid), "{line}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_never_healthy_instances_are_restarted_without_showing_crashed() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let (app, _) = push(
        &api,
        &sim,
        "applications:\n- name: sick\n",
        "sick",
        &[("index.html", b"s")],
    )
    .await;
    let pg = api.ok(&format!("/v3/apps/{app}/processes/web")).await["guid"]
        .as_str()
        .unwrap()
        .to_string();
    sim.faults()
        .never_healthy("sick", Duration::from_millis(150));
    let (s, _, _) = api
        .post(&format!("/v3/apps/{app}/actions/restart"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut guids = std::collections::BTreeSet::new();
    let mut polls = 0;
    let deadline = tokio::time::Instant::now() + WAIT_BOUND;
    loop {
        polls += 1;
        let i = instance0(&api, &pg).await;
        assert_ne!(i["state"], "CRASHED", "{i}");
        assert_ne!(i["state"], "RUNNING", "{i}");
        if let Some(g) = i["instance_guid"].as_str().filter(|g| !g.is_empty()) {
            guids.insert(g.to_string());
        }
        let v = api
            .ok(&format!(
                "/v3/audit_events?types=audit.app.process.crash&target_guids={app}"
            ))
            .await;
        if v["pagination"]["total_results"].as_u64() >= Some(2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the instance was not restarted after 2 crashes within {WAIT_BOUND:?}: instance GUIDs seen {guids:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(polls >= 2);
    assert!(guids.len() >= 2, "{guids:?}");
    let v = api
        .ok(&format!(
            "/v3/audit_events?types=audit.app.process.crash&target_guids={app}"
        ))
        .await;
    assert!(
        v["resources"][0]["data"]["exit_description"]
            .as_str()
            .unwrap()
            .starts_with("Instance never healthy after 150ms"),
        "{v}"
    );
    // Once healthy again, the next start makes it RUNNING.
    sim.faults().clear();
    api.wait_running(&app).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_log_cache_has_staging_cell_router_lines_and_timers_with_filters() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let root: Value = api.ok("/").await;
    assert_eq!(root["links"]["log_cache"]["href"], sim.api_url().as_str());
    let (app, _) = push(
        &api,
        &sim,
        "applications:\n- name: logs\n  default-route: true\n",
        "logs",
        &[("index.html", b"l")],
    )
    .await;
    poll(
        "logs.example.com answering 200 through the router",
        || async {
            (through_router(&sim, "logs.example.com", "/", None).await.0 == StatusCode::OK)
                .then_some(())
        },
    )
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("{}/index.html?x=1", sim.router_url()))
        .header("Host", "logs.example.com")
        .header("User-Agent", "sim-test-agent")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let logs = envelopes(&api, &app, "envelope_types=LOG&limit=1000").await;
    let by_type = |t: &str| -> Vec<String> {
        logs.iter()
            .filter(|e| e["tags"]["source_type"] == t)
            .map(log_text)
            .collect()
    };
    assert!(
        by_type("STG").iter().any(|l| l == "Uploading droplet..."),
        "{logs:#?}"
    );
    assert!(
        by_type("CELL")
            .iter()
            .any(|l| l == "Container became healthy")
    );
    let rtr = by_type("RTR");
    let line = rtr
        .iter()
        .find(|l| l.contains("\"GET /index.html?x=1 HTTP/1.1\" 200"))
        .unwrap_or_else(|| panic!("{rtr:#?}"));
    assert!(line.starts_with("logs.example.com - ["), "{line}");
    assert!(line.contains("\"sim-test-agent\""), "{line}");
    assert!(line.contains(&format!("app_id:\"{app}\"")), "{line}");
    assert!(line.contains("app_index:\"0\""), "{line}");
    assert!(line.contains("vcap_request_id:\""), "{line}");
    assert!(line.contains("response_time:"), "{line}");
    for e in &logs {
        assert_eq!(e["source_id"], app.as_str());
        assert!(e["timestamp"].as_str().unwrap().parse::<i64>().is_ok());
        assert!(e["log"]["type"] == "OUT" || e["log"]["type"] == "ERR");
    }
    let timers = envelopes(&api, &app, "envelope_types=TIMER").await;
    let t = timers
        .iter()
        .find(|t| t["tags"]["uri"] == "http://logs.example.com/index.html?x=1")
        .unwrap_or_else(|| panic!("{timers:#?}"));
    assert_eq!(t["timer"]["name"], "http");
    assert_eq!(t["tags"]["status_code"], "200");
    assert_eq!(t["tags"]["method"], "GET");
    assert_eq!(t["tags"]["peer_type"], "Client");
    assert_eq!(t["instance_id"], "0");
    let start: i64 = t["timer"]["start"].as_str().unwrap().parse().unwrap();
    let stop: i64 = t["timer"]["stop"].as_str().unwrap().parse().unwrap();
    assert!(start <= stop);
    assert!(logs.iter().all(|e| e.get("timer").is_none()));
    // Filters: newest first with a limit, a time window, both types.
    let newest = envelopes(&api, &app, "descending=true&limit=1").await;
    assert_eq!(newest.len(), 1);
    let newest_ts: i64 = newest[0]["timestamp"].as_str().unwrap().parse().unwrap();
    let all = envelopes(&api, &app, "limit=1000").await;
    assert!(
        all.iter()
            .all(|e| { e["timestamp"].as_str().unwrap().parse::<i64>().unwrap() <= newest_ts })
    );
    assert_eq!(all.len(), logs.len() + timers.len());
    assert!(
        envelopes(&api, &app, &format!("start_time={}", newest_ts + 1))
            .await
            .is_empty()
    );
    assert_eq!(
        envelopes(&api, &app, &format!("start_time={newest_ts}"))
            .await
            .len(),
        1
    );
    assert_eq!(
        envelopes(&api, &app, &format!("end_time={newest_ts}&limit=1000"))
            .await
            .len(),
        all.len() - 1
    );
    let both = envelopes(
        &api,
        &app,
        "envelope_types=LOG&envelope_types=TIMER&limit=1000",
    )
    .await;
    assert_eq!(both.len(), all.len());
    let (s, _) = api.get(&format!("/api/v1/read/{app}?limit=0")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api
        .get(&format!("/api/v1/read/{app}?start_time=soon"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_router_app_instance_header_5xx_share_and_slow_responses() {
    let sim = Sim::start(SimConfig {
        route_propagation: Duration::ZERO,
        ..config()
    })
    .await
    .unwrap();
    let api = Api::new(&sim);
    let (app, _) = push(
        &api,
        &sim,
        "applications:\n- name: ai\n  default-route: true\n  instances: 2\n",
        "ai",
        &[("index.html", b"ai")],
    )
    .await;
    let pg = api.ok(&format!("/v3/apps/{app}/processes/web")).await["guid"]
        .as_str()
        .unwrap()
        .to_string();
    poll("ai.example.com routed to 2 instances", || async {
        (sim.router_table()
            .iter()
            .any(|(u, b)| u == "ai.example.com" && b.len() == 2))
        .then_some(())
    })
    .await;
    for _ in 0..4 {
        let (s, body, backend, _) = through_router(
            &sim,
            "ai.example.com",
            "/",
            Some(("X-Cf-App-Instance", &format!("{app}:1"))),
        )
        .await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "ai"));
        assert_eq!(backend, format!("{pg}:1"));
    }
    for bad in ["garbage", &format!("{app}:x"), &format!("{app}:"), ":0"] {
        let (s, _, _, err) = through_router(
            &sim,
            "ai.example.com",
            "/",
            Some(("X-Cf-App-Instance", bad)),
        )
        .await;
        assert_eq!(
            (s, err.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_cf_app_instance_header"),
            "{bad}"
        );
    }
    for missing in [
        format!("{app}:7"),
        "0a0a0a0a-0000-4000-8000-000000000000:0".to_string(),
    ] {
        let (s, body, _, err) = through_router(
            &sim,
            "ai.example.com",
            "/",
            Some(("X-Cf-App-Instance", &missing)),
        )
        .await;
        assert_eq!(
            (s, err.as_str()),
            (StatusCode::NOT_FOUND, "unknown_route"),
            "{body}"
        );
    }
    // Half of the requests fail with 500, counted exactly, and the timers say so.
    sim.faults().http_5xx_share("ai", 50);
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            through_router(&sim, "ai.example.com", "/five", None)
                .await
                .0,
        );
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::INTERNAL_SERVER_ERROR)
            .count(),
        5,
        "{statuses:?}"
    );
    let timers = envelopes(&api, &app, "envelope_types=TIMER&limit=1000").await;
    let five: Vec<&Value> = timers
        .iter()
        .filter(|t| t["tags"]["uri"] == "http://ai.example.com/five")
        .collect();
    assert_eq!(five.len(), 10);
    assert_eq!(
        five.iter()
            .filter(|t| t["tags"]["status_code"] == "500")
            .count(),
        5
    );
    // Slow responses: still served; the timer covers the delay.
    sim.faults().clear();
    sim.faults()
        .slow_responses("ai", Duration::from_millis(120));
    let (s, _, _, _) = through_router(&sim, "ai.example.com", "/?slow=1", None).await;
    assert_eq!(s, StatusCode::OK);
    let timers = envelopes(&api, &app, "envelope_types=TIMER&limit=1000").await;
    let t = timers
        .iter()
        .find(|t| t["tags"]["uri"] == "http://ai.example.com/?slow=1")
        .unwrap();
    let start: i64 = t["timer"]["start"].as_str().unwrap().parse().unwrap();
    let stop: i64 = t["timer"]["stop"].as_str().unwrap().parse().unwrap();
    assert!(stop - start >= 120_000_000, "{t}");
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_optional_apis_answer_403_404_or_are_absent_by_fault() {
    use cf_zero_downtime::sim::{OptionalApi, Unavailable};
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let policies = "/networking/v1/external/policies";
    assert_eq!(api.get(policies).await.0, StatusCode::OK);
    assert_eq!(api.get("/v3/audit_events").await.0, StatusCode::OK);
    assert_eq!(api.get("/api/v1/read/x").await.0, StatusCode::OK);
    // Network policies: 403 with the policy server's message, via the admin API.
    let admin = sim.admin_url().unwrap();
    let r = api
        .http
        .post(format!("{admin}/faults"))
        .header("Authorization", sim.token())
        .json(&json!({"kind": "optional_api_unavailable", "api": "network_policy", "mode": "forbidden"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, v) = api.get(policies).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .ends_with("do not include allowed scopes [network.admin network.write]"),
        "{v}"
    );
    let (s, _, _) = api.post(policies, json!({"policies": []})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let f = sim.faults();
    f.optional_api(OptionalApi::NetworkPolicy, Unavailable::NotFound);
    assert_eq!(api.get(policies).await.0, StatusCode::NOT_FOUND);
    assert!(api.ok("/").await["links"]["network_policy_v1"]["href"].is_string());
    f.optional_api(OptionalApi::NetworkPolicy, Unavailable::Absent);
    assert_eq!(api.get(policies).await.0, StatusCode::NOT_FOUND);
    assert!(api.ok("/").await["links"]["network_policy_v1"].is_null());
    // Audit events.
    f.optional_api(OptionalApi::AuditEvents, Unavailable::Forbidden);
    let (s, v) = api.get("/v3/audit_events").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["errors"][0]["title"], "CF-NotAuthorized");
    f.optional_api(OptionalApi::AuditEvents, Unavailable::NotFound);
    let (s, v) = api.get("/v3/audit_events").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["errors"][0]["title"], "CF-NotFound");
    // Log-cache.
    f.optional_api(OptionalApi::LogCache, Unavailable::Forbidden);
    assert_eq!(api.get("/api/v1/read/x").await.0, StatusCode::FORBIDDEN);
    f.optional_api(OptionalApi::LogCache, Unavailable::NotFound);
    assert_eq!(api.get("/api/v1/read/x").await.0, StatusCode::NOT_FOUND);
    assert!(api.ok("/").await["links"]["log_cache"]["href"].is_string());
    f.optional_api(OptionalApi::LogCache, Unavailable::Absent);
    assert_eq!(api.get("/api/v1/read/x").await.0, StatusCode::NOT_FOUND);
    assert!(api.ok("/").await["links"]["log_cache"].is_null());
    f.clear();
    assert_eq!(api.get(policies).await.0, StatusCode::OK);
    assert_eq!(api.get("/v3/audit_events").await.0, StatusCode::OK);
    assert_eq!(api.get("/api/v1/read/x").await.0, StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_admin_api_needs_the_admin_token_and_upload_paths_are_checked() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let admin = sim.admin_url().unwrap();
    let state = |auth: Option<String>| {
        let mut rb = api.http.get(format!("{admin}/state"));
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        async move { rb.send().await.unwrap().status() }
    };
    assert_eq!(state(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        state(Some(sim.expired_token())).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        state(Some("bearer forged.token.here".into())).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(state(Some(sim.token())).await, StatusCode::OK);
    let r = api
        .http
        .post(format!("{admin}/faults"))
        .json(&json!({"kind": "warning", "text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Resource paths of an upload are checked like zip entries.
    api.apply_manifest(&sim.space_guid(), "applications:\n- name: paths\n")
        .await;
    let app = api.app_guid(&sim.space_guid(), "paths").await;
    for (path, why) in [
        ("../evil", "'..'"),
        ("a/../../evil", "'..'"),
        ("/etc/passwd", "absolute"),
        ("a\\..\\..\\evil", "backslash"),
        ("C:/evil", "drive letter"),
        ("", "empty"),
    ] {
        let (s, _, pkg) = api
            .post(
                "/v3/packages",
                json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let pkg = pkg["guid"].as_str().unwrap().to_string();
        let resources = json!([{"path": path, "mode": "644", "size_in_bytes": 1,
                                "checksum": {"value": "0000000000000000000000000000000000000000"}}]);
        let form = reqwest::multipart::Form::new().text("resources", resources.to_string());
        let (s, _, v) = api
            .send(
                api.http
                    .post(api.url(&format!("/v3/packages/{pkg}/upload")))
                    .multipart(form),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
        let detail = v["errors"][0]["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("invalid path '{path}'")) && detail.contains(why),
            "{detail}"
        );
        assert_eq!(
            api.ok(&format!("/v3/packages/{pkg}")).await["state"],
            "AWAITING_UPLOAD"
        );
    }
    sim.shutdown().await;
}

// ---------------------------------------------------------------- safe to leave running

/// Another local user can reach a loopback simulator: without the generated password (there
/// is no well-known default any more) the login is refused.
#[tokio::test]
async fn a_local_login_without_the_generated_password_is_refused() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let login = |password: String| {
        http.post(format!("{}/oauth/token", sim.api_url()))
            .basic_auth("cf", Some(""))
            .form(&[
                ("grant_type", "password".to_string()),
                ("username", "admin".to_string()),
                ("password", password),
            ])
            .send()
    };
    let refused = login("admin".into()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let admin = sim.admin();
    assert_ne!(admin.password, "admin");
    assert_eq!(admin.password.len(), 32);
    assert!(!format!("{admin:?}").contains(&admin.password));
    let ok = login(admin.password.clone()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // client_credentials takes the same secret.
    let cc = http
        .post(format!("{}/oauth/token", sim.api_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "admin"),
            ("client_secret", "admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(cc.status(), StatusCode::UNAUTHORIZED);
    assert_ne!(SimConfig::default().password, SimConfig::default().password);
    sim.shutdown().await;
}

/// An app instance sees what Cloud Foundry gives it and nothing of the simulator's own
/// environment (the test process's: its HOME, PATH, CARGO_* and whatever secrets it holds).
#[tokio::test]
async fn instances_start_with_a_cleared_environment() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    let (app, _) = push(
        &api,
        &sim,
        "applications:\n- name: envdump\n  command: env; exec sleep 30\n  health-check-type: process\n  env: {GREETING: hello}\n",
        "envdump",
        &[("README", b"x")],
    )
    .await;
    let lines: Vec<String> = poll("the app's VCAP_APPLICATION line in log-cache", || async {
        let lines: Vec<String> = envelopes(&api, &app, "envelope_types=LOG&limit=1000")
            .await
            .iter()
            .filter(|e| e["tags"]["source_type"].as_str() == Some("APP/PROC/WEB"))
            .map(log_text)
            .collect();
        lines
            .iter()
            .any(|l| l.starts_with("VCAP_APPLICATION="))
            .then_some(lines)
    })
    .await;
    let env: HashMap<&str, &str> = lines.iter().filter_map(|l| l.split_once('=')).collect();
    let allowed = |name: &str| {
        name.starts_with("CF_INSTANCE_")
            || name.starts_with("VCAP_")
            || matches!(
                name,
                "PORT" | "MEMORY_LIMIT" | "HOME" | "TMPDIR" | "LANG" | "PATH" | "GREETING"
                    // Set by the shell itself.
                    | "PWD" | "SHLVL" | "OLDPWD" | "_"
            )
    };
    let foreign: Vec<&&str> = env.keys().filter(|k| !allowed(k)).collect();
    assert!(foreign.is_empty(), "not Cloud Foundry's: {foreign:?}");
    assert_eq!(env.get("PATH"), Some(&"/usr/local/bin:/usr/bin:/bin"));
    assert_eq!(env.get("GREETING"), Some(&"hello"));
    for name in [
        "PORT",
        "VCAP_SERVICES",
        "CF_INSTANCE_INDEX",
        "MEMORY_LIMIT",
        "TMPDIR",
    ] {
        assert!(env.contains_key(name), "{name} missing: {env:?}");
    }
    // None of the simulator's own variables (besides the names an instance gets anyway).
    for (name, value) in std::env::vars() {
        if !allowed(&name) {
            assert!(!env.contains_key(name.as_str()), "{name} leaked");
        }
        if name == "HOME" {
            assert_ne!(
                env.get("HOME"),
                Some(&value.as_str()),
                "the simulator's HOME"
            );
        }
    }
    sim.shutdown().await;
}

/// Sends `head` (a request without its body) and returns the status line of the answer, which
/// must come before the body does.
async fn answer_without_body(sim: &SimHandle, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = sim.api_url().trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
        .await
        .expect("answered before the body was sent")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// No body is read before the request is authenticated, and bodies are bounded: a client
/// announcing 1 GiB is answered at once instead of being buffered.
#[tokio::test]
async fn request_bodies_are_not_read_before_auth_and_are_bounded() {
    let sim = Sim::start(config()).await.unwrap();
    let unauthenticated = answer_without_body(
        &sim,
        "POST /v3/apps HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n",
    )
    .await;
    assert!(unauthenticated.contains(" 401 "), "{unauthenticated}");
    let token = sim.token();
    let too_large = answer_without_body(
        &sim,
        &format!(
            "POST /v3/apps HTTP/1.1\r\nHost: sim\r\nAuthorization: {token}\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\n\r\n"
        ),
    )
    .await;
    assert!(too_large.contains(" 413 "), "{too_large}");
    let public = answer_without_body(
        &sim,
        "POST /oauth/token HTTP/1.1\r\nHost: sim\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10485760\r\n\r\n",
    )
    .await;
    assert!(public.contains(" 413 "), "{public}");
    let log = sim.call_log();
    assert!(
        log.iter()
            .any(|c| c.status == 401 && c.body == "<not read: not authenticated>"),
        "{log:?}"
    );
    sim.shutdown().await;
}

/// The call log keeps bodies as a CF_TRACE dump shows them: an interpolated apply_manifest
/// (secrets in its env) is hidden whole, JSON secrets are masked.
#[tokio::test]
async fn the_call_log_masks_bodies_as_cf_trace_does() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    api.apply_manifest(
        &sim.space_guid(),
        "applications:\n- name: masked\n  env:\n    DB_PASSWORD: hunter2-PLANTED\n",
    )
    .await;
    let app = api.app_guid(&sim.space_guid(), "masked").await;
    let (s, _) = api
        .patch(
            &format!("/v3/apps/{app}/environment_variables"),
            json!({"var": {"API_KEY": "k3y-PLANTED"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let log = sim.call_log();
    let manifest = log
        .iter()
        .find(|c| c.path.ends_with("/actions/apply_manifest"))
        .expect("apply_manifest logged");
    assert_eq!(manifest.body, "[application/x-yaml Content Hidden]");
    let env = log
        .iter()
        .find(|c| c.path.ends_with("/environment_variables"))
        .expect("env update logged");
    assert!(env.body.contains("API_KEY"), "{}", env.body);
    // The admin API serves the same masked log.
    let calls: Value = reqwest::Client::new()
        .get(format!("{}/_sim/calls", sim.api_url()))
        .header("Authorization", sim.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = calls.to_string();
    assert!(!text.contains("PLANTED"), "{text}");
    assert!(!format!("{log:?}").contains("PLANTED"));
    sim.shutdown().await;
}

/// Polls task `guid` until it is in `state`.
async fn task_in(api: &Api, guid: &str, state: &str) -> Value {
    poll(&format!("task {guid} {state}"), || async {
        let t = api.ok(&format!("/v3/tasks/{guid}")).await;
        (t["state"] == state).then_some(t)
    })
    .await
}

/// The log lines of `source_type` in the app's log-cache buffer.
async fn lines_of(api: &Api, app: &str, source_type: &str) -> Vec<String> {
    envelopes(api, app, "envelope_types=LOG&limit=1000")
        .await
        .iter()
        .filter(|e| e["tags"]["source_type"] == source_type)
        .map(log_text)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_tasks_run_the_droplet_with_the_app_env_and_end_by_exit_status_or_cancel() {
    let sim = Sim::start(config()).await.unwrap();
    let api = Api::new(&sim);
    // Without a droplet there is nothing to run.
    let job = api
        .apply_manifest(&sim.space_guid(), "applications:\n- name: bare\n")
        .await;
    assert_eq!(job["state"], "COMPLETE");
    let bare = api.app_guid(&sim.space_guid(), "bare").await;
    let (s, _, v) = api
        .post(
            &format!("/v3/apps/{bare}/tasks"),
            json!({"command": "true"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(
        v["errors"][0]["detail"],
        "Task must have a droplet. Assign a current droplet to the app."
    );
    let (app, droplet) = push(
        &api,
        &sim,
        "applications:\n- name: migrator\n  env: {GREETING: hello}\n",
        "migrator",
        &[
            ("index.html", b"v1"),
            ("marker.txt", b"from the droplet\n"),
            (
                "migrate.sh",
                b"echo \"migrating $GREETING $MEMORY_LIMIT\"\ntest -z \"$PORT\" && echo no-port\ncat marker.txt\necho warn >&2\n",
            ),
        ],
    )
    .await;
    let (s, _, v) = api
        .post(&format!("/v3/apps/{app}/tasks"), json!({"command": " "}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // A passing task: the droplet's files, the app's env, no PORT; output in log-cache.
    let (s, _, t) = api
        .post(
            &format!("/v3/apps/{app}/tasks"),
            json!({"command": "sh migrate.sh", "name": "zdt-migrate-1", "memory_in_mb": 64}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{t}");
    assert_eq!(t["sequence_id"], 1);
    assert_eq!(t["droplet_guid"], droplet.as_str());
    assert!(
        matches!(t["state"].as_str(), Some("PENDING" | "RUNNING")),
        "{t}"
    );
    let done = task_in(&api, t["guid"].as_str().unwrap(), "SUCCEEDED").await;
    assert_eq!(done["result"]["failure_reason"], Value::Null);
    let lines = lines_of(&api, &app, "APP/TASK/zdt-migrate-1").await;
    // stdout in order; stderr is read by its own reader, so its line may come anywhere.
    let stdout: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "warn")
        .collect();
    assert_eq!(
        stdout,
        ["migrating hello 64m", "no-port", "from the droplet"],
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "warn"), "{lines:?}");
    // A failing task: FAILED with CC's reason.
    let (_, _, t) = api
        .post(
            &format!("/v3/apps/{app}/tasks"),
            json!({"command": "echo boom >&2; exit 3", "name": "bad"}),
        )
        .await;
    assert_eq!(t["sequence_id"], 2);
    let failed = task_in(&api, t["guid"].as_str().unwrap(), "FAILED").await;
    assert_eq!(
        failed["result"]["failure_reason"],
        "APP/TASK/bad: Exited with status 3"
    );
    // Cancel ends it FAILED; a second cancel is refused.
    let (_, _, t) = api
        .post(
            &format!("/v3/apps/{app}/tasks"),
            json!({"command": "sleep 30", "name": "long"}),
        )
        .await;
    let long = t["guid"].as_str().unwrap().to_string();
    task_in(&api, &long, "RUNNING").await;
    let (s, _, v) = api
        .post(&format!("/v3/tasks/{long}/actions/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert!(
        matches!(v["state"].as_str(), Some("CANCELING" | "FAILED")),
        "{v}"
    );
    let cancelled = task_in(&api, &long, "FAILED").await;
    assert_eq!(cancelled["result"]["failure_reason"], "task was cancelled");
    let (s, _, _) = api
        .post(&format!("/v3/tasks/{long}/actions/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let listed = api.ok(&format!("/v3/apps/{app}/tasks")).await;
    assert_eq!(listed["pagination"]["total_results"], 3, "{listed}");
    // Faults: a failing task and a hanging one, whatever the command.
    sim.faults().fail_task("migrator", 2);
    let (_, _, t) = api
        .post(
            &format!("/v3/apps/{app}/tasks"),
            json!({"command": "true", "name": "f"}),
        )
        .await;
    let failed = task_in(&api, t["guid"].as_str().unwrap(), "FAILED").await;
    assert_eq!(
        failed["result"]["failure_reason"],
        "APP/TASK/f: Exited with status 2"
    );
    sim.faults().clear();
    sim.faults().hang_task("migrator");
    let (_, _, t) = api
        .post(
            &format!("/v3/apps/{app}/tasks"),
            json!({"command": "true", "name": "h"}),
        )
        .await;
    let hung = t["guid"].as_str().unwrap().to_string();
    task_in(&api, &hung, "RUNNING").await;
    // The simulator's stop ends a running task (bounded).
    tokio::time::timeout(Duration::from_secs(30), sim.shutdown())
        .await
        .expect("the simulator stops with a task running");
}
