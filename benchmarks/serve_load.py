"""A bounded load on `ecgllm serve` from a second process over loopback: requests/s and p50/p95 latency for 30-s
recordings (the bundled CinC examples, .hea + .mat uploads) at 1, 4 and 16 concurrent clients, the answers' status
codes, and the server's peak memory (VmHWM of its process).

    python benchmarks/serve_load.py --model runs/cpu

Prints the figures and writes them to benchmarks/results/serve_load.json.
"""

import argparse
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from ecgllm.examples import example_records
from ecgllm.utils import describe_host


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="run folder or trained ECG-LLM folder")
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_load.json")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "ecgllm.cli", "-q", "serve", "--model", str(args.model),
                               "--port", str(port), "--device", "cpu"])
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise SystemExit("the server did not come up in 300 s")
        uploads = [[("file", (f"{name}.hea", e["path"].with_suffix(".hea").read_bytes())),
                    ("file", (f"{name}.mat", e["path"].read_bytes()))] for name, e in example_records().items()]

        def request(n: int) -> tuple[float, int]:
            started = time.perf_counter()
            response = httpx.post(f"{url}/v1/diagnose", files=uploads[n % len(uploads)], timeout=600)
            return time.perf_counter() - started, response.status_code

        request(0)  # warm-up
        results = {"machine": describe_host(), "model": str(args.model),
                   "record_seconds": 30, "levels": []}
        for clients in map(int, args.clients.split(",")):
            total = clients * args.requests_per_client
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies, statuses = zip(*pool.map(request, range(total)))
            wall = time.perf_counter() - started
            level = {"clients": clients, "requests": total, "requests_per_s": round(total / wall, 3),
                     "status_counts": {str(s): statuses.count(s) for s in sorted(set(statuses))},
                     "p50_s": round(float(np.percentile(latencies, 50)), 3),
                     "p95_s": round(float(np.percentile(latencies, 95)), 3)}
            results["levels"].append(level)
            print(level, flush=True)
        results["server_peak_rss_mb"] = peak_memory_mb(server.pid)
        print(f"server peak memory {results['server_peak_rss_mb']} MB")
    finally:
        server.terminate()
        server.wait(timeout=30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
