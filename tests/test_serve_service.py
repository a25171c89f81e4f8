"""The search service of `mmfuse serve` and its HTTP app on a small index written directly (lexical modalities only:
no model loads, so these run in seconds): the answers are the library's, limits and unknown ids are refused with one
line, ids with any characters round-trip through URLs, and only files the index recorded are served."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmfuse.app.serve import Limits, NotFound, SearchService, Unavailable, create_app
from mmfuse.errors import ParameterError
from mmfuse.pipeline import searcher
from mmfuse.store.lance import IndexStore, VideoRecord

pytest.importorskip("fastapi")
pytest.importorskip("lancedb")
pytest.importorskip("bm25s")

ODD = "clips/a b#1%?.x"  # a sub-folder, a space, '#', '%', '?' and a dot: every one must survive a URL
UNICODE = "été/vidéo ✓"


def _record(vid: str, path: Path, ocr: list[str], asr: list[str], title: str) -> VideoRecord:
    segs = [{"video_id": vid, "segment_id": f"{vid}#{i}", "seg_index": i, "start": 10.0 * i, "end": 10.0 * i + 10,
             "ocr_text": o, "asr_text": a} for i, (o, a) in enumerate(zip(ocr, asr))]
    meta = {"video_id": vid, "segment_id": f"{vid}#meta", "start": 0.0, "end": 10.0 * len(segs), "title": title,
            "description": f"about {title.lower()}", "tags": "demo, test", "text": f"{title} about {title} demo test"}
    return VideoRecord(video_id=vid, path=str(path), content_hash=f"h-{vid}", segments=segs, meta=meta,
                       info={"duration": 10.0 * len(segs), "has_video": True, "has_audio": True, "width": 64,
                             "height": 48, "fps": 25.0},
                       subtitles=[{"start": s["start"], "end": s["end"], "text": s["asr_text"]} for s in segs],
                       modalities=["ocr", "asr", "meta"])


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("svc")
    (root / "files").mkdir()
    real = root / "files" / "odd.bin"
    real.write_bytes(bytes(range(256)) * 8)
    (root / "files" / "u.bin").write_bytes(b"u" * 100)
    spec = {"kind": "test"}
    with IndexStore.create(root / "index") as store:
        store.write_videos([
            _record(ODD, real, ["LIGHTHOUSE AHEAD", "OPEN DAILY"], ["we sailed past the lighthouse", "gift shop"],
                    "Coast trip"),
            _record(UNICODE, root / "files" / "u.bin", ["MENU"], ["the soup of the day is tomato"], "Café"),
            _record("gone", root / "files" / "gone.mp4", ["VOLCANO"], ["lava everywhere"], "Volcano"),
        ], {m: (m, spec, "") for m in ("ocr", "asr", "meta")})
    return root / "index"


def open_pipeline(store, fusion, modalities):
    return searcher(store, fusion=fusion, modalities=modalities)


@pytest.fixture
def service(index) -> SearchService:
    return SearchService(IndexStore.open(index), open_pipeline, limits=Limits(query_chars=50, k=20, batch=3))


@pytest.fixture
def client(service):
    from fastapi.testclient import TestClient

    # TestClient sends Host: testserver; the loopback check has its own test over real HTTP (test_serve.py)
    return TestClient(create_app(service, allowed_hosts=None))


def test_search_is_the_library_answer(service, index):
    want = searcher(index, fusion="rrf", modalities=["ocr", "asr"]).run({"q": "lighthouse"}, 5).as_dict("q")
    assert service.search_one("lighthouse", 5, "rrf", ["ocr", "asr"]) == want
    assert want["hits"][0]["video_id"] == ODD and want["hits"][0]["modalities"]["ocr"]["text"] == "LIGHTHOUSE AHEAD"
    batch = service.search({"x": "lighthouse", "y": "tomato soup"}, 5, "rrf", ["ocr", "asr"])
    assert list(batch) == ["x", "y"] and batch["x"] == want
    assert batch["y"]["hits"][0]["video_id"] == UNICODE


def test_pipelines_are_built_once_per_choice_and_the_oldest_goes(index):
    built = []

    def counting(store, fusion, modalities):
        built.append((fusion, modalities))
        return open_pipeline(store, fusion, modalities)

    svc = SearchService(IndexStore.open(index), counting, kept=2)
    for fusion, mods in [(None, None), (None, None), ("rrf", None), (None, None), ("rrf", ["ocr"]), ("rrf", None)]:
        svc.search_one("lighthouse", 3, fusion, mods)
    assert built == [(None, None), ("rrf", None), ("rrf", ["ocr"]), ("rrf", None)]


@pytest.mark.parametrize("call,fragment", [
    (lambda s: s.search_one("x" * 51), "q: 51 characters; at most 50"),
    (lambda s: s.search_one(" \t"), "q: is empty"),
    (lambda s: s.search_one("a", 21), "k: must be an integer from 1 to 20, got 21"),
    (lambda s: s.search_one("a", True), "k: must be an integer"),
    (lambda s: s.search({"a": "x", "b": "y", "c": "z", "d": "w"}), "at most 3 per request, got 4"),
    (lambda s: s.search({"a": 3}), "query 'a': must be text, got int"),
    (lambda s: s.search_one("a", None, "nope"), "unknown fusion method 'nope'"),
    (lambda s: s.search_one("a", None, None, ["asr", "ocrr"]), "modalities: the index has no modality 'ocrr'"),
])
def test_limits_and_unknown_names_are_one_line(service, call, fragment):
    with pytest.raises(ParameterError) as e:
        call(service)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_video_details_and_files(service, index):
    v = service.video(UNICODE)
    assert v["title"] == "Café" and v["file"] == "u.bin" and v["modalities"] == ["asr", "meta", "ocr"]
    assert v["segments"] == [{"segment_id": f"{UNICODE}#0", "start": 0.0, "end": 10.0, "ocr_text": "MENU",
                              "asr_text": "the soup of the day is tomato", "caption_text": "", "asr_lang": "",
                              "asr_en_text": ""}]  # columns this index was written without read as ""
    assert v["transcript"] == [{"start": 0.0, "end": 10.0, "text": "the soup of the day is tomato"}]
    assert service.media(ODD) == index.parent / "files" / "odd.bin"
    with pytest.raises(NotFound, match="unknown video id 'nope'"):
        service.video("nope")
    with pytest.raises(NotFound, match="its file gone.mp4 is no longer where it was indexed"):
        service.media("gone")
    with pytest.raises(Unavailable, match="cannot build its S-Grid"):
        service.grid_png(ODD)  # not a video: one line, not a traceback


def test_ids_with_any_characters_round_trip_through_urls(client, index):
    from urllib.parse import quote

    data = (index.parent / "files" / "odd.bin").read_bytes()
    for vid in (ODD, UNICODE):
        r = client.get(f"/api/videos/{quote(vid, safe='')}")
        assert r.status_code == 200 and r.json()["video_id"] == vid
    r = client.get(f"/media/{quote(ODD, safe='')}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    # the path form of the same id (slashes not escaped) names the same video
    assert client.get("/api/videos/" + quote(ODD, safe="/")).json()["video_id"] == ODD


@pytest.mark.parametrize("method,path,body,status,fragment", [
    ("GET", "/api/search?q=a&k=0", None, 400, "k: must be an integer from 1 to 20, got 0"),
    ("GET", "/api/search?q=a&k=1.5", None, 400, "k: Input should be a valid integer"),
    ("POST", "/api/search", b"{not json", 400, "body: invalid JSON"),
    ("POST", "/api/search", b'{"k": 3}', 400, "queries: Field required"),
    ("GET", "/api/videos/gone", None, 200, ""),
    ("GET", "/media/gone", None, 404, "no longer where it was indexed"),
    ("GET", "/api/videos/gone/grid.png", None, 404, "no longer where it was indexed"),
    ("DELETE", "/api/search", None, 405, "DELETE /api/search: Method Not Allowed"),
    ("GET", "/static/../service.py", None, 404, "Not Found"),
])
def test_http_errors_are_json(client, method, path, body, status, fragment):
    r = client.request(method, path, content=body, headers={"Content-Type": "application/json"} if body else {})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    if status >= 400:
        assert fragment in r.json()["error"] and "Traceback" not in r.text


def test_health_reports_a_failing_default_search(index):
    def broken(store, fusion, modalities):
        pipe = open_pipeline(store, fusion, modalities)
        pipe.run = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk on fire\nsecond line"))
        return pipe

    svc = SearchService(IndexStore.open(index), broken)
    with pytest.raises(Unavailable) as e:
        svc.warm_up()
    assert str(e.value) == f"search failed: RuntimeError: disk on fire (index {index})"
    with pytest.raises(Unavailable, match="disk on fire"):
        svc.health()
