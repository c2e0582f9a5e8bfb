"""Errors that name the file and the problem, so a batch can report them and go on."""

from pathlib import Path


class ECGLLMError(Exception):
    """Base of the errors the command line reports as one line, without a traceback."""


class RecordError(ECGLLMError, ValueError):
    """A record that cannot be used. `reason` is short enough for a one-line report."""

    def __init__(self, record: str | Path, reason: str):
        self.record = str(record)
        self.reason = reason
        super().__init__(f"{self.record}: {reason}")


class DataFolderError(ECGLLMError, ValueError):
    """A data folder that cannot be used at all (no labels, no usable record)."""


class CheckpointError(ECGLLMError, ValueError):
    """A model folder that is missing parts or does not fit what it is loaded into."""


class DownloadError(ECGLLMError, RuntimeError):
    """A download that failed, came back truncated, or does not match its checksum."""


class SettingError(ECGLLMError, ValueError):
    """A setting that this machine or this model cannot honour (e.g. a CUDA device on a CPU-only machine)."""
