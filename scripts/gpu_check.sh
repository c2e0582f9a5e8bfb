#!/usr/bin/env bash
# The GPU check on a lent machine without network (python3 with torch, transformers, peft, accelerate): installs the
# wheels carried in .gpu/wheels into /tmp/site (ahead of the machine's own packages), then runs
# benchmarks/gpu_check.py on the records in .gpu/cinc (with --fsdp first: benchmarks/fsdp_check.py, FSDP training,
# resumption and loading). Extra arguments go to the script. Writes its JSON to $OUT/<name>_cuda.json when OUT is set,
# else to benchmarks/results/.
set -euo pipefail
BUNDLE=${BUNDLE:-.gpu}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$BUNDLE"/wheels/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 ECGLLM_CACHE=/tmp/ecgllm-cache
CHECK=gpu_check
if [ "${1:-}" = "--fsdp" ]; then CHECK=fsdp_check; shift; fi
RESULTS=${OUT:+--results $OUT/${CHECK}_cuda.json}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/$CHECK.py --data "$BUNDLE/cinc" --out /tmp/$CHECK $RESULTS "$@"
