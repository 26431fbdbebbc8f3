#!/usr/bin/env bash
# The test command: install into .venv, then run the whole suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
# Debian packages the tests use, installed where they are missing and apt-get can: espeak-ng (the VAD gate's test
# speaks with it), chromium and chromium-driver (the web view's test drives Debian's headless browser).
missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") \
    >/dev/null 2>&1 || true
fi
# Where the browser could be installed, its test must run, not skip.
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then export R1OMNI_EDGE_REQUIRE_BROWSER=1; fi
exec .venv/bin/python -m pytest -q "$@"
