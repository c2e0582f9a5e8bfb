"""Instruction examples and their batches: prompt tokens masked with -100, real pad token, correct attention mask."""

from dataclasses import dataclass
from pathlib import Path

import torch

from ecgllm.data.dataset import CinCDataset
from ecgllm.llm.chat import ChatFormatter
from ecgllm.llm.features import cached_features, cached_rhythm
from ecgllm.rhythm import RhythmEvidence

IGNORE_INDEX = -100


@dataclass
class Example:
    record: str
    label: int
    features: torch.Tensor  # [k, D(+R)(+1)]: the projector's input (ECGLLM.projector_input)
    evidence: RhythmEvidence
    prompt_ids: list[int]
    answer_ids: list[int]


def build_examples(model, ids: list[str], labels: dict[str, int], tokens: torch.Tensor,
                   rhythms: list[RhythmEvidence], verdicts: torch.Tensor | None = None) -> list[Example]:
    """Examples of the records `ids` for an ECGLLM, from their ECG tokens [N, k, D] and measured rhythms (and the
    verdicts [N] or [N, 4] to use instead of the encoder's own)."""
    formatter = ChatFormatter(model.tokenizer, model.config)
    inputs = model.projector_input(tokens, rhythms, verdicts)
    return [Example(record=i, label=labels[i], features=inputs[n], evidence=rhythm,
                    prompt_ids=formatter.prompt_ids(rhythm), answer_ids=formatter.answer_ids(labels[i], rhythm))
            for n, (i, rhythm) in enumerate(zip(ids, rhythms))]


def prepare_examples(model, dataset: CinCDataset, ids: list[str], cache_dir: Path, progress: bool = True,
                     verdicts: dict[str, float | list[float]] | None = None) -> list[Example]:
    """Examples of `ids` for an ECGLLM, from the feature and rhythm caches (filled on first use); `verdicts` (AF
    logits, or a four-class encoder's class logits, by record) replace the encoder's own at the projector's input."""
    features = cached_features(model.encoder, model.config.encoder_fingerprint, dataset, ids, model.config.ecg_tokens,
                               cache_dir, model.config.ecg_input, progress)
    rhythms = cached_rhythm(dataset, ids, cache_dir, progress)
    given = None if verdicts is None else torch.tensor([verdicts[i] for i in ids])
    return build_examples(model, ids, dataset.labels, torch.stack([features[i] for i in ids]),
                          [rhythms[i] for i in ids], given)


def pad(sequences: list[list[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """-> ids [B, T] and attention mask [B, T]."""
    length = max(map(len, sequences))
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        span = slice(0, len(sequence)) if side == "right" else slice(length - len(sequence), length)
        ids[row, span] = torch.tensor(sequence, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


class TrainingCollator:
    """Right-padded prompt+answer; labels only on answer tokens (built from positions, not from the pad id,
    since pad can equal end-of-turn). With `noise_std` [D(+R)(+1)], Gaussian noise of that scale is added to the
    projector's input of every example, afresh at each draw. With `branch_positions`, the answer tokens at
    `branch_positions[label]` (where the example's decision sentence parts from the others) weigh `decision_weight`
    in the loss, every other answer token 1."""

    def __init__(self, pad_id: int, noise_std: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 branch_positions: list[list[int]] | None = None, decision_weight: float = 1.0):
        self.pad_id = pad_id
        self.noise_std = noise_std
        self.generator = generator
        self.branch_positions = branch_positions
        self.decision_weight = decision_weight

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad([e.prompt_ids + e.answer_ids for e in examples], self.pad_id)
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for row, e in enumerate(examples):
            start = len(e.prompt_ids)
            labels[row, start:start + len(e.answer_ids)] = torch.tensor(e.answer_ids)
        features = torch.stack([e.features for e in examples])  # [B, k, D(+R)(+1)]
        if self.noise_std is not None:
            features = features + self.noise_std * torch.randn(features.shape, generator=self.generator)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "ecg_features": features}
        if self.branch_positions is not None:
            weights = torch.ones(labels.shape)
            for row, e in enumerate(examples):
                weights[row, [len(e.prompt_ids) + j for j in self.branch_positions[e.label]]] = self.decision_weight
            batch["label_weights"] = weights
        return batch
