#!/usr/bin/env bash
# Creates .venv with the pinned CPU build of PyTorch first (a bare `torch` would pull a multi-GB CUDA build),
# then the package and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
