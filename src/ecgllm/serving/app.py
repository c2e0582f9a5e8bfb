"""`ecgllm serve`: the HTTP API and the page, on FastAPI.

The model is loaded once. Requests are read and checked in the server's thread pool; the model itself runs one
request at a time behind a lock (torch already uses every core for one request), and at most `max_waiting` requests
may wait for it before the server answers 503. Every failure is a JSON `{"detail": ...}` with a 4xx status that says
what was wrong; an unexpected error is logged here and answered with a bare 500, never a stack trace.
"""

import base64
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException

from ecgllm import __version__
from ecgllm.data.readers import SUPPORTED_SUFFIXES, check_fs, read_recording
from ecgllm.data.records import validate_signal
from ecgllm.errors import RecordError
from ecgllm.examples import example_records
from ecgllm.inference.batch import diagnosis_pictures
from ecgllm.inference.diagnose import MIN_DIAGNOSIS_SECONDS, Diagnoser, Diagnosis
from ecgllm.llm.calibration import decision_threshold

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


@dataclass
class ServeLimits:
    max_upload_bytes: int = 20 * 1024 * 1024  # a 10-min recording at 1 kHz as CSV text is about 8 MB
    max_seconds: float = 600.0  # 10 min: longer recordings belong to `ecgllm diagnose`, not to a request
    max_samples: int = 600_000  # 10 min at 1 kHz
    max_waiting: int = 32


class SamplesRequest(BaseModel):
    samples: list[float] = Field(description="one lead, in millivolts unless `gain` is given")
    fs: float = Field(description="sampling rate in Hz (100-10000)")
    gain: float | None = Field(None, gt=0, description="units per mV, when the samples are not in mV")
    record: str = Field("recording", max_length=200)


def _error(status: int, detail) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


class DiagnosisService:
    """The loaded model behind a lock, with a bounded number of requests waiting for it."""

    def __init__(self, model, limits: ServeLimits):
        self.model = model
        self.limits = limits
        self._diagnoser: Diagnoser | None = None  # made by the first request, inside the lock
        self._lock = threading.Lock()
        self._waiting = threading.BoundedSemaphore(limits.max_waiting + 1)

    def check_size(self, n_samples: int, fs: float, record: str) -> None:
        seconds = n_samples / fs
        if seconds > self.limits.max_seconds:
            raise _error(413, f"{record}: {seconds:.0f} s is longer than this server accepts "
                              f"({self.limits.max_seconds:.0f} s); use `ecgllm diagnose` for long recordings")
        if n_samples > self.limits.max_samples:
            raise _error(413, f"{record}: {n_samples} samples; at most {self.limits.max_samples}")

    def run(self, signal: np.ndarray, fs: float, record: str) -> Diagnosis:
        self.check_size(len(signal), fs, record)
        if not self._waiting.acquire(blocking=False):
            raise _error(503, "the server is busy; try again shortly")
        try:
            with self._lock:
                self._diagnoser = self._diagnoser or Diagnoser(self.model)
                return self._diagnoser(signal, fs, record)
        except RecordError as error:
            raise _error(422, str(error)) from None
        finally:
            self._waiting.release()


def _pictures(result: Diagnosis, signal: np.ndarray, fs: float) -> dict:
    return {f"{name}_png": base64.b64encode(png).decode()
            for name, png in diagnosis_pictures(result, signal, fs).items()}


async def _save_uploads(form, folder: Path, limit: int) -> list[Path]:
    """Write the uploaded files (one recording; WFDB may come as .hea + .dat) into `folder`, refusing big ones."""
    files = [value for _, value in form.multi_items() if hasattr(value, "filename") and hasattr(value, "read")]
    if not files:
        raise _error(422, "no file in the upload (multipart field `file`)")
    saved, total = [], 0
    for upload in files:
        name = Path(upload.filename or "").name
        suffix = Path(name).suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            raise _error(415, f"{name or '(no name)'}: unsupported file type {suffix or '(none)'!r}; supported: "
                              f"{', '.join(SUPPORTED_SUFFIXES)}")
        path = folder / name
        with path.open("wb") as handle:
            while chunk := await upload.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise _error(413, f"{name}: upload larger than {limit // (1024 * 1024)} MB")
                handle.write(chunk)
        if path.stat().st_size == 0:
            raise _error(422, f"{name}: empty file")
        saved.append(path)
    return saved


def _pick_main_file(paths: list[Path]) -> Path:
    headers = [p for p in paths if p.suffix.lower() == ".hea"]
    if len(headers) > 1 or (not headers and len(paths) > 1):
        raise _error(422, "upload one recording at a time (a WFDB record as its .hea with its signal file)")
    return headers[0] if headers else paths[0]


def _optional_float(form, name: str) -> float | None:
    value = form.get(name)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise _error(422, f"field {name!r} must be a number, got {value!r}") from None


def create_app(model, limits: ServeLimits | None = None) -> FastAPI:
    """The app around an already loaded ECGLLM."""
    limits = limits or ServeLimits()
    service = DiagnosisService(model, limits)
    app = FastAPI(title="ECG-LLM", version=__version__,
                  description="Screens a single-lead ECG for atrial fibrillation and explains the answer. "
                              "Results have the schema of `ecgllm diagnose --json` (one `diagnosis`).")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    examples = example_records()

    @app.middleware("http")
    async def refuse_big_bodies(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_upload_bytes + 64 * 1024:
            return JSONResponse({"detail": f"request body of {int(length) // (1024 * 1024)} MB is larger than "
                                           f"{limits.max_upload_bytes // (1024 * 1024)} MB"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    def healthz() -> dict:
        """Whether the model is loaded, and which."""
        config = model.config
        return {"status": "ok", "model_loaded": True, "version": __version__, "lm": config.lm, "lang": config.lang,
                "ecg_input": config.ecg_input, "threshold": decision_threshold(model.calibration),
                "calibrated": model.calibration is not None,
                "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_seconds": limits.max_seconds,
                           "max_samples": limits.max_samples}}

    @app.get("/v1/examples")
    def list_examples() -> list[dict]:
        """Bundled CinC 2017 records (ODC-By) to try the service with: a .mat and its WFDB header each."""
        return [{"name": name, "label": e["label"], "files": [f"/v1/examples/{name}.hea", f"/v1/examples/{name}.mat"]}
                for name, e in examples.items()]

    @app.get("/v1/examples/{filename}", response_class=FileResponse)
    def get_example(filename: str):
        name, suffix = Path(filename).stem, Path(filename).suffix
        if name not in examples or suffix not in (".mat", ".hea"):
            raise _error(404, f"no example file {filename!r}; there are {', '.join(examples)} (.mat and .hea)")
        return FileResponse(examples[name]["path"].with_suffix(suffix), filename=filename)

    @app.post("/v1/diagnose", openapi_extra={"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": "a recording (.mat, .hea+.dat, .csv, .npy)"},
            "fs": {"type": "number"}, "lead": {"type": "string"}, "gain": {"type": "number"}}}},
        "application/json": {"schema": SamplesRequest.model_json_schema()}}}})
    async def diagnose_endpoint(request: Request, pictures: bool = Query(False, description="add strip and RR PNGs "
                                                                                               "(base64)")) -> dict:
        """Diagnose one recording: a multipart upload, or JSON samples with their sampling rate."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            try:
                body = SamplesRequest.model_validate_json(await request.body())
            except ValueError as error:
                raise _error(422, f"invalid JSON body: {error}") from None
            try:
                fs = check_fs(Path(body.record), body.fs)
                service.check_size(len(body.samples), fs, body.record)
                signal = validate_signal(np.asarray(body.samples, dtype=np.float64), fs, body.record,
                                         MIN_DIAGNOSIS_SECONDS, body.gain or 1.0,
                                         f"JSON samples, {body.gain:g} units per mV" if body.gain
                                         else "JSON samples taken as mV")
            except RecordError as error:
                raise _error(422, str(error)) from None
            record = body.record
        elif content_type.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=4, max_fields=8)
            except MultiPartException as error:
                raise _error(422, f"malformed upload: {error.message}") from None
            with tempfile.TemporaryDirectory() as folder:
                main_file = _pick_main_file(await _save_uploads(form, Path(folder), limits.max_upload_bytes))
                lead = form.get("lead") or None
                try:
                    recording = read_recording(main_file, _optional_float(form, "fs"), lead,
                                               _optional_float(form, "gain"), min_seconds=MIN_DIAGNOSIS_SECONDS)
                except RecordError as error:
                    raise _error(422, f"{main_file.name}: {error.reason}") from None
            service.check_size(len(recording.signal), recording.fs, main_file.name)
            signal, fs, record = recording.signal, recording.fs, recording.name
        else:
            raise _error(415, "send multipart/form-data with a `file`, or application/json with `samples` and `fs`")
        result = await run_in_threadpool(service.run, signal, fs, record)
        out = result.to_dict()
        if pictures:
            out["pictures"] = await run_in_threadpool(_pictures, result, signal, fs)
        return out

    return app
