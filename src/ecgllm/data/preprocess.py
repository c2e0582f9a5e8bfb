"""Preprocessing of the SPEC: z-score, crop/pad to a fixed window; sliding windows over a whole record; augmentation."""

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from ecgllm.configuration_utils import check_range, setting
from ecgllm.data.readers import MAX_FS

MODES = ("center", "whole")  # one centre crop per record (the original protocol), or its sliding windows
# The shortest recording diagnosed: one window of a 300 Hz encoder, shorter inputs would be mostly padding. An encoder
# whose windows are longer pads records down to this length, so its training cuts short crops down to it as well.
MIN_DIAGNOSIS_SECONDS = 8.0
# An encoder may read a coarser rate than a recording is accepted at (readers.MIN_FS): P and fibrillatory waves lie
# below 25 Hz, and the RR figures are measured at 300 Hz (rhythm.RHYTHM_FS) whatever the encoder reads.
MIN_ENCODER_FS = 50.0


@dataclass
class PreprocessConfig:
    fs: float = setting(300.0, "the encoder's sampling rate in Hz: inputs are resampled to it, so its windows span "
                               "window / fs seconds (8 s at 300 Hz)")
    window: int = setting(2400, "samples per encoder input (2400: 8 s at 300 Hz); its cost grows with the window")
    stride: int = 1200  # whole-record mode: step between windows (4 s: half overlap)
    aggregate: str = "mean"  # whole-record mode: how window probabilities become one

    def __post_init__(self):
        check_range("fs", self.fs, MIN_ENCODER_FS, MAX_FS)
        check_range("window", self.window, 1)


@dataclass
class AugmentConfig:
    enabled: bool = True
    noise_std: float = 0.05  # Gaussian noise, in units of the record's standard deviation
    time_scale: tuple[float, float] = (0.9, 1.1)
    short_crop: float = setting(0.0, "share of training crops cut to a random length between the shortest record "
                                     "diagnosed (8 s) and all of it, the rest zero-padded as a short record's window "
                                     "is at inference, so that padding tells nothing of the class")

    def __post_init__(self):
        check_range("short_crop", self.short_crop, 0.0, 1.0)


def zscore(signal: np.ndarray) -> np.ndarray:
    """Normalise a whole record; validated records are never flat, so std > 0."""
    signal = np.asarray(signal, dtype=np.float32)
    return (signal - signal.mean()) / signal.std()


def crop_or_pad(signal: np.ndarray, length: int, mode: str = "center", rng: np.random.Generator | None = None
                ) -> np.ndarray:
    """Cut `length` samples (centre or random start); pad shorter signals at the end with zeros, the mean after
    z-score."""
    n = len(signal)
    if n < length:
        return np.pad(signal, (0, length - n))
    if mode == "center":
        start = (n - length) // 2
    elif mode == "random":
        start = int((rng or np.random.default_rng()).integers(0, n - length + 1))
    else:
        raise ValueError(f"unknown crop mode {mode!r}; choose 'center' or 'random'")
    return signal[start:start + length]


def window_starts(n: int, window: int, stride: int) -> list[int]:
    """Window starts that cover the whole record; the last window ends at the last sample."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] != n - window:
        starts.append(n - window)
    return starts


def sliding_windows(signal: np.ndarray, window: int, stride: int) -> np.ndarray:
    """[n] -> [W, window]; a record shorter than the window gives one zero-padded window."""
    return np.stack([crop_or_pad(signal[s:s + window], window) for s in window_starts(len(signal), window, stride)])


def augment_crop(signal: np.ndarray, window: int, config: AugmentConfig, rng: np.random.Generator, shortest: int
                 ) -> np.ndarray:
    """Random crop with time scaling (a crop of window*scale samples resampled to `window`), Gaussian noise and, for a
    `short_crop` share, a random cut to at least `shortest` samples (MIN_DIAGNOSIS_SECONDS at the encoder's rate); what
    is left short is zero-padded at the end, as `sliding_windows` pads a short record at inference (a record shorter
    than the crop is scaled, never stretched to fill the window)."""
    if not config.enabled:
        return crop_or_pad(signal, window, "random", rng)
    scale = rng.uniform(*config.time_scale)
    full_span = int(round(window * scale))
    span = min(len(signal), full_span)
    length = window if span == full_span else min(window, int(round(span / scale)))
    crop = crop_or_pad(signal, span, "random", rng)
    crop = np.interp(np.linspace(0, span - 1, length), np.arange(span), crop).astype(np.float32)
    if config.noise_std > 0:
        crop = crop + rng.normal(0, config.noise_std, length).astype(np.float32)
    # Drawn only when asked for, so presets without short crops keep their random streams.
    if config.short_crop > 0 and rng.random() < config.short_crop and length > shortest:
        crop = crop[:rng.integers(shortest, length + 1)]
    return crop_or_pad(crop, window)


def aggregate_windows(probabilities: np.ndarray, method: str):
    """A record's windows' probabilities [W] (or [W, C]) -> the record's (a float, or [C])."""
    if method == "mean":
        return np.mean(probabilities, axis=0)
    if method == "max":
        return np.max(probabilities, axis=0)
    raise ValueError(f"unknown aggregation {method!r}; choose 'mean' or 'max'")


def record_windows(signals: list[np.ndarray], mode: str, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-score each record and cut its windows; returns windows [N, window] and each window's record index [N]."""
    if mode not in MODES:
        raise ValueError(f"unknown evaluation mode {mode!r}; choose one of {MODES}")
    pieces, owners = [], []
    for index, signal in enumerate(signals):
        normalised = zscore(signal)
        if mode == "center":
            windows = crop_or_pad(normalised, window)[None]
        else:
            windows = sliding_windows(normalised, window, stride)
        pieces.append(windows)
        owners.append(np.full(len(windows), index))
    return np.concatenate(pieces), np.concatenate(owners)


def resample(signal: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Polyphase resampling by the nearest small rational factor."""
    if abs(fs - target_fs) < 1e-6:
        return signal.astype(np.float32, copy=False)
    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator).astype(np.float32)
