#!/usr/bin/env bash
# Sets up and runs the test suite (what CI runs). Real CinC 2017 data is read from ../shared/data/cinc2017/training2017
# or from $ECGLLM_CINC_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
