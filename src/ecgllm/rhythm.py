"""Rhythm evidence measured on the whole record: R peaks by neurokit2, then RR-interval statistics that work on
short recordings (CV of RR, RMSSD, pRR31, Poincaré SD1/SD2).

Values are rounded once, here, to the precision they are written with, so "the number the model cites equals the
measured one" has a single meaning: string equality with `RhythmEvidence.formatted()`.
"""

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ecgllm.data.preprocess import resample

# R peaks are found at CinC 2017's rate, where the LLM learnt its RR figures, whatever rate a recording or an encoder
# has: the same recording gives the same figures in training, diagnosis and external validation.
RHYTHM_FS = 300.0
MIN_BEATS = 4  # three RR intervals: the least from which a variability figure means anything
# RR coefficient of variation from which the intervals are called irregular. Stated, not fitted to any test set: on
# the binary split's 4340 training records, 96 % of AF records lie at or above it and 62 % of normal ones below (normal
# CinC records carry ectopic beats and missed detections: a sinus rhythm can be measurably irregular).
IRREGULAR_RR_CV = 0.10
RHYTHM_FEATURES = 7  # length of RhythmEvidence.as_vector()


@dataclass(frozen=True)
class RhythmEvidence:
    n_beats: int
    heart_rate_bpm: int | None = None
    rr_cv: float | None = None  # standard deviation / mean of RR, 2 decimals
    rmssd_ms: int | None = None
    prr31: float | None = None  # share of successive RR differences above 31 ms, 2 decimals
    sd1_ms: int | None = None
    sd2_ms: int | None = None

    @property
    def measurable(self) -> bool:
        return self.heart_rate_bpm is not None

    @property
    def regularity(self) -> str:
        """What the RR figures show, whatever the rhythm's label: "regular", "irregular" or "not measurable"."""
        if not self.measurable:
            return "not measurable"
        return "irregular" if self.rr_cv >= IRREGULAR_RR_CV else "regular"

    def formatted(self) -> dict[str, str]:
        """The figures exactly as the prompt and the answer write them."""
        if not self.measurable:
            return {"n_beats": str(self.n_beats)}
        return {"heart_rate_bpm": str(self.heart_rate_bpm), "n_beats": str(self.n_beats),
                "rr_cv": f"{self.rr_cv:.2f}", "rmssd_ms": str(self.rmssd_ms), "prr31": f"{self.prr31:.2f}",
                "sd1_ms": str(self.sd1_ms), "sd2_ms": str(self.sd2_ms)}

    def as_vector(self) -> list[float]:
        """The written figures as a network input, each scaled to about unit range around a normal resting rhythm
        (logarithms keep artefact-driven extremes from dominating); zeros and a flag when nothing was measurable."""
        if not self.measurable:
            return [0.0] * (RHYTHM_FEATURES - 1) + [1.0]
        scaled = [3.0 * np.log(self.heart_rate_bpm / 75.0), np.log1p(self.rr_cv / 0.05), np.log1p(self.rmssd_ms / 50.0),
                  self.prr31, np.log1p(self.sd1_ms / 50.0), np.log1p(self.sd2_ms / 50.0), 0.0]
        return [float(v) for v in scaled]

    def to_dict(self) -> dict:
        return asdict(self)


def detect_r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of R peaks (neurokit2's default cleaning and detector)."""
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurokit2 warns on short or noisy records; a missing beat shows in n_beats
        cleaned = nk.ecg_clean(signal, sampling_rate=int(round(fs)))
        _, info = nk.ecg_peaks(cleaned, sampling_rate=int(round(fs)))
    return np.asarray(info["ECG_R_Peaks"], dtype=int)


def rr_statistics(rr_ms: np.ndarray, n_beats: int) -> RhythmEvidence:
    """RhythmEvidence from RR intervals in milliseconds."""
    if n_beats < MIN_BEATS:
        return RhythmEvidence(n_beats=n_beats)
    successive = np.diff(rr_ms)
    sd_rr, sd_successive = rr_ms.std(ddof=1), successive.std(ddof=1)
    return RhythmEvidence(
        n_beats=n_beats,
        heart_rate_bpm=int(round(60000.0 / rr_ms.mean())),
        rr_cv=round(float(sd_rr / rr_ms.mean()), 2),
        rmssd_ms=int(round(float(np.sqrt(np.mean(successive ** 2))))),
        prr31=round(float(np.mean(np.abs(successive) > 31.0)), 2),
        # Poincaré plot of RR(n+1) against RR(n): spread across (SD1) and along (SD2) the identity line.
        sd1_ms=int(round(float(np.sqrt(0.5) * sd_successive))),
        sd2_ms=int(round(float(np.sqrt(max(0.0, 2 * sd_rr ** 2 - 0.5 * sd_successive ** 2))))),
    )


def r_peak_times(signal: np.ndarray, fs: float) -> np.ndarray:
    """R-peak times in seconds, detected at RHYTHM_FS."""
    return detect_r_peaks(resample(signal, fs, RHYTHM_FS), RHYTHM_FS) / RHYTHM_FS


def rr_evidence(peak_times_s: np.ndarray) -> RhythmEvidence:
    """RhythmEvidence of R peaks at these times (seconds)."""
    return rr_statistics(np.diff(peak_times_s) * 1000.0, len(peak_times_s))


def measure_rhythm(signal: np.ndarray, fs: float) -> RhythmEvidence:
    return rr_evidence(r_peak_times(signal, fs))
