//! The release helper `scripts/repo-index-entry.sh`: given release binaries (fake ones here), the
//! `repo-index.yml` entry it prints for the community plugin repository names the cf CLI's
//! platforms, the release download URLs and the SHA-1 of each binary.

use std::path::Path;
use std::process::Command;

use sha1::{Digest, Sha1};

const ASSETS: [(&str, &str); 3] = [
    ("osx", "cf-zero-downtime-macos-universal"),
    ("linux64", "cf-zero-downtime-linux-x86_64"),
    ("win64", "cf-zero-downtime-windows-x86_64.exe"),
];

fn run_script(version: &str, dir: &Path) -> std::process::Output {
    Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/repo-index-entry.sh"))
        .arg(version)
        .arg(dir)
        .env("RELEASE_DATE", "2026-03-04")
        .env("CREATED", "2026-01-02")
        .env("REPO_URL", "https://github.com/example/zdt")
        .output()
        .expect("run bash")
}

#[test]
fn the_repo_index_entry_lists_each_platform_with_its_url_and_sha1() {
    let dir = tempfile::tempdir().unwrap();
    let mut sums = Vec::new();
    for (i, (_, asset)) in ASSETS.iter().enumerate() {
        let content = format!("fake binary {i} for {asset}").repeat(100);
        std::fs::write(dir.path().join(asset), &content).unwrap();
        sums.push(hex::encode(Sha1::digest(content.as_bytes())));
    }
    // Not listed: the cf CLI has no platform name for Linux on arm64.
    std::fs::write(dir.path().join("cf-zero-downtime-linux-aarch64"), "arm").unwrap();

    let out = run_script("1.2.3", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Vec<serde_json::Value> = serde_yaml_ng::from_str(&stdout).expect("valid YAML");
    assert_eq!(entries.len(), 1, "{stdout}");
    let entry = &entries[0];
    assert_eq!(entry["name"], "zero-downtime");
    assert_eq!(entry["version"], "1.2.3");
    assert_eq!(entry["homepage"], "https://github.com/example/zdt");
    assert_eq!(entry["created"], "2026-01-02T00:00:00Z");
    assert_eq!(entry["updated"], "2026-03-04T00:00:00Z");
    assert!(
        entry["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Zero-downtime push for Cloud Foundry")),
        "{stdout}"
    );
    assert!(entry["authors"][0]["name"].is_string(), "{stdout}");
    let binaries = entry["binaries"].as_array().expect("binaries");
    assert_eq!(binaries.len(), ASSETS.len(), "{stdout}");
    for ((platform, asset), sum) in ASSETS.iter().zip(&sums) {
        let b = binaries
            .iter()
            .find(|b| b["platform"] == *platform)
            .unwrap_or_else(|| panic!("no {platform} in {stdout}"));
        assert_eq!(
            b["url"],
            format!("https://github.com/example/zdt/releases/download/v1.2.3/{asset}")
        );
        assert_eq!(b["checksum"], sum.as_str(), "{platform}");
    }
}

#[test]
fn a_missing_binary_or_a_bad_version_fails_the_script() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(ASSETS[0].1), "mac").unwrap();
    let out = run_script("1.2.3", dir.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing release asset"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (_, asset) in ASSETS {
        std::fs::write(dir.path().join(asset), "x").unwrap();
    }
    let out = run_script("v1.2.3", dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without its leading v"));
}
