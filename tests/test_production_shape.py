"""The production path at Qwen3-8B's real widths on a CPU: the GPU check's reduced form (2 of the 36 layers).

It runs the project's own stages on a `Qwen3ForCausalLM` with exactly Qwen3-8B's widths, vocabulary and untied
embeddings (random weights) and the real Qwen3 tokenizer with the Chinese prompts: encoder training, LLM training
through `train_llm` (with and without gradient checkpointing), saving (adapter + projector only), loading, scoring,
generation and diagnosis. This is where dtype, shape, tokenizer and memory mistakes show before a GPU sees them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import copy_records
from ecgllm.llm.backbones import QWEN3_8B, random_qwen3_layers

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


def test_random_backbone_names():
    assert random_qwen3_layers("qwen3-8b-random") == QWEN3_8B["num_hidden_layers"] == 36
    assert random_qwen3_layers("qwen3-8b-random:2") == 2
    assert random_qwen3_layers("smollm2-135m") is None


def test_reduced_gpu_check_runs_every_stage_at_real_width(cinc_dir, tmp_path):
    data = tmp_path / "cinc"
    copy_records(cinc_dir, data, 45, 15)
    results = tmp_path / "check.json"
    command = [sys.executable, str(SCRIPT), "--data", str(data), "--out", str(tmp_path / "work"), "--results",
               str(results), "--device", "cpu", "--layers", "2", "--steps", "2", "--batch-size", "1",
               "--accumulation", "1", "--records", "2", "--diagnose", "1", "--max-new-tokens", "4"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "ECGLLM_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(results.read_text())
    assert report["lm"] == "qwen3-8b-random:2" and report["lm_dtype"] == "torch.float32"
    assert report["errors"] == {} and report["inputs_misplaced"] == [] and report["inputs_checked"] > 1000
    stages = report["stages"]
    assert set(stages) == {"encoder", "training_without_gradient_checkpointing",
                           "training_with_gradient_checkpointing", "evaluation", "diagnose"}
    for name in ("training_without_gradient_checkpointing", "training_with_gradient_checkpointing"):
        training = stages[name]
        for field in ("samples_per_s", "tokens_per_s", "achieved_tflops", "epoch_minutes_estimated",
                      "peak_memory_gb"):
            assert training[field] > 0, (name, field)
        assert "mfu" in training  # None on a CPU: no peak to divide by
        # Adapter + projector + encoder only: the 2-layer backbone alone would be 6.5 GB.
        assert training["saved_trainable_mb"] < 200
        assert training["peak_memory_gb"] < 9.5  # fp32 weights of 1.6 B parameters are 6.1 GiB of it
    evaluation = stages["evaluation"]
    assert evaluation["records"] == 2 and evaluation["scoring_records_per_s"] > 0
    assert evaluation["test_split_869_minutes_estimated"] > 0 and evaluation["parameters_on_device"]
    diagnose = stages["diagnose"]
    assert diagnose["all_diagnosed"] and diagnose["seconds_per_record_one_at_a_time_median"] > 0
    assert report["tokens_per_record"] > 100  # Chinese prompt + answer with the real Qwen3 tokenizer
    layer = 4096 * 128 * (2 * 32 + 2 * 8) + 3 * 4096 * 12288
    assert 4 * 2 * layer < report["flop_per_token"] < 4 * 2 * layer + 4 * 151936 * 4096
    final = tmp_path / "work" / "llm" / "final"
    assert not any(p.stat().st_size > 150e6 for p in final.rglob("*") if p.is_file())
