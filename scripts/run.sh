#!/usr/bin/env bash
# Sets up and runs the main job: usage `bash scripts/run.sh DATA_DIR [OUT_DIR] [PRESET]`.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: scripts/run.sh DATA_DIR [OUT_DIR] [PRESET]}
bash scripts/setup.sh
.venv/bin/ecgllm run --data "$data" --out "${2:-runs/cpu}" --preset "${3:-cpu}"
