"""An ECG strip on standard paper (25 mm/s, 10 mm/mV), and the RR tachogram with its Poincaré plot.

A strip's size depends on the recording's duration only: each row shows a fixed band of amplitudes around the
baseline (samples beyond it are clipped to its edge and marked in red) and at most the first two minutes are drawn,
so a recording of wild amplitudes or great length cannot make a huge picture."""

from pathlib import Path
from typing import BinaryIO

import numpy as np

from ecgllm.plots import new_figure, save_png

PAPER_SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
MM_PER_INCH = 25.4
SECONDS_PER_ROW = 10.0
BAND_MV = (-2.0, 3.0)  # the amplitudes shown, relative to the baseline (the median): 50 mm per row
MAX_STRIP_SECONDS = 120.0


def _paper_grid(ax, seconds: float, low_mv: float, high_mv: float) -> None:
    """1 mm minor and 5 mm major squares: 0.04 s / 0.1 mV and 0.2 s / 0.5 mV. Drawn as two line collections (one
    artist each), not as ticks: a 10-s row has 250 minor verticals."""
    for step_s, step_mv, colour, width in ((0.04, 0.1, "#f6d5d5", 0.3), (0.2, 0.5, "#e8a0a0", 0.6)):
        ax.vlines(np.arange(0, seconds + 1e-9, step_s), low_mv, high_mv, colors=colour, linewidth=width, zorder=0)
        ax.hlines(np.arange(np.ceil(low_mv / step_mv) * step_mv, high_mv + 1e-9, step_mv), 0, seconds, colors=colour,
                  linewidth=width, zorder=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("#fff7f7")


def plot_ecg_strip(signal: np.ndarray, fs: float, path: str | Path | BinaryIO, r_peaks_s=(), windows=(),
                   threshold: float | None = None, title: str = "", window_scorer: str = "llm"):
    """`signal` in mV; rows of 10 s at true paper scale; R peaks marked; each window's P(AF) shaded under it."""
    seconds = len(signal) / fs
    shown_seconds = min(seconds, MAX_STRIP_SECONDS)
    rows = max(1, int(np.ceil(shown_seconds / SECONDS_PER_ROW)))
    baseline = float(np.median(signal))
    low, high = baseline + BAND_MV[0], baseline + BAND_MV[1]
    clipped = (signal < low) | (signal > high)
    signal = np.clip(signal, low, high)
    row_height_in = (high - low) * GAIN_MM_MV / MM_PER_INCH + 0.35
    width_in = SECONDS_PER_ROW * PAPER_SPEED_MM_S / MM_PER_INCH
    fig = new_figure(width_in, rows * row_height_in + 0.4)
    axes = fig.subplots(rows, 1, squeeze=False)
    t = np.arange(len(signal)) / fs
    peaks = np.asarray(r_peaks_s, dtype=float)
    for row, ax in enumerate(axes[:, 0]):
        start, stop = row * SECONDS_PER_ROW, min((row + 1) * SECONDS_PER_ROW, shown_seconds)
        _paper_grid(ax, SECONDS_PER_ROW, low, high)
        # Windows overlap; each is drawn from its start to the next one's, so the bar partitions the time axis.
        for n, window in enumerate(windows):
            end = windows[n + 1]["start_s"] if n + 1 < len(windows) else window["end_s"]
            a, b = max(window["start_s"], start), min(end, stop)
            if a < b:
                af = threshold is not None and window["p_af"] >= threshold
                ax.axvspan(a - start, b - start, ymin=0, ymax=0.08, color="#d62728" if af else "#2ca02c",
                           alpha=0.25 + 0.5 * window["p_af"], linewidth=0)
        inside = (t >= start) & (t < stop)
        ax.plot(t[inside] - start, signal[inside], color="black", linewidth=0.7)
        if clipped[inside].any():
            ax.plot(t[inside & clipped] - start, signal[inside & clipped], "|", color="#d62728", markersize=4)
        marked = peaks[(peaks >= start) & (peaks < stop)]
        if len(marked):
            ax.plot(marked - start, signal[np.minimum((marked * fs).astype(int), len(signal) - 1)] + 0.12, "v",
                    color="#1f77b4", markersize=3)
        ax.set_xlim(0, SECONDS_PER_ROW)
        ax.set_ylim(low, high)
        ax.set_aspect(GAIN_MM_MV / PAPER_SPEED_MM_S)  # 1 s = 25 mm, 1 mV = 10 mm
        ax.text(0.05, high - 0.15, f"{start:.0f} s", fontsize=6, color="#555555", va="top")
    scorer = "encoder" if window_scorer == "encoder" else "LLM"
    span = f"{windows[0]['end_s'] - windows[0]['start_s']:g}-s " if windows else ""
    legend = f"25 mm/s, 10 mm/mV; ▼ R peaks; bar: P(AF) per {span}window ({scorer})"
    if threshold is not None:
        legend += f" (red: ≥ threshold {threshold:.2f})"
    if clipped[:int(shown_seconds * fs)].any():
        legend += f"; red ticks: clipped beyond {BAND_MV[0]:+g}/{BAND_MV[1]:+g} mV of the baseline"
    if shown_seconds < seconds:
        legend += f"; first {shown_seconds:.0f} s of {seconds:.0f} s"
    fig.suptitle(f"{title}   {legend}" if title else legend, fontsize=7)
    fig.tight_layout(pad=0.3)
    return save_png(fig, path, 150)


def plot_rr(r_peaks_s, path: str | Path | BinaryIO, title: str = ""):
    """RR tachogram (RR against time) beside the Poincaré plot (RR n+1 against RR n)."""
    peaks = np.asarray(r_peaks_s, dtype=float)
    rr_ms = np.diff(peaks) * 1000.0
    fig = new_figure(8, 3.2)
    tachogram, poincare = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    tachogram.plot(peaks[1:], rr_ms, "o-", markersize=2.5, linewidth=0.8)
    tachogram.set_xlabel("time (s)")
    tachogram.set_ylabel("RR interval (ms)")
    tachogram.set_title("RR tachogram", fontsize=9)
    if len(rr_ms) > 1:
        poincare.scatter(rr_ms[:-1], rr_ms[1:], s=8, alpha=0.7)
        lims = [rr_ms.min() * 0.9, rr_ms.max() * 1.1]
        poincare.plot(lims, lims, color="#888888", linewidth=0.6)
        poincare.set_xlim(lims)
        poincare.set_ylim(lims)
    poincare.set_xlabel("RR n (ms)")
    poincare.set_ylabel("RR n+1 (ms)")
    poincare.set_title("Poincaré plot", fontsize=9)
    poincare.set_aspect("equal", adjustable="box")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, 120)
