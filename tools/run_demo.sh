#!/usr/bin/env bash
# The main job on a fresh machine: build a tiny R1-Omni checkpoint and a synthetic clip, then predict.
# It is NOT the real model (random tiny weights): see README "Real checkpoints" for that.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
out=${1:-out/demo}
.venv/bin/python tools/make_tiny.py --out "$out"
exec .venv/bin/r1omni-edge predict "$out/clip.mp4" --model "$out/R1-Omni-tiny" --models-dir "$out" \
  --max-new-tokens 32 --json
