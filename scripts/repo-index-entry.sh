#!/usr/bin/env bash
# Prints the entry of this plugin for the community plugin repository's `repo-index.yml`
# (github.com/cloudfoundry/cli-plugin-repo), from the release binaries in DIR.
#
# Usage: scripts/repo-index-entry.sh VERSION DIR
#   VERSION  the release version without the leading `v` (e.g. 1.2.0)
#   DIR      a folder holding the release assets, named as .github/workflows/release.yml names them
# Environment (optional):
#   RELEASE_DATE  the `updated` date, YYYY-MM-DD (default: today, UTC)
#   CREATED       the `created` date, YYYY-MM-DD (default: RELEASE_DATE)
#   REPO_URL      the GitHub repository (default: the `repository` of Cargo.toml)
#
# Platforms are the cf CLI's names (util/generic GeneratePlatform): osx (any Mac; the asset is
# a universal x86_64 + arm64 binary), linux64, win64. The cf CLI has no name for Linux or
# Windows on arm64, so those assets are attached to the release but not listed here.
# Checksums are SHA-1, as the plugin repository requires. Fails if an asset is missing.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 VERSION DIR" >&2
  exit 2
fi
version="$1"
dir="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"

cargo_field() {
  sed -n "s/^$1 = \"\\(.*\\)\"\$/\\1/p" "$root/Cargo.toml" | head -n 1
}

case "$version" in
  v*) echo "VERSION is given without its leading v: ${version#v}" >&2; exit 2 ;;
  *[!0-9A-Za-z.+-]* | "") echo "invalid VERSION '$version'" >&2; exit 2 ;;
esac
release_date="${RELEASE_DATE:-$(date -u +%Y-%m-%d)}"
created="${CREATED:-$release_date}"
repo_url="${REPO_URL:-$(cargo_field repository)}"
description="$(cargo_field description)"

sha1() {
  if command -v sha1sum >/dev/null 2>&1; then
    sha1sum "$1" | cut -d' ' -f1
  else
    shasum -a 1 "$1" | cut -d' ' -f1
  fi
}

cat <<YAML
- authors:
  - homepage: ${repo_url}
    name: cf-zero-downtime contributors
  binaries:
YAML
for pair in osx:cf-zero-downtime-macos-universal \
  linux64:cf-zero-downtime-linux-x86_64 \
  win64:cf-zero-downtime-windows-x86_64.exe; do
  platform="${pair%%:*}"
  asset="${pair#*:}"
  if [ ! -f "$dir/$asset" ]; then
    echo "missing release asset: $dir/$asset" >&2
    exit 1
  fi
  cat <<YAML
  - checksum: $(sha1 "$dir/$asset")
    platform: ${platform}
    url: ${repo_url}/releases/download/v${version}/${asset}
YAML
done
cat <<YAML
  company: null
  created: ${created}T00:00:00Z
  description: "${description}"
  homepage: ${repo_url}
  name: zero-downtime
  updated: ${release_date}T00:00:00Z
  version: ${version}
YAML
