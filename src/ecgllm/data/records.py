"""One ECG record: reading a CinC 2017 `.mat` (+ WFDB header) and validating the signal.

The `.mat` is authoritative for the samples; the header beside it gives the sampling rate and the gain
(CinC 2017: 300 Hz, 1000 adu/mV). Signals are returned in millivolts.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import wfdb

from ecgllm.errors import RecordError

CINC_FS = 300.0
CINC_GAIN = 1000.0  # adu per mV
MIN_RECORD_SECONDS = 2.0  # the shortest training or evaluation record (CinC 2017 has none shorter than 9 s)
FLAT_PEAK_TO_PEAK_MV = 0.01  # 10 µV: below the noise floor of any real ECG front end
# No surface ECG spans more than a few mV (CinC 2017's 8528 records: at most 14 mV, artefacts included); 30 leaves
# room for artefacts, while raw ADC counts or microvolts read as millivolts span hundreds or thousands.
MAX_PEAK_TO_PEAK_MV = 30.0
MAX_MAT_VALUES = 20_000_000  # a day of one lead at 200 Hz; a larger MATLAB variable is not one recording


@dataclass
class ECGRecord:
    name: str
    signal: np.ndarray  # [n] float32, millivolts
    fs: float

    @property
    def seconds(self) -> float:
        return len(self.signal) / self.fs


def validate_signal(signal: np.ndarray, fs: float, name: str, min_seconds: float = MIN_RECORD_SECONDS,
                    gain: float = 1.0, units: str = "values taken as mV") -> np.ndarray:
    """Return `signal / gain` (millivolts) as a 1-D float32 array, or raise RecordError saying what is wrong. Every
    input path (files of each format, JSON samples, the training data) passes here, so one rule decides what is a
    plausible ECG in millivolts; `units` says how the samples were turned into millivolts, for the error."""
    signal = np.asarray(signal)
    if signal.ndim == 2 and 1 in signal.shape:
        signal = signal.reshape(-1)
    if signal.ndim != 1:
        raise RecordError(name, f"multi-lead or malformed array of shape {signal.shape}; expected one lead (1, n)")
    if not np.issubdtype(signal.dtype, np.number):
        raise RecordError(name, f"samples of type {signal.dtype} are not numbers")
    n_bad = int(np.size(signal) - np.count_nonzero(np.isfinite(signal)))
    if n_bad:
        raise RecordError(name, f"{n_bad} non-finite samples (NaN or inf)")
    seconds = len(signal) / fs
    if seconds < min_seconds:
        raise RecordError(name, f"too short: {seconds:.2f} s ({len(signal)} samples at {fs:g} Hz); "
                                f"at least {min_seconds:g} s needed")
    signal = (signal / gain).astype(np.float32)
    peak_to_peak = float(np.ptp(signal))
    if peak_to_peak < FLAT_PEAK_TO_PEAK_MV:
        raise RecordError(name, f"flat line: peak-to-peak {peak_to_peak * 1000:.1f} µV")
    if peak_to_peak > MAX_PEAK_TO_PEAK_MV:
        raise RecordError(name, f"amplitudes span {peak_to_peak:.0f} mV ({units}), not a plausible ECG (at most "
                                f"{MAX_PEAK_TO_PEAK_MV:g} mV); the values look like raw ADC counts or microvolts: "
                                f"give the gain in units per mV (gain, --gain)")
    return signal


def _read_header(mat_path: Path) -> tuple[float, float]:
    """Sampling rate and gain from the WFDB header beside the `.mat`; CinC defaults when there is none."""
    header_path = mat_path.with_suffix(".hea")
    if not header_path.exists():
        return CINC_FS, CINC_GAIN
    try:
        header = wfdb.rdheader(str(header_path.with_suffix("")))
    except Exception as error:  # wfdb raises many types for a broken header
        raise RecordError(mat_path, f"unreadable WFDB header {header_path.name}: {error}") from None
    if header.n_sig != 1:
        raise RecordError(mat_path, f"header {header_path.name} describes {header.n_sig} signals; expected one lead")
    gain = float(header.adc_gain[0]) if header.adc_gain and header.adc_gain[0] else CINC_GAIN
    return float(header.fs), gain


def load_cinc_record(mat_path: str | Path, min_seconds: float = MIN_RECORD_SECONDS) -> ECGRecord:
    """Read one CinC 2017 record (`AXXXXX.mat` holding `val`, int16, (1, n)); raise RecordError if unusable."""
    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise RecordError(mat_path, "file missing")
    fs, gain = _read_header(mat_path)
    signal = validate_signal(read_val(mat_path), fs, str(mat_path), min_seconds, gain, f"{gain:g} adu/mV")
    return ECGRecord(name=mat_path.stem, signal=signal, fs=fs)


def read_val(mat_path: Path) -> np.ndarray:
    """The raw `val` array of a CinC-style MATLAB file; RecordError if the file is not one. The variables' shapes are
    read from their headers first, so a (compressed) variable too big for one recording is refused before anything is
    decompressed, and other variables are skipped unread."""
    try:
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(str(mat_path))}
        if "val" not in shapes:
            found = ", ".join(sorted(shapes)) or "nothing"
            raise RecordError(mat_path, f"no variable 'val' in the file (found: {found})")
        n_values = int(np.prod(shapes["val"], dtype=np.int64))
        if n_values > MAX_MAT_VALUES:
            raise RecordError(mat_path, f"variable 'val' of shape {shapes['val']} holds {n_values} values, more than "
                                        f"{MAX_MAT_VALUES} (one recording)")
        return scipy.io.loadmat(str(mat_path), variable_names=["val"])["val"]
    except RecordError:
        raise
    except Exception as error:  # scipy raises ValueError, TypeError, OSError... for non-MAT bytes
        raise RecordError(mat_path, f"unreadable: not a MATLAB file ({type(error).__name__}: {error})") from None
