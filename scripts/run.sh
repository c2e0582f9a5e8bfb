#!/usr/bin/env bash
# Sets up and runs the main job: usage `bash scripts/run.sh DATA_DIR [OUT_DIR] [PRESET]`.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: scripts/run.sh DATA_DIR [OUT_DIR] [PRESET]}
bash scripts/setup.sh
run=${2:-runs/cpu}
.venv/bin/ecgllm run --data "$data" --out "$run" --preset "${3:-cpu}"
# Something to look at: the run's HTML report, and the trained model on the bundled example records.
.venv/bin/ecgllm report "$run"
.venv/bin/ecgllm -q diagnose --examples --model "$run" --plots "$run/examples"
