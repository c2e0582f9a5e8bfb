#!/usr/bin/env bash
# Sets up and runs the test suite (what CI runs). Real CinC 2017 data is read from ../shared/data/cinc2017/training2017
# or from $ECGLLM_CINC_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser tests drive Debian's Chromium (Playwright cannot download its own browser offline).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
fi
.venv/bin/python -m pytest -q "$@"
