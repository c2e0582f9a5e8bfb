"""A CinC 2017 folder loaded into memory: usable records, their labels, and the reasons for the others.

The whole binary task is ~200 MB of float32 and loads in seconds, so every stage works from memory.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ecgllm.data.labels import task_labels
from ecgllm.data.preprocess import resample
from ecgllm.data.records import ECGRecord, load_cinc_record
from ecgllm.data.reference import read_reference
from ecgllm.errors import DataFolderError, RecordError

logger = logging.getLogger(__name__)


@dataclass
class CinCDataset:
    root: Path
    task: str
    records: dict[str, ECGRecord]  # usable records of the task's classes
    labels: dict[str, int]  # record id -> class index in task_labels(task)
    problems: dict[str, str] = field(default_factory=dict)  # record id -> why it was skipped
    excluded: Counter = field(default_factory=Counter)  # label -> records left out by the task
    unlisted: list[str] = field(default_factory=list)  # .mat files without a REFERENCE.csv line

    @property
    def classes(self) -> tuple[str, ...]:
        return task_labels(self.task)

    def signals(self, ids: list[str], fs: float) -> list[np.ndarray]:
        """The records' signals at `fs` Hz (an encoder's rate: what it was trained on), resampled where it differs."""
        return [resample(self.records[i].signal, self.records[i].fs, fs) for i in ids]

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.labels.values())
        return {label: counts[index] for index, label in enumerate(self.classes)}

    def report(self) -> str:
        lines = [f"{self.root}: {len(self.records)} usable records ({self.task} task: "
                 + ", ".join(f"{label} {count}" for label, count in self.class_counts().items()) + ")"]
        if self.excluded:
            lines.append("left out by the task: " + ", ".join(f"{k} {v}" for k, v in sorted(self.excluded.items())))
        lines.append(f"{len(self.problems)} bad records" + (":" if self.problems else ""))
        lines += [f"  {name}: {reason}" for name, reason in sorted(self.problems.items())]
        if self.unlisted:
            lines.append(f"{len(self.unlisted)} .mat files not listed in REFERENCE.csv (ignored): "
                         + ", ".join(self.unlisted[:10]) + (" ..." if len(self.unlisted) > 10 else ""))
        return "\n".join(lines)


def load_cinc_folder(root: str | Path, task: str = "binary", progress: bool = True) -> CinCDataset:
    """Load every record of `task` listed in `root/REFERENCE.csv`; bad records are logged and listed, not zeroed."""
    root = Path(root)
    if not root.is_dir():
        raise DataFolderError(f"{root}: no such data folder")
    classes = task_labels(task)
    reference = read_reference(root / "REFERENCE.csv")
    dataset = CinCDataset(root=root, task=task, records={}, labels={}, problems=dict(reference.problems))
    for name, label in tqdm(reference.labels.items(), desc=f"loading {root.name}", unit="rec", disable=not progress):
        if label not in classes:
            dataset.excluded[label] += 1
            continue
        try:
            dataset.records[name] = load_cinc_record(root / f"{name}.mat")
        except RecordError as error:
            dataset.problems[name] = error.reason
            logger.warning("skipping %s", error)
            continue
        dataset.labels[name] = classes.index(label)
    dataset.unlisted = sorted(p.stem for p in root.glob("*.mat") if p.stem not in reference.labels)
    if not dataset.records:
        raise DataFolderError(f"{root}: no usable record of classes {', '.join(classes)}\n{dataset.report()}")
    return dataset


def check_folder(root: str | Path, progress: bool = True) -> CinCDataset:
    """Load every record of all four classes: what `ecgllm data check` reports."""
    return load_cinc_folder(root, task="four", progress=progress)
