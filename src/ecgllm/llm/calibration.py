"""The decision threshold chosen on validation, stored beside the model's weights (never inside its config).

Decisions are made on the log-odds of the two decision sentences, log p(AF sentence) - log p(normal sentence), and
the threshold is stored on that scale: a confident model's gaps of tens of nats stay distinct (as probabilities they
would all round to 1.0), so a threshold is always finite and nothing divides by zero. P(AF) = sigmoid(log-odds) is
only shown. Evaluation writes the calibration; diagnosis and the server read it. A model without one has not been
validated: its decisions are made at log-odds 0 (P(AF) 0.5) and every result says so.

A four-class model decides the class whose log P plus that class's offset is highest (`evaluation.four_class`); its
calibration holds those offsets (uncalibrated: all 0, the most likely sentence).
"""

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit

from ecgllm.errors import CheckpointError

logger = logging.getLogger(__name__)

CALIBRATION_NAME = "calibration.json"
UNCALIBRATED_LOG_ODDS = 0.0  # P(AF) 0.5


def af_probability(log_odds):
    """P(AF) from log-odds, for showing (float64: it reads 1.0 only past ~37 nats)."""
    return expit(np.asarray(log_odds, dtype=np.float64))


def log_odds_of(probability: float) -> float:
    """The log-odds of a probability threshold written by an earlier version, kept finite at 0 and 1."""
    p = min(max(float(probability), 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class Calibration:
    log_odds: float  # the model says AF when log p(AF sentence) - log p(normal sentence) >= this
    chosen_on: str  # where it came from, e.g. "validation split, 579 records (74 AF), F1 maximised"
    class_offsets: tuple[float, ...] | None = None  # four-class models: added to log P of each class

    @property
    def p_af(self) -> float:
        return float(af_probability(self.log_odds))

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CALIBRATION_NAME
        path.write_text(json.dumps({**asdict(self), "p_af": self.p_af}, indent=2))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "Calibration | None":
        """The model folder's calibration, or None when it has none. A file of an earlier version held the threshold
        on P(AF) (`threshold`); it is read as its log-odds."""
        path = Path(folder) / CALIBRATION_NAME
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            if "threshold" in raw:
                return cls(log_odds_of(raw["threshold"]), raw["chosen_on"])
            offsets = raw.get("class_offsets")
            return cls(float(raw["log_odds"]), raw["chosen_on"],
                       None if offsets is None else tuple(float(v) for v in offsets))
        except (ValueError, TypeError, KeyError) as error:
            raise CheckpointError(f"{path}: not a calibration file ({type(error).__name__}: {error})") from None


def decision_log_odds(calibration: Calibration | None) -> float:
    return calibration.log_odds if calibration is not None else UNCALIBRATED_LOG_ODDS


def decision_rule(calibration: Calibration | None, classes: int):
    """What `scoring.decide_scores` decides with: the log-odds threshold (2 classes) or the per-class offsets."""
    if classes == 2:
        return decision_log_odds(calibration)
    if calibration is None or calibration.class_offsets is None:
        return (0.0,) * classes
    return calibration.class_offsets
