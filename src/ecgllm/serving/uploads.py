"""Request bodies -> recordings, run in the server's reader process.

Parsing a multipart form or a JSON array of samples and reading a recording file are CPU work in Python: on the event
loop they would stall every request, and in a thread they would still hold the interpreter lock that the event loop
needs. The server hands the raw body (already size-limited) to a separate process, which returns the recording in
millivolts or an `UploadRefused` with the status and the reason. It imports no model code (no torch): the process
stays small.
"""

import asyncio
import tempfile
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from ecgllm.data.readers import SUPPORTED_SUFFIXES, Recording, check_fs, read_recording
from ecgllm.data.records import validate_signal
from ecgllm.errors import RecordError


class UploadRefused(Exception):
    """Why a body is not a recording, with the HTTP status to answer (picklable across processes)."""

    def __init__(self, status: int, detail: str):
        super().__init__(status, detail)
        self.status, self.detail = status, detail


class SamplesRequest(BaseModel):
    samples: list[float] = Field(description="one lead, in millivolts unless `gain` is given")
    fs: float = Field(description="sampling rate in Hz (100-10000)")
    gain: float | None = Field(None, gt=0, description="units per mV, when the samples are not in mV")
    record: str = Field("recording", max_length=200)


def recording_from_json(body: bytes, min_seconds: float) -> Recording:
    try:
        request = SamplesRequest.model_validate_json(body)
    except ValueError as error:
        raise UploadRefused(422, f"invalid JSON body: {error}") from None
    units = f"JSON samples, {request.gain:g} units per mV" if request.gain else "JSON samples taken as mV"
    try:
        fs = check_fs(Path(request.record), request.fs)
        signal = validate_signal(np.asarray(request.samples, dtype=np.float64), fs, request.record,
                                 min_seconds, request.gain or 1.0, units)
    except RecordError as error:
        raise UploadRefused(422, str(error)) from None
    return Recording(request.record, signal, fs, "0", units)


async def _parse_form(body: bytes, content_type: str):
    """Starlette's own multipart parser (and its limits) on a body already received."""
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode("latin-1"))]}
    try:
        return await Request(scope, receive).form(max_files=4, max_fields=8)
    except MultiPartException as error:
        raise UploadRefused(422, f"malformed upload: {error.message}") from None


def _text_field(form, name: str) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise UploadRefused(422, f"field {name!r} must be text, not a file")
    return value or None


def _number_field(form, name: str) -> float | None:
    value = _text_field(form, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise UploadRefused(422, f"field {name!r} must be a number, got {value[:50]!r}") from None


def _save_files(form, folder: Path) -> Path:
    """The uploaded files (one recording; WFDB may come as .hea + .dat) written to `folder`; the one to read."""
    files = [value for _, value in form.multi_items() if not isinstance(value, str)]
    if not files:
        raise UploadRefused(422, "no file in the upload (multipart field `file`)")
    saved = []
    for upload in files:
        name = Path(upload.filename or "").name
        suffix = Path(name).suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            raise UploadRefused(415, f"{name or '(no name)'}: unsupported file type {suffix or '(none)'!r}; "
                                     f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
        upload.file.seek(0)
        data = upload.file.read()
        if not data:
            raise UploadRefused(422, f"{name}: empty file")
        (folder / name).write_bytes(data)
        saved.append(folder / name)
    headers = [p for p in saved if p.suffix.lower() == ".hea"]
    if len(headers) > 1 or (not headers and len(saved) > 1):
        raise UploadRefused(422, "upload one recording at a time (a WFDB record as its .hea with its signal file)")
    return headers[0] if headers else saved[0]


def recording_from_form(body: bytes, content_type: str, min_seconds: float) -> Recording:
    form = asyncio.run(_parse_form(body, content_type))
    fs, lead, gain = _number_field(form, "fs"), _text_field(form, "lead"), _number_field(form, "gain")
    with tempfile.TemporaryDirectory() as folder:
        main_file = _save_files(form, Path(folder))
        try:
            return read_recording(main_file, fs, lead, gain, min_seconds=min_seconds)
        except RecordError as error:
            raise UploadRefused(422, f"{main_file.name}: {error.reason}") from None


def ready() -> bool:
    """A no-op the server runs once at start, so that the reader process has imported all this before a request."""
    return True
