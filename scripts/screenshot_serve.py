"""The screenshot of the search page in README and docs/serve.md: start ``mmfuse serve`` on an index, search in
headless Chromium, open the top result, save the page.

    .venv/bin/mmfuse index examples/corpus --index out/corpus.idx --modalities ocr,asr,meta
    .venv/bin/python scripts/screenshot_serve.py out/corpus.idx fireworks -o docs/img/serve.png
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("index")
    ap.add_argument("query")
    ap.add_argument("-o", "--output", default="docs/img/serve.png")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=760)
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    mmfuse = str(Path(sys.executable).parent / "mmfuse")
    proc = subprocess.Popen([mmfuse, "serve", "--index", a.index, "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        url = None
        while url is None:
            line = proc.stderr.readline()
            if not line:
                raise SystemExit(f"mmfuse serve exited with {proc.wait()}")
            m = re.search(r" at (http://127\.0\.0\.1:\d+)/ ", line)
            url = m and m.group(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": a.width, "height": a.height})
            page.goto(f"{url}/")
            page.fill("#q", a.query)
            page.press("#q", "Enter")
            page.wait_for_selector("#results .card img")
            page.click("#results .card")
            page.wait_for_selector("video[src]")
            time.sleep(2.0)  # the video plays a little from the match, thumbnails decode
            page.screenshot(path=a.output)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print(a.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
