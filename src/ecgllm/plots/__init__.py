"""Pictures: the ECG on standard paper with beats and per-window P(AF), RR tachogram and Poincaré plot, and the
figures of a run's report. Drawn with matplotlib's object API (a `Figure` per picture, no pyplot state), so that
threads can draw at the same time; files and byte streams only, no display is needed or assumed."""

from pathlib import Path
from typing import BinaryIO

from matplotlib.figure import Figure


def new_figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in))


def save_png(fig: Figure, target: str | Path | BinaryIO, dpi: int = 120):
    """PNG into a file (returned as a Path) or an open binary stream (returned as it is)."""
    target = Path(target) if isinstance(target, str) else target
    fig.savefig(target, dpi=dpi, format="png")
    return target
