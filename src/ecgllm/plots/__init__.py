"""Pictures: the ECG on standard paper with beats and per-window P(AF), RR tachogram and Poincaré plot, and the
figures of a run's report. Files and byte streams only: no display is needed or assumed."""

from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_png(fig, target: str | Path | BinaryIO, dpi: int = 120):
    """PNG into a file (returned as a Path) or an open binary stream (returned as it is); the figure is closed."""
    target = Path(target) if isinstance(target, str) else target
    fig.savefig(target, dpi=dpi, format="png")
    plt.close(fig)
    return target
