"""Diagnose one recording: resample, measure the rhythm, score every 8-s window, aggregate, and write the answer.

Aggregation: the mean of the windows' P(AF) (the encoder config's `aggregate`), compared with the model's threshold
chosen on validation; a model trained on whole-record tokens (`ecg_input="whole"`) scores the record's averaged
tokens instead. The answer's decision sentence is the one the model scores higher at that threshold; the rest of the
answer (the evidence sentence) is generated greedily after it, from the window closest to the record's P(AF) (or the
averaged tokens).
"""

from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np
import torch
from scipy.signal import resample_poly

from ecgllm.data.preprocess import aggregate_windows, sliding_windows, window_starts, zscore
from ecgllm.errors import RecordError
from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.inference import generate_answers, score_af
from ecgllm.llm.modeling_ecgllm import ECGLLM, pool_ecg_tokens
from ecgllm.llm.prompts import DECISION, numbers_grounded
from ecgllm.rhythm import detect_r_peaks, rr_statistics

MIN_SECONDS = 8.0  # one full encoder window: shorter inputs would be zero-padded, which the encoder never saw


@dataclass
class WindowResult:
    start_s: float
    end_s: float
    p_af: float


@dataclass
class Diagnosis:
    record: str
    seconds: float
    fs_input: float
    fs_model: float
    p_af: float
    threshold: float
    af: bool
    answer: str
    lang: str
    numbers_grounded: bool
    rhythm: dict  # measured figures, as written in prompt and answer
    aggregation: str
    windows: list[WindowResult] = field(default_factory=list)
    r_peaks_s: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def resample(signal: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Polyphase resampling by the nearest small rational factor."""
    if abs(fs - target_fs) < 1e-6:
        return signal.astype(np.float32)
    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator).astype(np.float32)


@torch.no_grad()
def diagnose(model: ECGLLM, signal: np.ndarray, fs: float, record: str = "recording", batch_size: int = 16,
             max_new_tokens: int = 48) -> Diagnosis:
    """`signal` in millivolts at `fs` Hz (any length of at least MIN_SECONDS)."""
    seconds = len(signal) / fs
    if seconds < MIN_SECONDS:
        raise RecordError(record, f"too short to diagnose: {seconds:.1f} s; at least {MIN_SECONDS:g} s "
                                  f"(one full window of the encoder)")
    pre = model.encoder.config.preprocess
    signal = resample(signal, fs, pre.fs)
    peaks = detect_r_peaks(signal, pre.fs)
    evidence = rr_statistics(np.diff(peaks) / pre.fs * 1000.0, len(peaks))

    windows = torch.from_numpy(sliding_windows(zscore(signal), pre.window, pre.stride)).unsqueeze(1)
    tokens = torch.cat([pool_ecg_tokens(model.encoder.feature_map(windows[i:i + batch_size]), model.config.ecg_tokens)
                        for i in range(0, len(windows), batch_size)])
    formatter = ChatFormatter(model.tokenizer, model.config)
    prompt = formatter.prompt_ids(evidence)
    p_windows = np.concatenate([score_af(model, formatter, [prompt] * len(tokens[i:i + batch_size]),
                                         tokens[i:i + batch_size]) for i in range(0, len(tokens), batch_size)])
    if model.config.ecg_input == "whole":  # trained on tokens averaged over the record: score those
        record_tokens = tokens.mean(0, keepdim=True)
        p_af, aggregation = float(score_af(model, formatter, [prompt], record_tokens)[0]), "tokens"
    else:  # the window closest to the record's P(AF) speaks for it
        p_af, aggregation = aggregate_windows(p_windows, pre.aggregate), pre.aggregate
        representative = int(np.argmin(np.abs(p_windows - p_af)))
        record_tokens = tokens[representative:representative + 1]
    af = p_af >= model.config.threshold

    decision = DECISION[model.config.lang][int(af)]
    decision_ids = formatter.tokenizer(decision, add_special_tokens=False)["input_ids"]
    continuation = generate_answers(model, formatter, [prompt + decision_ids], record_tokens, max_new_tokens)[0]
    answer = (decision + continuation) if model.config.lang == "zh" else f"{decision} {continuation}".strip()
    starts = window_starts(len(signal), pre.window, pre.stride)
    return Diagnosis(
        record=record, seconds=round(seconds, 2), fs_input=float(fs), fs_model=float(pre.fs), p_af=float(p_af),
        threshold=float(model.config.threshold), af=bool(af), answer=answer, lang=model.config.lang,
        numbers_grounded=numbers_grounded(answer, evidence, model.config.lang) if model.config.evidence else True,
        rhythm=evidence.formatted(), aggregation=aggregation,
        windows=[WindowResult(round(s / pre.fs, 2), round(min(s + pre.window, len(signal)) / pre.fs, 2), float(p))
                 for s, p in zip(starts, p_windows)],
        r_peaks_s=[round(p / pre.fs, 3) for p in peaks])
