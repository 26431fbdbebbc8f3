#!/usr/bin/env bash
# The main job on a fresh machine: install, then `r1omni-edge demo` builds a tiny R1-Omni, exports it to a bundle and
# runs the live pipeline on a generated clip. It is NOT the real model: see README "Real checkpoints" for that.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
exec .venv/bin/r1omni-edge demo --dir "${1:-out/demo}"
