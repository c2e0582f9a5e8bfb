"""`ecgllm serve`: the HTTP API and the page, on FastAPI.

The model is loaded once. Nothing slow runs on the event loop: bodies are received under a size limit as they stream
(chunked or not), then parsed, checked and read into recordings in a reader process (`uploads.py`), so that neither
the loop nor its interpreter lock waits on them. Requests that arrive together are gathered for a
few milliseconds and diagnosed as one batch by a single model thread (the model runs once for all of them; a bad
recording fails alone). At most `max_waiting` requests may be in the service (queued, diagnosed or being drawn)
before the server answers 503. Pictures are drawn in the thread pool within that limit; one that fails is left out
with a note, and the diagnosis is kept. Every failure is a JSON `{"detail": ...}` with a 4xx status that says what
was wrong; an unexpected error is logged here and answered with a bare 500, never a stack trace.
"""

import asyncio
import base64
import logging
import multiprocessing
import queue
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ecgllm import __version__
from ecgllm.data.labels import task_labels
from ecgllm.data.preprocess import MIN_DIAGNOSIS_SECONDS
from ecgllm.data.readers import Recording
from ecgllm.errors import RecordError
from ecgllm.examples import example_records
from ecgllm.inference.batch import diagnosis_pictures
from ecgllm.inference.diagnose import Diagnoser, Diagnosis
from ecgllm.llm.calibration import af_probability, decision_rule
from ecgllm.serving import uploads

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and fields around the uploaded file(s)


@dataclass
class ServeLimits:
    max_upload_bytes: int = 20 * 1024 * 1024  # a 10-min recording at 1 kHz as CSV text is about 8 MB
    max_seconds: float = 600.0  # 10 min: longer recordings belong to `ecgllm diagnose`, not to a request
    max_samples: int = 600_000  # 10 min at 1 kHz
    max_waiting: int = 32
    max_batch: int = 16  # recordings diagnosed together
    batch_wait_s: float = 0.05  # how long the first request of a batch waits for others (uploads read one by one)


def _error(status: int, detail) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


class BodyLimit:
    """ASGI middleware: a body larger than `limit` bytes is refused (413) as it streams, whether it declares its
    length or comes chunked, before the application has held more than `limit` bytes of it."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    def _too_large(self) -> str:
        return f"request body larger than {self.limit // (1024 * 1024)} MB"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await JSONResponse({"detail": self._too_large()}, status_code=413)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _error(413, self._too_large())
            return message

        await self.app(scope, limited_receive, send)


class RecordingReader:
    """The reader process: turns request bodies into recordings away from the event loop; a crashed one (e.g. out of
    memory) is replaced, and its request answered 422."""

    def __init__(self):
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        # spawn, not fork: a forked copy of a process running torch threads can deadlock
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._pool.submit(uploads.ready)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    async def read(self, function, *args) -> Recording:
        if self._pool is None:
            self.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        except uploads.UploadRefused as refused:
            raise _error(refused.status, refused.detail) from None
        except BrokenProcessPool:
            logger.error("the reader process failed; starting a new one")
            self.stop()
            raise _error(422, "the recording could not be read (the reader process failed on it)") from None


@dataclass
class _Job:
    signal: np.ndarray
    fs: float
    record: str
    done: Future


class DiagnosisService:
    """The loaded model behind one thread that diagnoses waiting requests in batches, with a bounded number of
    requests in the service."""

    def __init__(self, model, limits: ServeLimits):
        self.model = model
        self.limits = limits
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._slots = threading.BoundedSemaphore(limits.max_waiting)
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.counts = {"recordings": 0, "batches": 0}  # diagnosed so far, for /healthz

    def check_size(self, n_samples: int, fs: float, record: str) -> None:
        seconds = n_samples / fs
        if seconds > self.limits.max_seconds:
            raise _error(413, f"{record}: {seconds:.0f} s is longer than this server accepts "
                              f"({self.limits.max_seconds:.0f} s); use `ecgllm diagnose` for long recordings")
        if n_samples > self.limits.max_samples:
            raise _error(413, f"{record}: {n_samples} samples; at most {self.limits.max_samples}")

    @asynccontextmanager
    async def slot(self):
        """A place in the service for one request (its diagnosis and pictures), or 503 when all are taken."""
        if not self._slots.acquire(blocking=False):
            raise _error(503, "the server is busy; try again shortly")
        try:
            yield
        finally:
            self._slots.release()

    async def diagnose(self, signal: np.ndarray, fs: float, record: str) -> Diagnosis:
        self.check_size(len(signal), fs, record)
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve_batches, name="ecgllm-model", daemon=True)
                self._worker.start()
        job = _Job(signal, fs, record, Future())
        self._jobs.put(job)
        outcome = await asyncio.wrap_future(job.done)
        if isinstance(outcome, RecordError):
            raise _error(422, str(outcome))
        return outcome

    def _serve_batches(self) -> None:
        diagnoser = None
        while True:
            batch = [self._jobs.get()]
            try:
                while len(batch) < self.limits.max_batch:
                    batch.append(self._jobs.get(timeout=self.limits.batch_wait_s))
            except queue.Empty:
                pass
            try:
                diagnoser = diagnoser or Diagnoser(self.model, self.limits.max_batch)
                started = time.perf_counter()
                outcomes = diagnoser.diagnose_many([(job.signal, job.fs, job.record) for job in batch])
                logger.info("diagnosed a batch of %d in %.2f s", len(batch), time.perf_counter() - started)
                self.counts = {"recordings": self.counts["recordings"] + len(batch),
                               "batches": self.counts["batches"] + 1}
            except Exception as error:  # the model failed: every request of the batch hears of it
                logger.exception("diagnosing a batch of %d failed", len(batch))
                outcomes = [error] * len(batch)
            for job, outcome in zip(batch, outcomes):
                if isinstance(outcome, Exception) and not isinstance(outcome, RecordError):
                    job.done.set_exception(outcome)
                else:
                    job.done.set_result(outcome)


def _pictures(result: Diagnosis, signal: np.ndarray, fs: float) -> dict:
    """The PNGs as base64, or a note saying why there are none: a picture never costs the diagnosis."""
    try:
        return {f"{name}_png": base64.b64encode(png).decode()
                for name, png in diagnosis_pictures(result, signal, fs).items()}
    except Exception as error:
        logger.exception("drawing the pictures of %s failed", result.record)
        return {"note": f"the pictures could not be drawn ({type(error).__name__}); the diagnosis stands"}


def create_app(model, limits: ServeLimits | None = None) -> FastAPI:
    """The app around an already loaded ECGLLM."""
    limits = limits or ServeLimits()
    service = DiagnosisService(model, limits)
    reader = RecordingReader()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        reader.start()
        yield
        reader.stop()

    app = FastAPI(title="ECG-LLM", version=__version__, lifespan=lifespan,
                  description="Screens a single-lead ECG for atrial fibrillation and explains the answer. "
                              "Results have the schema of `ecgllm diagnose --json` (one `diagnosis`).")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, limit=limits.max_upload_bytes + MULTIPART_OVERHEAD)
    examples = example_records()

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
        rule = decision_rule(model.calibration, len(task_labels(config.task)))
        binary = config.task == "binary"
        return {"status": "ok", "model_loaded": True, "version": __version__, "lm": config.lm, "lang": config.lang,
                "ecg_input": config.ecg_input, "task": config.task, "outcomes": list(task_labels(config.task)),
                "threshold": float(af_probability(rule)) if binary else None,
                "threshold_log_odds": rule if binary else None, "class_offsets": None if binary else list(rule),
                "calibrated": model.calibration is not None, "diagnosed": service.counts,
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
        "application/json": {"schema": uploads.SamplesRequest.model_json_schema()}}}})
    async def diagnose_endpoint(request: Request, pictures: bool = Query(False, description="add strip and RR PNGs "
                                                                                               "(base64)")) -> dict:
        """Diagnose one recording: a multipart upload, or JSON samples with their sampling rate."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            recording = await reader.read(uploads.recording_from_json, await request.body(), MIN_DIAGNOSIS_SECONDS)
        elif content_type.startswith("multipart/form-data"):
            recording = await reader.read(uploads.recording_from_form, await request.body(), content_type,
                                          MIN_DIAGNOSIS_SECONDS)
        else:
            raise _error(415, "send multipart/form-data with a `file`, or application/json with `samples` and `fs`")
        async with service.slot():
            result = await service.diagnose(recording.signal, recording.fs, recording.name)
            out = result.to_dict()
            if pictures:
                out["pictures"] = await run_in_threadpool(_pictures, result, recording.signal, recording.fs)
        return out

    return app
