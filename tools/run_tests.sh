#!/usr/bin/env bash
# The test command: install into .venv, then run the whole suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
# The VAD gate's test speaks with espeak-ng (a Debian package): installed here where it is missing and apt-get can.
if ! command -v espeak-ng >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng) >/dev/null 2>&1 || true
fi
exec .venv/bin/python -m pytest -q "$@"
