"""The ECG-LLM on the real Qwen3 tokenizer and a tiny random Qwen3: splicing, masking, scoring, saving, bad inputs."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from ecgllm.errors import CheckpointError
from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.configuration_ecgllm import LLM_PRESETS
from ecgllm.llm.data import IGNORE_INDEX, Example, TrainingCollator
from ecgllm.llm.modeling_ecgllm import ECGLLM, with_rhythm
from ecgllm.llm.scoring import PrefixCache, decision_scores, generate_answers
from ecgllm.llm.training import branch_positions, feature_noise_std
from ecgllm.rhythm import RHYTHM_FEATURES, RhythmEvidence

EVIDENCE = [RhythmEvidence(n_beats=40, heart_rate_bpm=79, rr_cv=0.06, rmssd_ms=35, prr31=0.16, sd1_ms=25, sd2_ms=56),
            RhythmEvidence(n_beats=110, heart_rate_bpm=111, rr_cv=0.41, rmssd_ms=300, prr31=0.9, sd1_ms=212,
                           sd2_ms=250),
            RhythmEvidence(n_beats=3)]


@pytest.fixture(scope="module")
def model(smoke_encoder):
    torch.manual_seed(0)
    return ECGLLM.build(LLM_PRESETS["smoke"][0], smoke_encoder).eval()


@pytest.fixture(scope="module")
def examples(model):
    formatter = ChatFormatter(model.tokenizer, model.config)
    features = model.projector_input(model.encode_ecg(torch.randn(3, 1, 2400)), EVIDENCE)
    return [Example(f"r{i}", i % 2, features[i], e, formatter.prompt_ids(e), formatter.answer_ids(i % 2, e))
            for i, e in enumerate(EVIDENCE)]


def test_placeholder_is_one_token_expanded_in_place(model, examples):
    tokenizer = model.tokenizer
    assert tokenizer.convert_ids_to_tokens(model.placeholder_id) == "<|ecg_feature|>"
    assert model.placeholder_id == 151669  # added after the last Qwen3 special (151668); no resize needed
    formatter = ChatFormatter(tokenizer, model.config)
    text = formatter.prompt_text(EVIDENCE[0])
    assert text.startswith("<|im_start|>user\n请作为一名心脏病专家")
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # Qwen3 template, enable_thinking=False
    ids = examples[0].prompt_ids
    slots = [i for i, t in enumerate(ids) if t == model.placeholder_id]
    assert len(slots) == model.config.ecg_tokens and slots == list(range(slots[0], slots[0] + len(slots)))
    before = tokenizer.decode(ids[:slots[0]])
    assert before.endswith("分析这段心电图信号特征。")  # in place, not prepended
    assert tokenizer.decode(examples[0].answer_ids).endswith("<|im_end|>\n")


def test_collator_masks_prompt_and_padding(model, examples):
    batch = TrainingCollator(model.tokenizer.pad_token_id)(examples)
    assert model.tokenizer.pad_token_id == 151643  # the real pad token, not id 0
    for row, e in enumerate(examples):
        n_prompt, n_answer = len(e.prompt_ids), len(e.answer_ids)
        assert batch["input_ids"][row, :n_prompt].tolist() == e.prompt_ids  # training sees the inference prompt
        assert (batch["labels"][row, :n_prompt] == IGNORE_INDEX).all()
        assert batch["labels"][row, n_prompt:n_prompt + n_answer].tolist() == e.answer_ids
        assert (batch["labels"][row, n_prompt + n_answer:] == IGNORE_INDEX).all()
        assert batch["attention_mask"][row].sum() == n_prompt + n_answer


def test_feature_noise_moves_the_encoder_features_only(model, examples):
    assert feature_noise_std(examples, 0.0, model.config.feature_dim) is None
    std = feature_noise_std(examples, 0.5, model.config.feature_dim)
    assert std.shape == examples[0].features.shape[-1:]
    assert (std[-RHYTHM_FEATURES:] == 0).all() and (std[:-RHYTHM_FEATURES] > 0).any()
    clean = TrainingCollator(model.tokenizer.pad_token_id)(examples)["ecg_features"]
    collate = TrainingCollator(model.tokenizer.pad_token_id, std, torch.Generator().manual_seed(0))
    first, second = collate(examples)["ecg_features"], collate(examples)["ecg_features"]
    assert torch.equal(first[..., -RHYTHM_FEATURES:], clean[..., -RHYTHM_FEATURES:])  # the measured rhythm is exact
    assert not torch.allclose(first[..., :-RHYTHM_FEATURES], clean[..., :-RHYTHM_FEATURES])
    assert not torch.allclose(first, second)  # fresh noise at every draw
    varied = std > 0
    spread = (first - clean)[..., varied] / std[varied]
    assert 0.5 < float(spread.std()) < 1.5  # noise of the scale asked for


def test_ecg_embeddings_replace_the_placeholder_rows(model, examples):
    batch = TrainingCollator(model.tokenizer.pad_token_id)(examples[:1])
    embedded = model.embed(batch["input_ids"], batch["ecg_features"])
    slots = batch["input_ids"][0] == model.placeholder_id
    projected = model.projector(batch["ecg_features"])[0]
    assert torch.allclose(embedded[0, slots], projected)
    plain = model.lm.get_input_embeddings()(batch["input_ids"])
    assert torch.equal(embedded[0, ~slots], plain[0, ~slots])
    # Causality: another ECG changes no logit before the placeholder, and the ones after it.
    other = batch["ecg_features"] + 1.0
    with torch.no_grad():
        a = model(batch["input_ids"], batch["attention_mask"], batch["ecg_features"]).logits
        b = model(batch["input_ids"], batch["attention_mask"], other).logits
    first = int(slots.nonzero()[0])
    assert torch.allclose(a[0, :first], b[0, :first], atol=1e-5)
    assert not torch.allclose(a[0, first:], b[0, first:], atol=1e-4)


def test_loss_only_on_answer(model, examples):
    batch = TrainingCollator(model.tokenizer.pad_token_id)(examples)
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 5  # random tiny model: about ln(151936)
    loss.backward()
    assert model.projector[0].weight.grad is not None
    assert all(p.grad is None for n, p in model.lm.named_parameters() if "lora_" not in n)
    model.zero_grad()


def test_decision_weight_falls_where_the_sentences_part(model, examples):
    formatter = ChatFormatter(model.tokenizer, model.config)
    positions = branch_positions(formatter, examples)
    normal, af = formatter.decision_ids()
    assert positions == [[formatter.common_start()]] * 2  # two sentences part once
    (j,), _ = positions
    assert normal[:j] == af[:j] and normal[j] != af[j]
    assert [e.answer_ids[j] for e in examples] == [(normal, af)[e.label][j] for e in examples]
    pad_id = model.tokenizer.pad_token_id
    weighted = TrainingCollator(pad_id, branch_positions=positions, decision_weight=10.0)(examples)
    plain = TrainingCollator(pad_id)(examples)
    assert "label_weights" not in plain
    heavy = (weighted["label_weights"] == 10.0).nonzero().tolist()
    assert heavy == [[row, len(e.prompt_ids) + j] for row, e in enumerate(examples)]
    with torch.no_grad():
        same = model(**{**plain, "label_weights": torch.ones(plain["labels"].shape)}).loss
        assert torch.allclose(same, model(**plain).loss)  # weights of 1: the plain mean
        # The weighted mean by hand from the per-token losses of the full head.
        logits = model(plain["input_ids"], plain["attention_mask"], plain["ecg_features"]).logits[:, :-1].float()
        targets = plain["labels"][:, 1:]
        token_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100,
                                                       reduction="none")
        w = (weighted["label_weights"][:, 1:] * (targets != -100)).flatten()
        assert torch.allclose(model(**weighted).loss, (token_loss * w).sum() / w.sum(), atol=1e-4)


def test_four_sentences_part_at_two_places(model):
    """Normal, AF and other rhythm part from "too noisy" at "shows | is" (显示 | 噪声) and from each other a token or
    two later: each of those tokens carries part of the decision."""
    formatter = ChatFormatter(model.tokenizer, dataclasses.replace(model.config, task="four"))
    sentences, positions = formatter.decision_ids(), formatter.branch_positions()
    first = formatter.common_start()
    assert [p[0] for p in positions] == [first] * 4 and positions[3] == [first]  # noisy parts once
    assert all(len(p) >= 2 for p in positions[:3])
    for s, p in zip(sentences, positions):
        for j in p:  # another sentence shares everything before j and differs at j
            assert any(o[:j] == s[:j] and o[j] != s[j] for o in sentences if o is not s)


def test_an_answer_that_does_not_begin_with_its_sentence_is_refused(model, examples):
    formatter = ChatFormatter(model.tokenizer, model.config)
    broken = Example("bad", 1, examples[0].features, EVIDENCE[0], examples[0].prompt_ids, examples[0].answer_ids)
    with pytest.raises(ValueError, match="record bad"):
        branch_positions(formatter, [broken])


def test_answer_only_head_gives_the_full_heads_loss(model, examples):
    """The loss computed from the answer positions alone equals transformers' loss over every position's logits,
    and far fewer positions went through the LM head."""
    batch = TrainingCollator(model.tokenizer.pad_token_id)(examples)
    with torch.no_grad():
        out = model(**batch)
        reference = model.lm(inputs_embeds=model.embed(batch["input_ids"], batch["ecg_features"]),
                             attention_mask=batch["attention_mask"],
                             position_ids=(batch["attention_mask"].cumsum(-1) - 1).clamp(min=0),
                             labels=batch["labels"])
    assert out.loss.item() == pytest.approx(reference.loss.item(), rel=1e-5)
    shortest_prompt = min(len(e.prompt_ids) for e in examples)
    assert out.logits.shape[1] == batch["input_ids"].shape[1] - shortest_prompt + 1 < reference.logits.shape[1]


def test_confident_model_keeps_distinct_scores_and_a_finite_threshold(model, examples):
    """A model whose decision sentences differ by tens of nats (as a confident 8B model's do) still ranks its records
    and gets a finite log-odds threshold, and generation follows that threshold. As float32 probabilities these
    scores would all be 0 or 1."""
    import copy

    from ecgllm.evaluation.metrics import choose_threshold
    from ecgllm.llm.calibration import af_probability
    from ecgllm.llm.scoring import DecisionBias, score_and_answer

    confident = copy.deepcopy(model)
    with torch.no_grad():
        confident.lm.get_output_embeddings().weight.mul_(40.0)  # sharper logits everywhere
    formatter = ChatFormatter(confident.tokenizer, confident.config)
    evidence = [RhythmEvidence(n_beats=30 + i, heart_rate_bpm=60 + 7 * i, rr_cv=0.04 * i, rmssd_ms=20 + i, prr31=0.1,
                               sd1_ms=15, sd2_ms=40) for i in range(8)]
    torch.manual_seed(3)
    features = confident.projector_input(torch.randn(8, confident.config.ecg_tokens, confident.config.feature_dim),
                                         evidence)
    prompts = [formatter.prompt_ids(e) for e in evidence]
    scores = decision_scores(confident, formatter, prompts, features)
    assert np.abs(scores).min() > 17  # beyond float32 sigmoid's reach: P(AF) would round to 0.0 or 1.0
    assert len(set(scores.round(3))) == len(scores)  # still distinct
    assert set(torch.sigmoid(torch.tensor(scores, dtype=torch.float32)).tolist()) <= {0.0, 1.0}
    labels = (np.argsort(np.argsort(scores)) >= 4).astype(int)  # the four highest-scored records are "AF"
    threshold = choose_threshold(labels, scores)
    assert np.isfinite(threshold) and np.isfinite(af_probability(threshold))
    assert list((scores >= threshold).astype(int)) == list(labels)
    _, decisions, _ = score_and_answer(confident, formatter, prompts, features, threshold, 2)
    assert decisions == list(labels)
    bias = DecisionBias(*formatter.decision_ids(), threshold=threshold)
    assert bias.bias == threshold  # finite: nothing divides by zero at a confident threshold


def test_scoring_equals_sentence_log_likelihoods(model, examples):
    """Reference: a plain forward pass over prompt + sentence, summing the sentence tokens' log-probabilities."""
    formatter = ChatFormatter(model.tokenizer, model.config)
    e = examples[1]
    log_likelihood = []
    for sentence in formatter.decision_ids():
        ids = torch.tensor([e.prompt_ids + sentence])
        with torch.no_grad():
            logits = model(ids, torch.ones_like(ids), e.features[None]).logits[0]
        log_probs = torch.log_softmax(logits[len(e.prompt_ids) - 1:-1], -1)
        log_likelihood.append(log_probs.gather(-1, torch.tensor(sentence)[:, None]).sum().item())
    expected = log_likelihood[1] - log_likelihood[0]
    assert decision_scores(model, formatter, [e.prompt_ids], e.features[None])[0] == pytest.approx(expected, abs=1e-3)


def test_scoring_is_padding_invariant(model, examples):
    formatter = ChatFormatter(model.tokenizer, model.config)
    features = torch.stack([e.features for e in examples])
    together = decision_scores(model, formatter, [e.prompt_ids for e in examples], features)
    alone = np.concatenate([decision_scores(model, formatter, [e.prompt_ids], e.features[None]) for e in examples])
    assert together.shape == (3,) and together.dtype == np.float64 and np.isfinite(together).all()
    np.testing.assert_allclose(together, alone, rtol=1e-3, atol=1e-4)
    answers = generate_answers(model, formatter, [e.prompt_ids for e in examples], features, max_new_tokens=5)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)


def test_prefix_cache_gives_the_same_scores(model, examples):
    formatter = ChatFormatter(model.tokenizer, model.config)
    prompts = [e.prompt_ids for e in examples]
    features = torch.stack([e.features for e in examples])
    prefix = PrefixCache(model, formatter, prompts[0])
    assert 0 < len(prefix) < len(prompts[0]) and prefix.matches(prompts)
    expected = decision_scores(model, formatter, prompts, features)
    for _ in range(2):  # the cached prefix is not consumed by a batch
        np.testing.assert_allclose(decision_scores(model, formatter, prompts, features, prefix), expected, rtol=1e-3,
                                   atol=1e-4)
    other = [[prompts[0][0] + 1] + p for p in prompts]  # another prefix: scored without the cache
    assert not prefix.matches(other)
    assert decision_scores(model, formatter, other, features, prefix).shape == (3,)


def test_save_load_round_trip_without_base_lm(model, examples, tmp_path):
    model.save_pretrained(tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert "projector.safetensors" in files and "adapter/adapter_model.safetensors" in files
    assert "encoder/model.safetensors" in files and "config.json" in files
    assert not any(f.endswith("model.safetensors") and not f.startswith(("encoder/", "adapter/")) for f in files)
    adapter_bytes = (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < 2_000_000  # LoRA only; the base LM is never written
    loaded = ECGLLM.from_pretrained(tmp_path)
    formatter = ChatFormatter(model.tokenizer, model.config)
    features = torch.stack([e.features for e in examples])
    np.testing.assert_allclose(decision_scores(loaded, ChatFormatter(loaded.tokenizer, loaded.config),
                                        [e.prompt_ids for e in examples], features),
                               decision_scores(model, formatter, [e.prompt_ids for e in examples], features), rtol=1e-5,
                               atol=1e-5)


def test_bad_inputs_are_clear_errors(model, tmp_path, smoke_encoder):
    from ecgllm.encoder import ENCODER_PRESETS, MSCNN

    model.save_pretrained(tmp_path / "m")
    other = tmp_path / "other_encoder"
    MSCNN(ENCODER_PRESETS["cpu"]).save_pretrained(other)
    with pytest.raises(CheckpointError, match="not the one this model was trained with"):
        ECGLLM.from_pretrained(tmp_path / "m", encoder=other)
    with pytest.raises(CheckpointError, match="no language model here"):
        ECGLLM.from_pretrained(tmp_path / "m", lm=str(tmp_path / "no_such_lm"))
    (tmp_path / "m" / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 64)
    with pytest.raises(CheckpointError, match="corrupt or mismatched LoRA adapter"):
        ECGLLM.from_pretrained(tmp_path / "m")
    model.save_pretrained(tmp_path / "t")
    tokenizer_json = tmp_path / "t" / "tokenizer" / "tokenizer.json"
    raw = json.loads(tokenizer_json.read_text())
    raw["added_tokens"] = [t for t in raw["added_tokens"] if t["content"] != "<|ecg_feature|>"]
    tokenizer_json.write_text(json.dumps(raw))
    config_path = tmp_path / "t" / "tokenizer" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.get("added_tokens_decoder", {}).pop("151669", None)
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="no single token '<\\|ecg_feature\\|>'"):
        ECGLLM.from_pretrained(tmp_path / "t")


def test_an_encoder_saved_by_older_code_keeps_its_identity(smoke_encoder, tmp_path):
    """An encoder whose config predates a field (here `class_offsets`) gets it back when a model re-saves it beside
    itself; that copy is still the encoder the model was built from, and a model that stored the fingerprint of the
    old file's own bytes still loads."""
    import shutil

    from ecgllm.llm.modeling_ecgllm import encoder_fingerprint

    old = tmp_path / "old_encoder"
    shutil.copytree(smoke_encoder, old)
    raw = json.loads((old / "config.json").read_text())
    del raw["class_offsets"]
    (old / "config.json").write_text(json.dumps(raw, indent=2))
    assert encoder_fingerprint(old) != encoder_fingerprint(old, as_written=True)

    torch.manual_seed(0)
    built = ECGLLM.build(LLM_PRESETS["smoke"][0], old)
    built.save_pretrained(tmp_path / "m")  # refused before: the re-saved config's bytes differ from the old file's
    assert "class_offsets" in json.loads((tmp_path / "m" / "encoder" / "config.json").read_text())
    ECGLLM.from_pretrained(tmp_path / "m")
    ECGLLM.from_pretrained(tmp_path / "m", encoder=old)

    shutil.copy(old / "config.json", tmp_path / "m" / "encoder" / "config.json")  # as older code saved the model
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["encoder_fingerprint"] = encoder_fingerprint(old, as_written=True)
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    ECGLLM.from_pretrained(tmp_path / "m")


def test_an_encoder_written_before_ensembles_keeps_its_fingerprint(smoke_encoder, tmp_path):
    """`members` joined the encoder's config after models stored fingerprints: a single encoder's fingerprint is the
    same with or without it, an ensemble's differs."""
    import shutil

    from ecgllm.llm.modeling_ecgllm import encoder_fingerprint

    old = tmp_path / "old_encoder"
    shutil.copytree(smoke_encoder, old)
    raw = json.loads((old / "config.json").read_text())
    assert raw["members"] == 1
    del raw["members"]
    (old / "config.json").write_text(json.dumps({"model_type": "mscnn", **raw}, indent=2))
    assert encoder_fingerprint(old) == encoder_fingerprint(smoke_encoder) == encoder_fingerprint(old, as_written=True)
    raw["members"] = 2
    (old / "config.json").write_text(json.dumps({"model_type": "mscnn", **raw}, indent=2))
    assert encoder_fingerprint(old) != encoder_fingerprint(smoke_encoder)


def test_qwen3_8b_lora_parameter_count():
    """r=16 on all seven projections of the real Qwen3-8B config: about 43.6M, not the original README's 8.4M."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False)
    with torch.device("meta"):
        lm = Qwen3ForCausalLM(config)
    settings = LLM_PRESETS["qwen3-8b"][0].lora
    peft_lm = get_peft_model(lm, LoraConfig(r=settings.r, lora_alpha=settings.alpha,
                                            target_modules=list(settings.target_modules)))
    trainable = sum(p.numel() for p in peft_lm.parameters() if p.requires_grad)
    assert trainable == 36 * 16 * (2 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 12288)) == 43_646_976
    assert 8.0e9 < sum(p.numel() for p in lm.parameters()) < 8.3e9  # it is the 8B model


def test_decision_bias_moves_generation_to_the_threshold():
    from ecgllm.llm.scoring import DecisionBias

    normal, af = [5, 6, 7, 8], [5, 6, 9, 10]
    bias = DecisionBias(normal, af, threshold=2.197)  # log-odds of P(AF) 0.9
    scores = torch.zeros(3, 12)
    scores[:, 9] = 2.0  # the AF branch leads by 2.0 nats at the split: greedy alone would say AF
    generated = torch.tensor([[5, 6], [5, 6], [5, 4]])
    out = bias(generated, scores.clone())
    assert out[0].argmax() != 9 and out[1].argmax() != 9  # below the threshold's log-odds: not AF
    assert out[2, 9] == 2.0  # another prefix: untouched
    assert torch.equal(bias(generated[:, :1], scores.clone()), scores)  # other positions: untouched
    assert DecisionBias(normal, af, threshold=0.0)(generated, scores.clone())[0].argmax() == 9


def test_whole_record_tokens_average_the_windows(smoke_encoder):
    from ecgllm.data.preprocess import sliding_windows, zscore
    from ecgllm.encoder import MSCNN
    from ecgllm.llm.ecg_tokens import encode_records, pool_ecg_tokens

    encoder = MSCNN.from_pretrained(smoke_encoder)
    rng = np.random.default_rng(0)
    signals = [rng.normal(size=9000).astype(np.float32), rng.normal(size=3000).astype(np.float32)]
    whole = encode_records(encoder, signals, 2, "whole")
    centre = encode_records(encoder, signals, 2, "center")
    assert whole.shape == centre.shape == (2, 2, encoder.config.feature_dim)
    windows = torch.from_numpy(sliding_windows(zscore(signals[0]), 2400, 1200)).unsqueeze(1)
    with torch.no_grad():
        expected = pool_ecg_tokens(encoder.feature_map(windows), 2).mean(0)
    assert len(windows) == 7 and torch.allclose(whole[0], expected, atol=1e-5)
    assert not torch.allclose(whole[0], centre[0])


def test_rhythm_input_appends_the_measured_figures(model, tmp_path):
    import dataclasses

    from ecgllm.rhythm import RHYTHM_FEATURES

    config = model.config
    assert config.rhythm_input  # on in the smoke preset, as in cpu
    tokens = model.encode_ecg(torch.randn(3, 1, 2400))  # [3, k, D]
    inputs = with_rhythm(model.config, tokens, EVIDENCE)
    assert inputs.shape == (3, config.ecg_tokens, model.config.feature_dim + RHYTHM_FEATURES)
    assert torch.equal(inputs[..., :-RHYTHM_FEATURES], tokens)
    for row, evidence in enumerate(EVIDENCE):  # every token of a recording carries that recording's figures
        for token in range(config.ecg_tokens):
            assert inputs[row, token, -RHYTHM_FEATURES:].tolist() == pytest.approx(evidence.as_vector())
    assert EVIDENCE[2].as_vector()[-1] == 1.0 and EVIDENCE[0].as_vector()[-1] == 0.0  # unmeasurable: flagged
    assert EVIDENCE[1].as_vector()[1] > EVIDENCE[0].as_vector()[1]  # larger RR CV, larger input
    off = dataclasses.replace(config, rhythm_input=False)
    assert with_rhythm(off, tokens, EVIDENCE) is tokens  # off: the tokens alone
    with pytest.raises(ValueError, match="rhythm evidence for 2"):
        with_rhythm(model.config, tokens, EVIDENCE[:2])

    # The figures reach the LM: the same ECG with another rhythm gives other ECG embeddings at the placeholder.
    formatter = ChatFormatter(model.tokenizer, model.config)
    prompt = formatter.prompt_ids(EVIDENCE[0])
    same_ecg = model.projector_input(tokens[:1].repeat(2, 1, 1), EVIDENCE[:2])
    embedded = model.embed(torch.tensor([prompt, prompt]), same_ecg)
    slots = torch.tensor(prompt) == model.placeholder_id
    assert not torch.allclose(embedded[0, slots], embedded[1, slots], atol=1e-3)
    assert torch.equal(embedded[0, ~slots], embedded[1, ~slots])
    scores = decision_scores(model, formatter, [prompt, prompt], same_ecg)
    model.save_pretrained(tmp_path)
    loaded = ECGLLM.from_pretrained(tmp_path)
    assert loaded.config.rhythm_input
    np.testing.assert_allclose(decision_scores(loaded, ChatFormatter(loaded.tokenizer, loaded.config), [prompt, prompt],
                                        same_ecg), scores, rtol=1e-5, atol=1e-5)


def test_verdict_input_adds_the_encoders_own_logit(smoke_encoder, tmp_path):
    import dataclasses

    from ecgllm.llm.modeling_ecgllm import VERDICT_SCALE

    torch.manual_seed(0)
    model = ECGLLM.build(dataclasses.replace(LLM_PRESETS["smoke"][0], verdict_input=True), smoke_encoder)
    model.train()
    assert not model.encoder.training  # frozen: training the LLM never switches BatchNorm or dropout on
    signals = torch.randn(3, 1, 2400)
    features = with_rhythm(model.config, model.encode_ecg(signals), EVIDENCE)  # [3, k, D + R]
    inputs = model.with_verdict(features)
    assert inputs.shape == features.shape[:-1] + (features.shape[-1] + 1,)
    assert torch.equal(inputs[..., :-1], features)
    with torch.no_grad():
        logits = model.encoder.head(features[..., :model.config.feature_dim].mean(1)).squeeze(-1)
    for token in range(model.config.ecg_tokens):  # every token carries its recording's verdict
        torch.testing.assert_close(inputs[:, token, -1], logits / VERDICT_SCALE)
    assert model.projector[0].in_features == inputs.shape[-1]
    model.save_pretrained(tmp_path)
    assert ECGLLM.from_pretrained(tmp_path).with_verdict(features).shape == inputs.shape


def test_an_ecg_llm_on_an_encoder_ensemble_reads_every_members_tokens_and_their_averaged_verdict(tmp_path):
    import dataclasses

    from ecgllm.encoder import MSCNNEnsemble
    from ecgllm.encoder.configuration_mscnn import encoder_model_preset
    from ecgllm.llm.modeling_ecgllm import VERDICT_SCALE

    torch.manual_seed(0)
    MSCNNEnsemble(dataclasses.replace(encoder_model_preset("smoke", "four"), members=2)).save_pretrained(tmp_path / "e")
    # One ECG token: each window's token is then the encoder's own pooled feature, so the verdict is its logits.
    settings = dataclasses.replace(LLM_PRESETS["smoke"][0], verdict_input=True, ecg_tokens=1)
    model = ECGLLM.build(settings, tmp_path / "e").eval()
    member_dim = model.encoder.members[0].config.feature_dim
    assert model.config.feature_dim == 2 * member_dim
    signals = torch.randn(3, 1, 2400)
    tokens = model.encode_ecg(signals)  # [3, k, 2 D]
    assert tokens.shape == (3, model.config.ecg_tokens, 2 * member_dim)
    features = with_rhythm(model.config, tokens, EVIDENCE)
    inputs = model.with_verdict(features)
    assert inputs.shape[-1] == features.shape[-1] + 4 == model.projector[0].in_features
    with torch.no_grad():
        torch.testing.assert_close(inputs[:, 0, -4:] * VERDICT_SCALE, model.encoder(signals))
    probabilities = torch.stack([head(t.mean(1)).softmax(-1) for head, t in
                                 zip((m.head for m in model.encoder.members), tokens.chunk(2, -1))]).mean(0)
    torch.testing.assert_close((inputs[:, 0, -4:] * VERDICT_SCALE).softmax(-1), probabilities)
    model.save_pretrained(tmp_path / "m")
    loaded = ECGLLM.from_pretrained(tmp_path / "m")
    assert isinstance(loaded.encoder, MSCNNEnsemble)
    torch.testing.assert_close(loaded.with_verdict(features), inputs)


def test_calibration_lives_beside_the_weights(model, tmp_path):
    from ecgllm.llm.calibration import CALIBRATION_NAME, Calibration

    model.save_pretrained(tmp_path / "m")
    assert ECGLLM.from_pretrained(tmp_path / "m").calibration is None  # never evaluated: says so
    Calibration(31.5, "validation split").save(tmp_path / "m")  # log-odds: as P(AF) it would read 1.000000
    config_before = (tmp_path / "m" / "config.json").read_text()
    loaded = ECGLLM.from_pretrained(tmp_path / "m")
    assert loaded.calibration == Calibration(31.5, "validation split")
    assert "threshold" not in json.loads(config_before)

    # A folder written by an earlier version: `evidence` and the threshold inside config.json.
    config = json.loads(config_before)
    config["evidence"] = config.pop("rhythm_prompt")
    config["threshold"] = 0.61
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    (tmp_path / "m" / CALIBRATION_NAME).unlink()
    legacy = ECGLLM.from_pretrained(tmp_path / "m")
    assert legacy.calibration.p_af == pytest.approx(0.61) and legacy.config.rhythm_prompt == model.config.rhythm_prompt
    # A calibration.json of an earlier version held P(AF): read as its log-odds.
    (tmp_path / "m" / CALIBRATION_NAME).write_text(json.dumps({"threshold": 0.25, "chosen_on": "validation"}))
    assert Calibration.load(tmp_path / "m").log_odds == pytest.approx(np.log(0.25 / 0.75))


def test_answer_continues_from_the_scoring_cache(model):
    """score_and_answer (one pass over each prompt, the answer continued from the cache after the chosen decision
    sentence) gives the log-odds of decision_scores and the answer that generating from scratch after that sentence
    gives."""
    from ecgllm.llm.scoring import score_and_answer

    formatter = ChatFormatter(model.tokenizer, model.config)
    evidence = [RhythmEvidence(n_beats=30 + i, heart_rate_bpm=60 + 9 * i, rr_cv=0.05 * i, rmssd_ms=20, prr31=0.1,
                               sd1_ms=15, sd2_ms=40) for i in range(3)]
    prompts = [formatter.prompt_ids(e) for e in evidence]
    torch.manual_seed(1)
    features = model.projector_input(torch.randn(3, model.config.ecg_tokens, model.config.feature_dim), evidence)
    prefix = PrefixCache(model, formatter, prompts[0])
    log_odds, decisions, continuations = score_and_answer(model, formatter, prompts, features, 0.0, 12, prefix=prefix)
    assert log_odds == pytest.approx(decision_scores(model, formatter, prompts, features), abs=1e-4)
    assert decisions == [int(v >= 0.0) for v in log_odds]
    forced = score_and_answer(model, formatter, prompts, features, 0.0, 12, [1, 0, 1], prefix)[1]
    assert forced == [1, 0, 1]
    decision_ids = formatter.decision_ids()
    for i, decision in enumerate(decisions):
        scratch = generate_answers(model, formatter, [prompts[i] + list(decision_ids[decision])], features[i:i + 1],
                                   12)[0]
        assert continuations[i] == scratch


class _Recording(ChatFormatter):
    """A formatter that keeps the ids it decodes."""

    def __init__(self, tokenizer, config):
        super().__init__(tokenizer, config)
        self.decoded = []

    def decode(self, ids):
        self.decoded.append(list(ids))
        return super().decode(ids)


class _Drafting(_Recording):
    """A formatter whose trained answers are the given drafts, row by row, and that keeps the ids it decodes."""

    def __init__(self, tokenizer, config, drafts):
        super().__init__(tokenizer, config)
        self.drafts = iter(drafts)

    def continuation_ids(self, label, evidence):
        return next(self.drafts)


def test_a_draft_answer_changes_the_speed_never_the_answer(model, monkeypatch):
    """Checking a draft of the answer many tokens at a time gives exactly token-by-token greedy decoding's answer,
    whether the draft is the model's own answer (all of it kept), departs from it and rejoins, is wrong from its
    first token, or is the trained answer; and the real formatter drafts the trained answer after the decision
    sentence."""
    from ecgllm.llm import scoring
    from ecgllm.llm.scoring import score_and_answer

    formatter = ChatFormatter(model.tokenizer, model.config)
    prompts = [formatter.prompt_ids(e) for e in EVIDENCE]
    torch.manual_seed(2)
    features = model.projector_input(torch.randn(3, model.config.ecg_tokens, model.config.feature_dim), EVIDENCE)
    prefix = PrefixCache(model, formatter, prompts[0])
    recording = _Drafting(model.tokenizer, model.config, [])
    log_odds, decisions, plain = score_and_answer(model, recording, prompts, features, 0.0, 10, prefix=prefix)
    own = recording.decoded  # the generated token ids
    assert all(len(ids) > 6 for ids in own)
    half = [ids[:3] + [ids[3] + 1] + ids[4:] for ids in own]  # departs at the 4th token, rejoins after it
    inserted = [ids[:5] + [ids[5] + 1, ids[5] + 2] + ids[5:] for ids in own]
    wrong = [[ids[0] + 1] + ids[1:] for ids in own]
    trained = [formatter.continuation_ids(d, e) for d, e in zip(decisions, EVIDENCE)]
    verify, kept = scoring._verify_drafts, {}

    def counting(*args):
        accepted = verify(*args)
        kept["tokens"] = kept.get("tokens", 0) + sum(map(len, accepted[0]))
        return accepted

    monkeypatch.setattr(scoring, "_verify_drafts", counting)
    for name, drafts in (("own", own), ("half", half), ("inserted", inserted), ("wrong", wrong), ("trained", trained)):
        kept.clear()
        drafting = _Drafting(model.tokenizer, model.config, drafts)
        with_draft = score_and_answer(model, drafting, prompts, features, 0.0, 10, prefix=prefix, evidence=EVIDENCE)
        assert with_draft[0] == pytest.approx(log_odds, abs=1e-5) and with_draft[1] == decisions
        assert with_draft[2] == plain
        if name == "own":
            assert kept["tokens"] == sum(map(len, own))
        if name == "half":  # more than the 3 tokens before the departure: the draft was picked up again
            assert kept["tokens"] > 3 * len(own)
    for decision, evidence, draft in zip(decisions, EVIDENCE, trained):
        assert formatter.decision_ids()[decision] + draft == formatter.answer_ids(decision, evidence)
        assert draft  # the trained answer goes on after its decision sentence


def test_the_words_for_the_rr_intervals_are_the_measured_ones_and_the_model_writes_the_rest(model):
    """With `state_rhythm`, what the measured RR intervals are follows the decided sentence in the trained answer's
    words, whatever the model would have written there (this random LM writes anything), and from there on the answer
    is greedy decoding's: what generating from scratch after the decision sentence and that statement gives."""
    from ecgllm.llm.answers import regularity_grounded, stated_regularity
    from ecgllm.llm.scoring import score_and_answer

    lang = model.config.lang
    formatter = _Recording(model.tokenizer, model.config)
    prompts = [formatter.prompt_ids(e) for e in EVIDENCE]
    torch.manual_seed(3)
    features = model.projector_input(torch.randn(3, model.config.ecg_tokens, model.config.feature_dim), EVIDENCE)
    prefix = PrefixCache(model, formatter, prompts[0])
    _, decisions, _ = score_and_answer(model, formatter, prompts, features, 0.0, 24, prefix=prefix)
    own = formatter.decoded[-3:]
    _, stated_decisions, _ = score_and_answer(model, formatter, prompts, features, 0.0, 24, prefix=prefix,
                                              evidence=EVIDENCE, state_rhythm=True)
    stated = formatter.decoded[-3:]
    assert stated_decisions == decisions
    decision_ids = formatter.decision_ids()
    for i, (decision, evidence) in enumerate(zip(decisions, EVIDENCE)):
        statement = formatter.statement_ids(decision, evidence)
        assert statement and stated_regularity(formatter.decode(statement), lang) == evidence.regularity
        assert stated[i][:len(statement)] == statement
        generate_answers(model, formatter, [prompts[i] + decision_ids[decision] + statement], features[i:i + 1],
                         24 - len(statement))
        assert stated[i][len(statement):] == formatter.decoded[-1]
        assert regularity_grounded(formatter.decode(decision_ids[decision] + stated[i]), lang, evidence)
    assert not any(regularity_grounded(formatter.decode(decision_ids[d] + ids), lang, e)
                   for d, ids, e in zip(decisions, own, EVIDENCE))


def test_saving_from_a_gathered_state_writes_the_same_weights(model, tmp_path):
    """save_trainable from a whole state dict (what accelerate gathers from the processes of a sharded model) writes
    the same projector and adapter as from the model's own tensors."""
    from safetensors.torch import load_file

    model.save_trainable(tmp_path / "own")
    model.save_trainable(tmp_path / "gathered", {k: v.clone() for k, v in model.state_dict().items()})
    for name in ("projector.safetensors", "adapter/adapter_model.safetensors"):
        own, gathered = load_file(str(tmp_path / "own" / name)), load_file(str(tmp_path / "gathered" / name))
        assert own.keys() == gathered.keys() and len(own) > 0
        assert all(torch.equal(own[k], gathered[k]) for k in own)


def test_four_class_scores_are_a_softmax_over_the_four_sentences_and_answers_follow_the_decided_one(smoke_encoder):
    import dataclasses

    from ecgllm.llm.scoring import score_and_answer

    torch.manual_seed(0)
    model = ECGLLM.build(dataclasses.replace(LLM_PRESETS["smoke"][0], task="four"), smoke_encoder).eval()
    formatter = ChatFormatter(model.tokenizer, model.config)
    assert len(formatter.decision_ids()) == 4
    prompts = [formatter.prompt_ids(e) for e in EVIDENCE]
    features = model.projector_input(model.encode_ecg(torch.randn(3, 1, 2400)), EVIDENCE)
    scores = decision_scores(model, formatter, prompts, features)
    assert scores.shape == (3, 4)
    e = 1
    log_likelihood = []
    for sentence in formatter.decision_ids():  # reference: a plain forward pass over prompt + sentence
        ids = torch.tensor([prompts[e] + sentence])
        with torch.no_grad():
            logits = model(ids, torch.ones_like(ids), features[e:e + 1]).logits[0]
        log_probs = torch.log_softmax(logits[len(prompts[e]) - 1:-1], -1)
        log_likelihood.append(log_probs.gather(-1, torch.tensor(sentence)[:, None]).sum().item())
    expected = torch.log_softmax(torch.tensor(log_likelihood, dtype=torch.float64), 0).numpy()
    np.testing.assert_allclose(scores[e], expected, atol=1e-3)

    offsets = [0.0, 0.0, 50.0, 0.0]  # "another rhythm" wins whatever the model says
    again, decisions, continuations = score_and_answer(model, formatter, prompts, features, offsets, 8)
    np.testing.assert_allclose(again, scores, atol=1e-4)
    assert decisions == [2, 2, 2]
    scratch = generate_answers(model, formatter, [prompts[0] + formatter.decision_ids()[2]], features[:1], 8)[0]
    assert continuations[0] == scratch
