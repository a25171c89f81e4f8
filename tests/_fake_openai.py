"""A loopback imitation of an OpenAI-compatible ``/v1/chat/completions`` server for reranker and language-model tests.

Good answers to prompts with images are real rankings: the server decodes every image it is sent and orders the
candidates by how close each grid's mean colour is to the colour named in the query, so a correct client (images in
label order, one per candidate) gets the right video first. With ``vision`` set, prompts with images are answered by
it instead (``vision(prompt_text, image_urls) -> answer``; :func:`colour_caption` describes the images' colour, as a
captioning model would). Good answers to text-only prompts are scripted: ``text`` maps the prompt to the answer (a
function, or ``{substring: answer}``: the answer of the first substring the prompt contains). Every answer reports
``usage`` token counts (whitespace words). Other behaviours imitate what real servers do wrong.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COLOURS = {
    "red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
    "yellow": (230, 220, 20), "white": (240, 240, 240), "purple": (140, 30, 160),
}
MODES = ("good", "prose", "truncated", "garbage", "empty", "http500", "http400", "slow", "badjson")


def _mean_colour(url: str):
    import numpy as np
    from PIL import Image

    head, b64 = url.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64"), head
    img = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
    a = np.asarray(img, dtype=np.float64)
    h, w = a.shape[:2]
    return a[h // 4:, w // 4:].reshape(-1, 3).mean(axis=0)  # skip the label corner


def colour_name(url: str) -> str:
    """The named colour (``COLOURS``) nearest to an image's mean colour."""
    import numpy as np

    mean = _mean_colour(url)
    return min(COLOURS, key=lambda n: float(np.linalg.norm(mean - np.array(COLOURS[n], float))))


def colour_caption(prompt: str, urls: list[str]) -> str:
    """What a captioning model might say about frames of one colour: their colour, named."""
    names = list(dict.fromkeys(colour_name(u) for u in urls))
    return f"A plain {' and '.join(names)} screen fills the frame while a small square in the corner changes."


def colour_ranking(body: dict) -> tuple[str, list[int]]:
    """(query, 1-based labels best first) for a chat-completions request body."""
    import numpy as np

    parts = body["messages"][-1]["content"]
    text = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
    m = re.search(r'query: "([^"]*)"', text)
    query = m.group(1) if m else ""
    urls = [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]
    target = next((np.array(c, float) for name, c in COLOURS.items() if name in query.lower()), np.zeros(3))
    dist = [float(np.linalg.norm(_mean_colour(u) - target)) for u in urls]
    return query, [i + 1 for i in sorted(range(len(urls)), key=lambda i: dist[i])]


class FakeOpenAI:
    """``with FakeOpenAI(script=["http500", "good"]) as srv: srv.url`` -> ``http://127.0.0.1:PORT/v1``.

    ``script`` lists one behaviour per request in arrival order, then ``default`` for the rest. ``slow``
    sleeps ``slow_seconds`` before a good answer. The server shuts itself down after ``lifetime`` seconds.
    ``requests`` keeps each request body and headers; ``max_in_flight`` the peak number of parallel requests (one
    counts from its arrival until its reply starts, so a client that waits for replies is never over-counted).
    ``text``: the scripted answers to text-only prompts, ``vision`` to prompts with images (see the module doc);
    ``delay`` is slept before every answer.
    """

    def __init__(self, script=(), default: str = "good", slow_seconds: float = 2.0, lifetime: float = 120.0,
                 delay: float = 0.0, text=None, vision=None):
        for m in [*script, default]:
            assert m in MODES, m
        self.script = list(script)
        self.default = default
        self.slow_seconds = slow_seconds
        self.delay = delay
        self.text = text
        self.vision = vision
        self.lifetime = lifetime
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def _next_mode(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code: int, payload, ctype="application/json"):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self._finished()  # before the reply goes out: a client may send its next request once it has read it
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def do_POST(self):
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                self._counted = True
                try:
                    self._answer(body, fake._next_mode())
                finally:
                    self._finished()

            def _finished(self):
                """This request no longer counts as in flight (once, whichever comes first: its reply or its end)."""
                if getattr(self, "_counted", False):
                    self._counted = False
                    with fake._lock:
                        fake.in_flight -= 1

            def _answer(self, body, mode):
                if fake.delay:
                    time.sleep(fake.delay)
                if mode == "http500":
                    return self._send(500, {"error": {"message": "internal error"}})
                if mode == "http400":
                    return self._send(400, {"error": {"message": "bad request: too many images"}})
                if mode == "badjson":
                    return self._send(200, b"<html>proxy error</html>", "text/html")
                if mode == "slow":
                    time.sleep(fake.slow_seconds)
                if body.get("logprobs"):
                    return self._send(200, _logprob_reply(body))
                parts = body["messages"][-1]["content"]
                prompt = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
                urls = [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]
                if not urls:
                    text = _scripted(fake.text, prompt, mode)
                elif fake.vision is not None:
                    text = _scripted(lambda p: fake.vision(p, urls), prompt, mode)
                else:
                    _, labels = colour_ranking(body)
                    ranking = " > ".join(f"[{i}]" for i in labels)
                    text = {
                        "good": ranking, "slow": ranking,
                        "prose": f"Sure! Looking at the grids, the ranking is: [{labels[0]}] > [{labels[0]}] > [99] > "
                                 f"{' > '.join(f'[{i}]' for i in labels[1:2])}. Hope this helps!",
                        "truncated": ranking[: max(3, len(ranking) // 2)],
                        "garbage": "I am unable to view videos, sorry.",
                        "empty": "",
                    }[mode]
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                return self._send(200, {"id": "cmpl-1", "object": "chat.completion", "model": body.get("model"),
                                        "usage": usage,
                                        "choices": [{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant", "content": text}}]})

        return Handler

    def __enter__(self) -> "FakeOpenAI":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._timer = threading.Timer(self.lifetime, self._server.shutdown)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"


def _scripted(script, prompt: str, mode: str) -> str:
    """The answer to a text-only prompt in ``mode`` (prose wraps the good answer in chatter)."""
    if mode in ("garbage", "empty"):
        return {"garbage": "I am unable to help with that, sorry.", "empty": ""}[mode]
    if callable(script):
        good = script(prompt)
    else:
        good = next((a for key, a in (script or {}).items() if key in prompt), "")
    if mode == "prose":
        return f"Sure! Here is what you asked for:\n\n{good}\n\nHope this helps!"
    if mode == "truncated":
        return good[: max(3, len(good) // 2)]
    return good


def _logprob_reply(body: dict) -> dict:
    """Pointwise: log P(yes) falls with the distance of the single image's colour to the query colour."""
    import math

    import numpy as np

    parts = body["messages"][-1]["content"]
    text = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
    m = re.search(r'query: "([^"]*)"', text)
    query = (m.group(1) if m else "").lower()
    url = next(p["image_url"]["url"] for p in parts if p.get("type") == "image_url")
    target = next((np.array(c, float) for name, c in COLOURS.items() if name in query), np.zeros(3))
    d = float(np.linalg.norm(_mean_colour(url) - target)) / 450.0
    p_yes = max(1e-6, min(1 - 1e-6, 1.0 - d))
    top = [{"token": "Yes", "logprob": math.log(p_yes)}, {"token": "No", "logprob": math.log(1 - p_yes)}]
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Yes"},
                         "logprobs": {"content": [{"token": "Yes", "logprob": top[0]["logprob"],
                                                   "top_logprobs": top}]}}]}


if __name__ == "__main__":  # python tests/_fake_openai.py [--port 8765] [--lifetime 600]: try the CLI by hand
    import argparse

    ap = argparse.ArgumentParser(description="loopback imitation of an OpenAI-compatible VLM server")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--lifetime", type=float, default=600.0)
    ap.add_argument("--mode", default="good", choices=MODES)
    args = ap.parse_args()
    srv = FakeOpenAI(default=args.mode, lifetime=args.lifetime)
    srv._server = ThreadingHTTPServer(("127.0.0.1", args.port), srv._handler())
    threading.Timer(args.lifetime, srv._server.shutdown).start()
    print(f"serving {srv.url} for {args.lifetime:.0f} s", flush=True)
    srv._server.serve_forever()
