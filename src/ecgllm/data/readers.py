"""Reading a recording of any supported format into one lead in millivolts at its own sampling rate.

Formats: CinC 2017 `.mat` (`val`, with or without a WFDB header beside it), WFDB records (`.hea` with `.dat`/`.mat`
signal files), CSV (one column, or a named/numbered `lead`), and NumPy `.npy` (1-D, or 2-D leads x samples).
Files without a header carry no sampling rate or unit: `fs` must be given, and amplitudes are taken as millivolts
unless `gain` (units per mV) says otherwise. Whatever the format, values that cannot be millivolts are refused with
the reason (`records.validate_signal`).
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from ecgllm.configuration_utils import setting
from ecgllm.data.records import CINC_GAIN, MIN_RECORD_SECONDS, read_val, validate_signal
from ecgllm.errors import RecordError

SUPPORTED_SUFFIXES = (".mat", ".hea", ".dat", ".csv", ".npy")
MIN_FS, MAX_FS = 100.0, 10_000.0  # below 100 Hz QRS complexes are lost; above 10 kHz it is not an ECG file


@dataclass
class ReadSettings:
    """What files without a header cannot say (their sampling rate and unit), and which lead of several to read."""

    fs: float | None = setting(None, "sampling rate for files without a header")
    lead: str | None = setting(None, "lead name or index for multi-lead files")
    gain: float | None = setting(None, "units per mV for headerless files (default: values are mV)")


@dataclass
class Recording:
    name: str
    signal: np.ndarray  # [n] float32, millivolts
    fs: float
    lead: str
    source: str  # how it was read, including any assumption about units


def check_fs(path: Path, fs: float | None) -> float:
    if fs is None:
        raise RecordError(path, "no sampling rate: this format has no header, give fs (--fs)")
    if not MIN_FS <= fs <= MAX_FS:
        raise RecordError(path, f"sampling rate {fs:g} Hz is outside {MIN_FS:g}-{MAX_FS:g} Hz")
    return float(fs)


def _pick_lead(path: Path, leads: np.ndarray, names: list[str], lead: str | int | None) -> tuple[np.ndarray, str]:
    """leads [L, n] -> one lead, by name or index; several leads need an explicit choice."""
    if leads.shape[0] == 1 and lead is None:
        return leads[0], names[0]
    if lead is None:
        raise RecordError(path, f"{leads.shape[0]} leads ({', '.join(names)}): choose one with lead (--lead)")
    if isinstance(lead, str) and not lead.lstrip("-").isdigit():
        if lead not in names:
            raise RecordError(path, f"no lead {lead!r}; the file has {', '.join(names)}")
        index = names.index(lead)
    else:
        index = int(lead)
        if not 0 <= index < leads.shape[0]:
            raise RecordError(path, f"lead index {index} out of range 0-{leads.shape[0] - 1}")
    return leads[index], names[index]


def _read_wfdb(path: Path, lead) -> tuple[np.ndarray, float, str, str]:
    base = path.with_suffix("")
    try:
        record = wfdb.rdrecord(str(base))
    except Exception as error:  # wfdb raises many types for a broken or inconsistent record
        raise RecordError(path, f"unreadable WFDB record ({type(error).__name__}: {error})") from None
    if record.p_signal is None:
        raise RecordError(path, "WFDB record without physical signal")
    names = list(record.sig_name or [f"lead{i}" for i in range(record.n_sig)])
    signal, name = _pick_lead(path, record.p_signal.T, names, lead)
    unit = (record.units or ["mV"] * record.n_sig)[names.index(name)]
    scale = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}.get(unit.lower())
    if scale is None:
        raise RecordError(path, f"lead {name} is in {unit!r}; expected mV, uV or V")
    return signal * scale, float(record.fs), name, f"WFDB, {unit} from the header"


def _read_table(path: Path) -> tuple[np.ndarray, list[str]]:
    """CSV -> [L, n] and column names; an optional header line names the columns."""
    try:
        with path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(path, f"unreadable CSV ({error})") from None
    if not rows:
        raise RecordError(path, "empty CSV file")
    header = None
    try:
        float(rows[0][0])
    except ValueError:
        header, rows = [cell.strip() for cell in rows[0]], rows[1:]
    try:
        table = np.array([[float(cell) for cell in row] for row in rows], dtype=np.float64)
    except ValueError as error:
        raise RecordError(path, f"non-numeric value in CSV ({error})") from None
    if table.ndim != 2 or table.shape[0] == 0:
        raise RecordError(path, "CSV rows have different numbers of columns" if table.ndim != 2 else "no data rows")
    names = header if header and len(header) == table.shape[1] else [str(i) for i in range(table.shape[1])]
    return table.T, names


def _read_headerless_mat(path: Path, lead, gain: float | None) -> tuple[np.ndarray, str, str]:
    raw = np.atleast_2d(np.asarray(read_val(path), dtype=np.float64))
    signal, name = _pick_lead(path, raw, [str(i) for i in range(raw.shape[0])], lead)
    scale = gain if gain is not None else CINC_GAIN
    return signal / scale, name, f"CinC-style .mat without header: {scale:g} adu/mV assumed"


def _read_array(path: Path, lead, gain: float | None) -> tuple[np.ndarray, str, str]:
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            raise RecordError(path, "unreadable .npy file: not a NumPy array file (pickled objects are refused)"
                              ) from None
        if not np.issubdtype(array.dtype, np.number):
            raise RecordError(path, f"samples of type {array.dtype} are not numbers")
        array = np.atleast_2d(array.astype(np.float64))
        names = [str(i) for i in range(array.shape[0])]
    else:
        array, names = _read_table(path)
    signal, name = _pick_lead(path, array, names, lead)
    return signal / (gain or 1.0), name, f"{path.suffix[1:]}: " + (f"{gain:g} units per mV" if gain
                                                                    else "values taken as mV")


def read_recording(path: str | Path, fs: float | None = None, lead: str | int | None = None,
                   gain: float | None = None, min_seconds: float = MIN_RECORD_SECONDS) -> Recording:
    """One lead in millivolts, validated (finite, not flat, long enough); RecordError names the file and problem.

    A file with a WFDB header beside it (`.hea`, `.dat`, CinC `.mat`) is read through the header, which gives the
    sampling rate and the gain; `fs`, if given too, must agree with it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise RecordError(path, f"unknown file type {suffix or '(none)'!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if not path.is_file():
        raise RecordError(path, "file missing")
    if suffix in (".hea", ".dat", ".mat") and path.with_suffix(".hea").is_file():
        signal, file_fs, name, source = _read_wfdb(path, lead)
        if fs is not None and abs(fs - file_fs) > 1e-6:
            raise RecordError(path, f"fs {fs:g} Hz disagrees with the header's {file_fs:g} Hz")
        fs = file_fs
    elif suffix == ".mat":
        signal, name, source = _read_headerless_mat(path, lead, gain)
    elif suffix == ".dat":
        raise RecordError(path, "a WFDB .dat file needs its .hea header beside it")
    else:
        signal, name, source = _read_array(path, lead, gain)
    fs = check_fs(path, fs)
    signal = validate_signal(signal, fs, str(path), min_seconds, units=source)
    return Recording(path.stem, signal, fs, name, source)


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given; a folder becomes its recordings (one entry per WFDB record: its header)."""
    out = []
    for path in map(Path, paths):
        if not path.is_dir():
            out.append(path)
            continue
        for item in sorted(path.iterdir()):
            suffix = item.suffix.lower()
            if suffix == ".hea" or (suffix in (".mat", ".csv", ".npy") and not item.with_suffix(".hea").exists()):
                out.append(item)
    return out
