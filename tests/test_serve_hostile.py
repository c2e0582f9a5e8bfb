"""`ecgllm serve` as its own process under hostile input: every bad request answers 4xx quickly, the server's memory
stays near its idle level, and the event loop keeps answering while a large upload is parsed."""

import io
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import scipy.io
import wfdb

from test_serve import free_port

LIMIT_MB = 10


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory so far (VmHWM) of the server and of the processes it started (its reader)."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        children += open(f"/proc/{pid}/task/{task}/children").read().split()
    total = 0.0
    for process in [pid, *map(int, children)]:
        for line in open(f"/proc/{process}/status"):
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


@pytest.fixture(scope="module")
def served(smoke_run):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ecgllm.cli", "-q", "serve", "--model", str(smoke_run),
                                "--port", str(port), "--max-upload-mb", str(LIMIT_MB)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(process.stdout.read().decode()[-3000:])
    yield url, process.pid
    process.terminate()
    process.wait(timeout=30)


def ecg_counts(seconds: float, fs: float = 300.0, amplitude: float = 800.0) -> np.ndarray:
    """An ECG-like trace in raw ADC counts (+-800): numbers that cannot be millivolts."""
    t = np.arange(int(seconds * fs)) / fs
    return np.sin(2 * np.pi * 1.1 * t) ** 63 * amplitude + np.sin(2 * np.pi * 0.3 * t) * 50


def chunks(data: bytes, size: int = 1 << 20):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def wfdb_bomb(folder) -> list:
    wfdb.wrsamp("bomb", fs=300, units=["mV"], sig_name=["II"], p_signal=ecg_counts(10)[:, None], fmt=["16"],
                adc_gain=[1.0], baseline=[0], write_dir=str(folder))
    return [("file", ("bomb.hea", (folder / "bomb.hea").read_bytes())),
            ("file", ("bomb.dat", (folder / "bomb.dat").read_bytes()))]


def mat_bomb() -> bytes:
    """A compressed MATLAB file of 190 kB holding 100 million zeros (200 MB once decompressed)."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"val": np.zeros((1, 100_000_000), np.int16)}, do_compression=True)
    return buffer.getvalue()


def test_hostile_requests_are_refused_quickly_within_bounded_memory(served, tmp_path):
    url, pid = served
    warm = httpx.post(f"{url}/v1/diagnose", json={"samples": (ecg_counts(10) / 800).tolist(), "fs": 300},
                      timeout=120)
    assert warm.status_code == 200, warm.text
    idle = peak_rss_mb(pid)
    oversized_json = json.dumps({"samples": [0.5] * 3_000_000, "fs": 300}).encode()  # ~15 MB, no length given
    oversized_npy = io.BytesIO()
    np.save(oversized_npy, np.zeros(3_000_000))  # 24 MB
    boundary = "hostile"
    oversized_form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.npy\"\r\n"
                      f"Content-Type: application/octet-stream\r\n\r\n").encode() + oversized_npy.getvalue() + \
        f"\r\n--{boundary}--\r\n".encode()
    bomb_mat, bomb_wfdb = mat_bomb(), wfdb_bomb(tmp_path)
    cases = {
        "amplitude bomb as JSON": lambda: httpx.post(
            f"{url}/v1/diagnose?pictures=true", json={"samples": ecg_counts(10).tolist(), "fs": 300}, timeout=30),
        "amplitude bomb as WFDB": lambda: httpx.post(f"{url}/v1/diagnose?pictures=true", files=bomb_wfdb,
                                                     timeout=30),
        "chunked oversized JSON": lambda: httpx.post(
            f"{url}/v1/diagnose", content=chunks(oversized_json), headers={"content-type": "application/json"},
            timeout=30),
        "chunked oversized multipart": lambda: httpx.post(
            f"{url}/v1/diagnose", content=chunks(oversized_form),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"}, timeout=30),
        "compressed MAT bomb": lambda: httpx.post(f"{url}/v1/diagnose", files={"file": ("bomb.mat", bomb_mat)},
                                                  data={"fs": "300"}, timeout=30),
        "a file in fs": lambda: httpx.post(f"{url}/v1/diagnose", files={
            "file": ("x.npy", b"\x93NUMPY"), "fs": ("fs.csv", b"300")}, timeout=30),
    }
    expected = {"amplitude bomb as JSON": (422, "gain"), "amplitude bomb as WFDB": (422, "gain"),
                "chunked oversized JSON": (413, "larger than"), "chunked oversized multipart": (413, "larger than"),
                "compressed MAT bomb": (422, "100000000 values"), "a file in fs": (422, "'fs'")}
    for name, send in cases.items():
        started = time.perf_counter()
        response = send()
        seconds = time.perf_counter() - started
        status, words = expected[name]
        assert response.status_code == status and words in response.text, (name, response.text[:300])
        assert seconds < 2.0, (name, seconds)
    assert peak_rss_mb(pid) - idle < 300, (idle, peak_rss_mb(pid))
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_health_answers_while_a_long_csv_is_parsed(served):
    """A 10-minute CSV at 1 kHz (8 MB of text) in raw counts: parsed whole, then refused; meanwhile /healthz answers
    at once."""
    url, _ = served
    fs = 1000
    csv_text = "\n".join(f"{v:.1f}" for v in ecg_counts(600, fs)).encode()
    answer = {}
    upload = threading.Thread(target=lambda: answer.update(response=httpx.post(
        f"{url}/v1/diagnose", files={"file": ("long.csv", csv_text)}, data={"fs": str(fs)}, timeout=300)))
    upload.start()
    latencies = []
    with httpx.Client(timeout=5) as client:  # one client: a new one costs ~50 ms of its own (its TLS context)
        while upload.is_alive():
            started = time.perf_counter()
            assert client.get(f"{url}/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    upload.join()
    assert answer["response"].status_code == 422 and "gain" in answer["response"].text
    assert len(latencies) >= 5 and max(latencies) < 0.1, latencies
