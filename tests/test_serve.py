"""`ecgllm serve`: a real uvicorn server on a loopback port, requests over HTTP, and the page in headless Chromium."""

import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
import uvicorn

from ecgllm.examples import example_records
from ecgllm.inference import diagnose as diagnose_module
from ecgllm.llm.modeling_ecgllm import ECGLLM
from ecgllm.llm.prompts import DECISION
from ecgllm.runs.layout import resolve_model_dir
from ecgllm.serving.app import ServeLimits, create_app

EXAMPLES = example_records()
SCHEMA = json.loads((Path(diagnose_module.__file__).parent / "diagnosis.schema.json").read_text())
DIAGNOSIS_SCHEMA = {**SCHEMA["$defs"]["diagnosis"], "$defs": SCHEMA["$defs"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def model(smoke_run):
    return ECGLLM.from_pretrained(resolve_model_dir(smoke_run))


@pytest.fixture(scope="module")
def server(model):
    port = free_port()
    app = create_app(model, ServeLimits(max_upload_bytes=10 * 1024 * 1024, max_seconds=600))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def post_file(url: str, name: str, content: bytes, **fields) -> httpx.Response:
    return httpx.post(f"{url}/v1/diagnose", files={"file": (name, content)}, data=fields, timeout=120)


def test_health_docs_and_openapi(server):
    health = httpx.get(f"{server}/healthz").json()
    assert health["status"] == "ok" and health["model_loaded"] and 0 < health["threshold"] < 1
    assert httpx.get(f"{server}/docs").status_code == 200
    body = httpx.get(f"{server}/openapi.json").json()["paths"]["/v1/diagnose"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)


def test_upload_json_and_wfdb_give_the_same_diagnosis(server):
    path = EXAMPLES["A00027"]["path"]
    uploaded = post_file(server, "A00027.mat", path.read_bytes(), fs="300")  # no header: fs given
    assert uploaded.status_code == 200, uploaded.text
    result = uploaded.json()
    jsonschema.validate(result, DIAGNOSIS_SCHEMA)
    assert result["record"] == "A00027" and result["af"] == (result["log_odds"] >= result["threshold_log_odds"])

    from ecgllm.data.readers import read_recording

    samples = read_recording(path).signal.tolist()
    as_json = httpx.post(f"{server}/v1/diagnose", json={"samples": samples, "fs": 300, "record": "A00027"},
                         timeout=120)
    assert as_json.status_code == 200 and as_json.json()["p_af"] == pytest.approx(result["p_af"], abs=1e-5)
    wfdb = httpx.post(f"{server}/v1/diagnose?pictures=true", timeout=120, files=[
        ("file", ("A00027.hea", path.with_suffix(".hea").read_bytes())), ("file", ("A00027.mat", path.read_bytes()))])
    assert wfdb.status_code == 200 and wfdb.json()["p_af"] == pytest.approx(result["p_af"], abs=1e-5)
    assert set(wfdb.json()["pictures"]) == {"strip_png", "rr_png"}


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("case, status, message", [
    ("empty", 422, "empty file"),
    ("huge", 413, "larger than"),
    ("text_as_mat", 422, "A00001.mat"),
    ("unknown_type", 415, "unsupported file type"),
    ("nan_samples", 422, "NaN"),
    ("fs_zero", 422, "sampling rate 0"),
    ("two_hours", 413, "longer than this server accepts"),
    ("not_a_number_fs", 422, "must be a number"),
])
def test_bad_requests_are_clear_4xx_and_the_server_goes_on(server, case, status, message):
    if case == "empty":
        response = post_file(server, "A00001.mat", b"")
    elif case == "huge":
        response = post_file(server, "big.npy", bytes(100 * 1024 * 1024))
    elif case == "text_as_mat":
        response = post_file(server, "A00001.mat", b"this is not a MATLAB file\n" * 50)
    elif case == "unknown_type":
        response = post_file(server, "notes.txt", b"hello")
    elif case == "nan_samples":
        samples = [0.1] * 3000
        samples[100] = float("nan")
        response = httpx.post(f"{server}/v1/diagnose", content=json.dumps({"samples": samples, "fs": 300}),
                              headers={"content-type": "application/json"}, timeout=60)
    elif case == "fs_zero":
        response = httpx.post(f"{server}/v1/diagnose", json={"samples": [0.1, 0.2] * 2000, "fs": 0}, timeout=60)
    elif case == "two_hours":
        signal = np.sin(np.arange(2 * 3600 * 100) / 10).astype(np.float32)  # 2 h at 100 Hz, 2.9 MB
        response = post_file(server, "long.npy", npy_bytes(signal), fs="100")
    else:
        response = post_file(server, "x.npy", npy_bytes(np.zeros(3000, np.float32)), fs="fast")
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert message in (detail if isinstance(detail, str) else json.dumps(detail))
    assert "Traceback" not in response.text
    assert httpx.get(f"{server}/healthz").status_code == 200


def test_concurrent_requests_are_diagnosed_in_batches(server):
    before = httpx.get(f"{server}/healthz").json()["diagnosed"]
    content = EXAMPLES["A00006"]["path"].read_bytes()
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post_file(server, "A00006.mat", content, fs="300"), range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert len({round(r.json()["p_af"], 5) for r in responses}) == 1  # batched or not, the same answer
    after = httpx.get(f"{server}/healthz").json()["diagnosed"]
    assert after["recordings"] - before["recordings"] == 8
    assert after["batches"] - before["batches"] < 8  # requests that came together ran the model together


def test_unexpected_errors_do_not_leak(model):
    from starlette.testclient import TestClient

    class Broken:
        config = model.config

    app = create_app(Broken())
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/diagnose", data={"fs": "300"},
                               files={"file": ("A00006.mat", EXAMPLES["A00006"]["path"].read_bytes())})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; the server log has the details"}


def test_page_diagnoses_an_upload_and_an_example(server, browser, tmp_path):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server)
    page.wait_for_function("document.querySelectorAll('#example option').length > 1")

    path = EXAMPLES["A00006"]["path"]
    page.set_input_files("#file", [str(path), str(path.with_suffix(".hea"))])
    page.click("#diagnose")
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    expected = post_file(server, "A00006.mat", path.read_bytes(), fs="300").json()
    assert page.inner_text("#p-af") == f"{expected['p_af']:.3f}"
    validated = "chosen on validation" if expected["calibrated"] else "not validated"
    assert page.inner_text("#rule") == (f"threshold {expected['threshold']:.3f} ({validated}) · log-odds "
                                        f"{expected['log_odds']:+.2f} against {expected['threshold_log_odds']:+.2f}")
    assert page.inner_text("#decision") == expected["outcome_title"]
    assert page.inner_text("#advice") == expected["advice"]
    shown = dict(zip(page.eval_on_selector_all("#rhythm tr", "rows => rows.map(r => r.dataset.figure)"),
                     page.eval_on_selector_all("#rhythm td", "cells => cells.map(c => c.textContent)")))
    assert shown == expected["rhythm"]
    assert page.eval_on_selector("#strip", "img => img.complete && img.naturalWidth > 600")

    page.select_option("#example", "A00027")
    page.wait_for_function("document.querySelector('#status').textContent === 'Done: A00027'", timeout=120_000)
    result = post_file(server, "A00027.mat", EXAMPLES["A00027"]["path"].read_bytes(), fs="300").json()
    # The model's own language first (from /healthz); textContent, as inner_text folds whitespace.
    assert page.eval_on_selector("#answer", "e => e.textContent") == result["answer"]
    note = page.inner_text("#answer-note")
    if result["numbers_grounded"] and result["regularity_grounded"]:
        assert note == "Written by the model."
    else:
        assert note.startswith("Written by the model, whose figures or words for the RR intervals here are not the "
                               f"measured ones: the measured RR intervals are {result['measured_regularity']};")
    other = "en" if result["lang"] == "zh" else "zh"
    page.check(f'input[name="lang"][value="{other}"]')
    assert page.inner_text("#answer").startswith(DECISION[other]["NAO~".index(result["outcome"])])
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    page.close()
    assert errors == []
