#!/usr/bin/env bash
# Create .venv and install the project with its PyTorch, export, runtime, live, vad, batch and test extras. Idempotent; no model downloads.
# torch 2.14.1 + torchvision 0.29.1 are pinned as a pair because timm (RegStage) needs a torchvision that imports.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.r1omni-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ tools/install.sh -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes the CPU builds of the same pair (no CUDA wheels)
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  .venv/bin/python -m pip install -q -e ".[torch,export,runtime,live,vad,batch,dev]"
  touch "$stamp"
fi
