"""The stratified train/validation/test split, saved as record ids and reused by every stage; or one fold of k, so
that k runs test every record once."""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from ecgllm.data.labels import task_labels
from ecgllm.errors import DataFolderError, SettingError

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Split:
    task: str
    seed: int
    fractions: tuple[float, float, float]
    train: list[str]
    val: list[str]
    test: list[str]
    labels: dict[str, int]  # record id -> class index, for every id above
    fold: int | None = None  # with `folds`: the test set is this fold (0-based) of a stratified k-fold partition
    folds: int | None = None

    def ids(self, name: str) -> list[str]:
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; choose one of {SPLIT_NAMES}")
        return getattr(self, name)

    def summary(self) -> str:
        """Records per part and class, e.g. "test 869 (N 758, A 111)"."""
        classes = task_labels(self.task)
        parts = []
        for name in SPLIT_NAMES:
            ids = self.ids(name)
            counts = ", ".join(f"{c} {sum(self.labels[i] == k for i in ids)}" for k, c in enumerate(classes))
            parts.append(f"{name} {len(ids)} ({counts})")
        return ", ".join(parts)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            raw["fractions"] = tuple(raw["fractions"])
            return cls(**raw)
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise DataFolderError(f"{path}: not a split file written by `ecgllm data split` ({error})") from None

    def require_task(self, task: str, user: str) -> None:
        """Refuse a split of another task (e.g. a four-class split given to a binary trainer)."""
        if self.task != task:
            raise SettingError(f"{user} is trained on the {task} task, but this split is of the {self.task!r} task; "
                               f"make one with `ecgllm data split --task {task}`")

    def check_against(self, labels: dict[str, int]) -> None:
        """Fail loudly if the data no longer holds the records and labels this split was made from."""
        missing = [i for i in self.labels if i not in labels]
        changed = [i for i in self.labels if i in labels and labels[i] != self.labels[i]]
        if missing or changed:
            raise DataFolderError(
                f"the split does not match the data: {len(missing)} records missing (e.g. {missing[:3]}), "
                f"{len(changed)} with another label (e.g. {changed[:3]}); make a new split")


def make_split(labels: dict[str, int], task: str, seed: int = 42,
               fractions: tuple[float, float, float] = (0.75, 0.10, 0.15)) -> Split:
    """Stratified split; sizes are rounded up for test and validation (5788 -> 4340/579/869).

    The four-class task keeps the binary task's split inside it: its N and A records (classes 0 and 1 in both tasks)
    get exactly the partitions the binary split of the same seed gives them, so the binary test set sits unchanged in
    the four-class one; the O and ~ records are split on their own, stratified, with the same seed and fractions."""
    if not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions {fractions} do not sum to 1")
    if task == "four":
        parts = [_stratified({i: c for i, c in labels.items() if c in (0, 1)}, seed, fractions),
                 _stratified({i: c for i, c in labels.items() if c not in (0, 1)}, seed, fractions)]
        train, val, test = (sum((list(part[k]) for part in parts), []) for k in range(3))
    else:
        train, val, test = _stratified(labels, seed, fractions)
    return Split(task=task, seed=seed, fractions=tuple(fractions), train=sorted(train), val=sorted(val),
                 test=sorted(test), labels={i: labels[i] for i in sorted(labels)})


def _stratified(labels: dict[str, int], seed: int, fractions: tuple[float, float, float]
                ) -> tuple[list[str], list[str], list[str]]:
    if not labels:
        return [], [], []
    ids = sorted(labels)
    y = [labels[i] for i in ids]
    n_test = math.ceil(fractions[2] * len(ids))
    n_val = math.ceil(fractions[1] * len(ids))
    rest, test = train_test_split(ids, test_size=n_test, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, stratify=[labels[i] for i in rest], random_state=seed)
    return train, val, test


def make_fold_split(labels: dict[str, int], task: str, folds: int, fold: int, seed: int = 42,
                    val_fraction: float = 0.10) -> Split:
    """Fold `fold` of a stratified `folds`-fold partition as the test set; validation (`val_fraction` of all records,
    rounded up) and training from the rest. The `folds` splits of one seed test every record exactly once."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold {fold} is not one of 0-{folds - 1}")
    ids = sorted(labels)
    y = [labels[i] for i in ids]
    _, test_index = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(ids, y))[fold]
    test = [ids[i] for i in test_index]
    held = set(test)
    rest = [i for i in ids if i not in held]
    train, val = train_test_split(rest, test_size=math.ceil(val_fraction * len(ids)),
                                  stratify=[labels[i] for i in rest], random_state=seed)
    n = len(ids)
    return Split(task=task, seed=seed, fractions=(len(train) / n, len(val) / n, len(test) / n), train=sorted(train),
                 val=sorted(val), test=sorted(test), labels={i: labels[i] for i in ids}, fold=fold, folds=folds)


def subset_ids(split: Split, name: str, max_records: int | None, seed: int) -> list[str]:
    """The split's ids, or a stratified sample of `max_records` of them for smoke runs: at least two of every class
    but the largest, which fills the rest."""
    ids = split.ids(name)
    if max_records is None or len(ids) <= max_records:
        return ids
    rng = np.random.default_rng(seed)
    by_class = {c: [i for i in ids if split.labels[i] == c] for c in sorted({split.labels[i] for i in ids})}
    largest = max(by_class, key=lambda c: len(by_class[c]))
    picked = []
    for c, members in by_class.items():
        if c != largest:
            n = max(2, round(max_records * len(members) / len(ids)))
            picked += list(rng.choice(members, min(n, len(members)), replace=False))
    picked += list(rng.choice(by_class[largest], max(0, max_records - len(picked)), replace=False))
    return sorted(picked)
