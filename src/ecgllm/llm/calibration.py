"""The decision threshold chosen on validation, stored beside the model's weights (never inside its config).

Evaluation writes it; diagnosis and the server read it. A model without one has not been validated: its decisions
are made at 0.5 and every result says so.
"""

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ecgllm.errors import CheckpointError

logger = logging.getLogger(__name__)

CALIBRATION_NAME = "calibration.json"
UNCALIBRATED_THRESHOLD = 0.5


@dataclass(frozen=True)
class Calibration:
    threshold: float  # on P(AF) from scoring: the model says AF at or above it
    chosen_on: str  # where it came from, e.g. "validation split, 579 records (74 AF), F1 maximised"

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CALIBRATION_NAME
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "Calibration | None":
        """The model folder's calibration, or None when it has none."""
        path = Path(folder) / CALIBRATION_NAME
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{path}: not a calibration file ({error})") from None


def decision_threshold(calibration: Calibration | None) -> float:
    return calibration.threshold if calibration is not None else UNCALIBRATED_THRESHOLD
