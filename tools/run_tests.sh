#!/usr/bin/env bash
# The test command: install into .venv, then run the whole suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
exec .venv/bin/python -m pytest -q "$@"
