"""External validation of several trained runs on one WFDB database (`ecgllm evaluate-external` for each), with the
figures side by side and their mean over runs. Nothing is tuned on the external data: each run decides at the
threshold it chose on its own CinC validation split.

    python benchmarks/external_validation.py --wfdb ../shared/data/ludb/data --mode records --lead ii \\
        --runs runs/seeds/seed_42 runs/seeds/seed_1 runs/seeds/seed_7

Prints each run's metrics and per-rhythm table, writes each run's full results under RUN/llm/external_<name>/ and the
summary to benchmarks/results/external_<name>.json.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ecgllm.evaluation.metrics import METRIC_NAMES
from ecgllm.runs.external import ExternalConfig, evaluate_external, format_external
from ecgllm.runs.layout import RunLayout, load_model, resolve_model_dir
from ecgllm.utils import describe_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wfdb", type=Path, required=True)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders or model folders")
    parser.add_argument("--mode", default="records", choices=["windows", "segments", "records"])
    parser.add_argument("--lead", default="ii")
    parser.add_argument("--name", default="ludb", help="names the result files")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    results = args.results or Path(__file__).parent / "results" / f"external_{args.name}.json"
    config = ExternalConfig(mode=args.mode, lead=args.lead)

    started = time.perf_counter()
    per_run = {}
    for run in args.runs:
        model_dir = resolve_model_dir(run)
        out = RunLayout.of_model_dir(model_dir).llm / f"external_{args.name}"
        result = evaluate_external(load_model(model_dir, "cpu"), args.wfdb, out, config, progress=False)
        print(f"\n{run}\n{format_external(result)}", flush=True)
        per_run[str(run)] = {key: result[key] for key in ("threshold", "threshold_p_af", "overall", "per_rhythm",
                                                          "answers", "failures") if key in result}
    metrics = {name: [r["overall"]["metrics"][name] for r in per_run.values()] for name in METRIC_NAMES}
    mean = {name: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
            for name, v in metrics.items()}
    print("\nmean over runs: " + ", ".join(f"{n} {m['mean']:.3f} +- {m['sd']:.3f}" for n, m in mean.items()))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "command": "python " + " ".join(sys.argv), "machine": describe_host(),
        "config": {"mode": args.mode, "lead": args.lead}, "per_run": per_run, "mean_over_runs": mean,
        "wall_seconds": round(time.perf_counter() - started)}, indent=2))
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
