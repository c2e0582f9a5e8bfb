"""The screenshot in the docs: the page of `ecgllm serve` after diagnosing a bundled AF example.

    python scripts/screenshot_page.py --model runs/cpu --out docs/serve_page.png [--example A00027]
"""

import argparse
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from ecgllm.runs.layout import load_model
from ecgllm.serving.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/serve_page.png"))
    parser.add_argument("--example", default="A00027")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    app = create_app(load_model(args.model, "cpu"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(f"http://127.0.0.1:{args.port}/")
        page.wait_for_function("document.querySelectorAll('#example option').length > 1")
        page.select_option("#example", args.example)
        page.wait_for_function(f"document.querySelector('#status').textContent === 'Done: {args.example}'",
                               timeout=300_000)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    server.should_exit = True
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
