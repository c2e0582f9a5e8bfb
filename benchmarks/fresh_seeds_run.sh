#!/usr/bin/env bash
# One seed of the fresh-seeds rule for cross-fitted verdicts
# (benchmarks/results/four_class_llm_cross_fit_fresh_seeds_choice.json): the preset run, the cross-fitted LLM on the
# same split, encoder and cache, and its scoring. Finished steps are skipped, so rerunning resumes a cut run.
# Run folders do not outlive a session on the project's machines, so what the rule reads from each LLM evaluation
# (metrics.json, predictions.csv, validation_predictions.csv) is kept under
# benchmarks/results/four_class_llm_cross_fit_fresh_seeds/seed_S/ to be committed. Those files and the console logs
# hold test figures: nobody reads them until the rule's decision is committed.
#   benchmarks/fresh_seeds_run.sh SEED CINC2017_TRAINING_FOLDER
set -euo pipefail
cd "$(dirname "$0")/.."
seed=$1
data=${2:?usage: benchmarks/fresh_seeds_run.sh SEED CINC2017_TRAINING_FOLDER}
runs=runs/four75_seeds
run=$runs/seed_$seed
kept=benchmarks/results/four_class_llm_cross_fit_fresh_seeds/seed_$seed
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$runs"

keep() {  # keep EVAL_DIR NAME
  mkdir -p "$kept/$2"
  cp "$1/metrics.json" "$1/predictions.csv" "$1/validation_predictions.csv" "$kept/$2/"
}

[ -f "$run/llm/eval/metrics.json" ] ||
  python benchmarks/seed_comparison.py --task four --data "$data" --out "$runs" --seeds "$seed" \
    --results "benchmarks/results/seed_comparison_four_cpu_75hz_seed$seed.json" > "$runs/seed$seed.log" 2>&1
keep "$run/llm/eval" preset

[ -f "$run/llm_cross_fit3/final/encoder/model.safetensors" ] ||  # save_pretrained writes it last
  ecgllm llm train --data "$data" --split "$run/split.json" --encoder "$run/encoder" --out "$run/llm_cross_fit3" \
    --cache "$run/cache" --preset cpu --verdict-folds 3 --seed "$seed" --no-evaluate > "$runs/crossfit$seed.log" 2>&1
[ -f "$run/llm_cross_fit3/eval/metrics.json" ] ||
  ecgllm llm evaluate --model "$run/llm_cross_fit3/final" --data "$data" --split "$run/split.json" --cache "$run/cache" \
    --encoder-eval "$run/encoder/eval" --no-generate --out "$run/llm_cross_fit3/eval" > "$runs/crossfit${seed}_eval.log" 2>&1
keep "$run/llm_cross_fit3/eval" cross_fitted
