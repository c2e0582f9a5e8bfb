"""Pictures of a recording: a size that depends on duration only, and drawing from several threads at once."""

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ecgllm.plots.ecg import MAX_STRIP_SECONDS, plot_ecg_strip, plot_rr

FS = 250.0


def ecg(seconds: float, amplitude_mv: float = 1.2) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    return np.sin(2 * np.pi * 1.2 * t) ** 63 * amplitude_mv


def strip_png(signal: np.ndarray) -> bytes:
    out = io.BytesIO()
    plot_ecg_strip(signal, FS, out, r_peaks_s=[0.2, 1.0], title="x")
    return out.getvalue()


def size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def test_strip_size_depends_on_duration_only():
    normal, wild = strip_png(ecg(30)), strip_png(ecg(30, amplitude_mv=28.0))
    assert size(normal) == size(wild)
    longest = strip_png(ecg(MAX_STRIP_SECONDS))
    assert size(strip_png(ecg(600))) == size(longest)  # ten minutes draw the first two
    assert size(longest)[1] > size(normal)[1]


def test_pictures_drawn_in_parallel_threads_equal_sequential_ones():
    signals = [ecg(30, amplitude_mv=a) for a in (0.8, 1.2, 2.0, 5.0)]
    sequential = [strip_png(s) for s in signals]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(strip_png, signals * 2))
    assert parallel == sequential * 2
    rr = io.BytesIO()
    plot_rr(np.cumsum(np.full(20, 0.8)), rr)
    assert size(rr.getvalue())[0] > 600
