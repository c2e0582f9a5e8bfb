#!/usr/bin/env bash
# One seed of the fresh-seeds rule for an MS-CNN ensemble (benchmarks/results/encoder_ensemble_fresh_seeds_choice.json):
# the preset run, an ensemble of three encoders on the same split (member 0 is the run's own encoder, copied: a
# training of member 0 would save it byte for byte), the ensemble's and the run's encoder scored on validation and
# test, the ECG-LLM on the ensemble on the same split and cache, and its scoring. Finished steps are skipped, and every
# training resumes where it stopped, so rerunning continues a cut run.
# What the rule and the later comparison read is kept under benchmarks/results/encoder_ensemble_fresh_seeds/seed_S/ to be
# committed: each LLM evaluation's metrics.json, predictions.csv and validation_predictions.csv, and each encoder's
# predictions. Those files and the console logs hold test figures: nobody reads them until the decision is committed.
#   benchmarks/ensemble_seeds_run.sh SEED CINC2017_TRAINING_FOLDER
set -euo pipefail
cd "$(dirname "$0")/.."
seed=$1
data=${2:?usage: benchmarks/ensemble_seeds_run.sh SEED CINC2017_TRAINING_FOLDER}
runs=runs/four75_seeds
run=$runs/seed_$seed
ensemble=$run/ensemble3
kept=benchmarks/results/encoder_ensemble_fresh_seeds/seed_$seed
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$runs"

keep() {  # keep FOLDER NAME FILE...
  local folder=$1 name=$2
  shift 2
  mkdir -p "$kept/$name"
  for file in "$@"; do cp "$folder/$file" "$kept/$name/"; done
}

[ -f "$run/llm/eval/metrics.json" ] ||
  python benchmarks/seed_comparison.py --task four --data "$data" --out "$runs" --seeds "$seed" \
    --results "benchmarks/results/seed_comparison_four_cpu_75hz_seed$seed.json" > "$runs/seed$seed.log" 2>&1
keep "$run/llm/eval" preset metrics.json predictions.csv validation_predictions.csv

if [ ! -f "$ensemble/model.safetensors" ]; then
  mkdir -p "$ensemble/members/0"
  for file in config.json model.safetensors training_config.json host.json history.csv; do
    cp "$run/encoder/$file" "$ensemble/members/0/"
  done
  ecgllm encoder train --data "$data" --split "$run/split.json" --out "$ensemble" --preset cpu --seed "$seed" \
    --members 3 > "$runs/ensemble$seed.log" 2>&1
fi
for model in "$run/encoder" "$ensemble"; do
  [ -f "$model/eval_val/predictions.csv" ] ||
    ecgllm -q encoder evaluate --model "$model" --data "$data" --split "$run/split.json" --split-name val \
      > "$model.eval_val.log" 2>&1
  [ -f "$model/eval/predictions.csv" ] ||
    ecgllm -q encoder evaluate --model "$model" --data "$data" --split "$run/split.json" > "$model.eval.log" 2>&1
done
keep "$run/encoder/eval_val" cnn_single_val predictions.csv
keep "$run/encoder/eval" cnn_single predictions.csv metrics.json
keep "$ensemble/eval_val" cnn_ensemble_val predictions.csv
keep "$ensemble/eval" cnn_ensemble predictions.csv metrics.json

[ -f "$run/llm_ensemble3/final/encoder/model.safetensors" ] ||  # save_pretrained writes it last
  ecgllm llm train --data "$data" --split "$run/split.json" --encoder "$ensemble" --out "$run/llm_ensemble3" \
    --cache "$run/cache" --preset cpu --seed "$seed" --no-evaluate > "$runs/llm_ensemble$seed.log" 2>&1
[ -f "$run/llm_ensemble3/eval/metrics.json" ] ||
  ecgllm llm evaluate --model "$run/llm_ensemble3/final" --data "$data" --split "$run/split.json" --cache "$run/cache" \
    --encoder-eval "$ensemble/eval" --no-generate --out "$run/llm_ensemble3/eval" > "$runs/llm_ensemble${seed}_eval.log" 2>&1
keep "$run/llm_ensemble3/eval" ensemble metrics.json predictions.csv validation_predictions.csv
