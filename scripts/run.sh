#!/usr/bin/env bash
# Sets up and runs the main job: usage `bash scripts/run.sh DATA_DIR [OUT_DIR] [PRESET] [TASK]` (TASK: four, the
# default, or binary).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: scripts/run.sh DATA_DIR [OUT_DIR] [PRESET] [TASK]}
bash scripts/setup.sh
run=${2:-runs/four}
.venv/bin/ecgllm run --data "$data" --out "$run" --preset "${3:-cpu}" --task "${4:-four}"
# Something to look at: the run's HTML report, and the trained model on the bundled example records.
.venv/bin/ecgllm report "$run"
.venv/bin/ecgllm -q diagnose --examples --model "$run" --plots "$run/examples"
