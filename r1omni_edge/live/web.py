"""``--serve``: the live session watched from a browser, for devices without a screen.

The session's threads hand every event to a ``WebHub`` (an append under a lock: recognition never waits for a
viewer). A Starlette app, served by uvicorn on its own thread, reads the hub: the page (one inline HTML file, nothing
fetched from elsewhere) and one server-sent event stream per viewer: a snapshot on every connect (so a reconnecting
browser catches up), then the events, the audio level and the newest camera frame as a JPEG, encoded at most a few
times a second and shared by every viewer. One stream, not a request per preview, keeps the session's process
nearly idle with many viewers; a slow viewer only sees fewer previews. ``/preview.jpg`` gives the newest frame alone
(``?stream=NAME`` for another stream than the first). With several streams the page shows a tile per stream.

Security: 127.0.0.1 by default. Any other address needs an access token (generated unless given); every route
checks it, in a ``token`` query parameter or an ``Authorization: Bearer`` header. The routes are fixed: nothing in a
request names a file, and nothing but the token is read from it."""

from __future__ import annotations

import asyncio
import base64
import collections
import ipaddress
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from ..errors import InputError
from .http_limits import RequestLimits, limit_requests
from .rings import AudioRing, FrameRing
from .streams import DEFAULT_STREAM

HISTORY = 300  # results replayed to a viewer that connects (the latency chart's span)
PREVIEW_FPS = 4.0  # previews encoded per second at most (one per event tick), whatever the number of viewers
PREVIEW_WIDTH = 480  # pixels: a preview, not the recognition input
LEVEL_PERIOD = 0.25  # seconds between audio level updates
TOKEN_ENV = "R1OMNI_EDGE_TOKEN"
LIMITS = RequestLimits()  # the page takes no request body; the request line and headers are bounded


@dataclass(frozen=True)
class ServeAddress:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    def url(self, token: str | None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else host  # noqa: S104 - what a local browser opens
        return f"http://{shown}:{self.port}/" + (f"?token={token}" if token else "")


def parse_serve(spec: str) -> ServeAddress:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; the host defaults to 127.0.0.1."""
    host, _, port = spec.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"--serve {spec}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080 (PORT 0: any free port)")
    return ServeAddress(host, int(port))


def choose_token(address: ServeAddress, token: str | None, no_token: bool) -> str | None:
    """The access token the server will check: the one given, else a new one for any address but loopback.
    A non-loopback bind without a token is refused: anyone on the network would see the camera."""
    if no_token and token:
        raise InputError("--token and --no-token contradict each other; give one")
    if no_token:
        if not address.loopback:
            raise InputError(f"--serve {address.host}:{address.port} without a token would show the camera to anyone "
                             "who can reach this address; drop --no-token (a token is generated and printed with "
                             "the URL) or bind 127.0.0.1")
        return None
    if token is not None:
        if len(token) < 16 or not token.isascii() or not token.isprintable() or " " in token:
            raise InputError("--token: at least 16 printable ASCII characters without spaces, or leave it out and "
                             "one is generated")
        return token
    return None if address.loopback else secrets.token_urlsafe(24)


class WebHub:
    """What the page shows, kept up to date by the sessions (as one of their sinks) and read by the server: every
    stream of the run (``streams``: name -> its frame ring and audio ring), or one (``frames`` and ``audio``)."""

    def __init__(self, frames: FrameRing | None = None, audio: AudioRing | None = None, history: int = HISTORY,
                 streams: dict[str, tuple[FrameRing, AudioRing | None]] | None = None):
        self.streams = dict(streams) if streams is not None else {DEFAULT_STREAM: (frames, audio)}
        self.frames, self.audio = next(iter(self.streams.values()))  # the first stream's
        self._lock = threading.Lock()
        self._events: collections.deque[tuple[int, str]] = collections.deque(maxlen=4 * history * len(self.streams))
        self._results: collections.deque[dict] = collections.deque(maxlen=history * len(self.streams))
        self._sources: dict[str, dict] = {}
        self._started: dict[str, dict] = {}
        self._last: dict[str, dict] = {}  # per stream: its newest result, stopped or error event
        self._seq = 0
        self._previews: dict[str, tuple[float, bytes]] = {}
        self._preview_at: dict[str, float] = {}
        self._preview_events: dict[str, tuple[float, str]] = {}
        self._preview_lock = threading.Lock()
        self.first_viewer = threading.Event()  # set when a page first connects
        self.viewers = 0  # pages connected now
        self.closed = False

    def __call__(self, event: dict[str, Any]) -> None:
        """A session sink: O(1) (a new session's ``started`` aside), never blocks on a viewer."""
        text = json.dumps(event, ensure_ascii=False, default=str)
        stream = event.get("stream", DEFAULT_STREAM)
        with self._lock:
            self._seq += 1
            self._events.append((self._seq, text))
            kind = event.get("type")
            if kind == "result":
                self._results.append(event)
            elif kind == "source":
                self._sources[f"{stream} {event.get('source')} {event.get('name')}"] = event
            elif kind == "started":
                self._started[stream] = event
                self._results = collections.deque((r for r in self._results if r.get("stream") != stream),
                                                  maxlen=self._results.maxlen)
            if kind in ("result", "stopped", "error"):
                self._last[stream] = event

    def snapshot(self) -> tuple[int, dict]:
        """Everything a viewer that just connected needs, and the sequence number its live events start after."""
        with self._lock:
            return self._seq, {"type": "snapshot", "streams": list(self.streams), "started": list(self._started.values()),
                               "results": list(self._results), "sources": list(self._sources.values()),
                               "last": list(self._last.values())}

    def events_after(self, seq: int) -> tuple[int, list[str], bool]:
        """-> (the newest sequence number, the events after ``seq``, whether some were lost to a slow viewer)."""
        with self._lock:
            if not self._events or self._events[-1][0] <= seq:
                return self._seq, [], False
            lost = self._events[0][0] > seq + 1
            return self._seq, [text for number, text in self._events if number > seq], lost

    def level(self, stream: str | None = None, seconds: float = 0.2) -> float | None:
        """A stream's loudness over the newest ``seconds``, in dBFS (None without audio); the first stream's by
        default."""
        audio = self.streams[stream][1] if stream is not None else self.audio
        if audio is None:
            return None
        samples = audio.newest(seconds)
        if samples is None or not len(samples):
            return None
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
        return round(20 * np.log10(max(rms, 1e-6)), 1)

    def levels(self) -> dict[str, float | None]:
        return {name: self.level(name) for name in self.streams}

    def preview_event(self, stream: str | None = None) -> tuple[float, str] | None:
        """A stream's newest preview as a server-sent event (base64 JPEG), formatted once and shared by every
        viewer."""
        stream = stream if stream is not None else next(iter(self.streams))
        shot = self.preview(stream)
        if shot is None:
            return None
        with self._preview_lock:
            formatted = self._preview_events.get(stream)
            if formatted is None or formatted[0] != shot[0]:
                data = base64.b64encode(shot[1]).decode("ascii")
                payload = json.dumps({"type": "preview", "stream": stream, "time": round(shot[0], 3), "jpeg": data})
                formatted = (shot[0], f"data: {payload}\n\n")
                self._preview_events[stream] = formatted
            return formatted

    def preview(self, stream: str | None = None) -> tuple[float, bytes] | None:
        """A stream's newest frame as a JPEG: encoded at most PREVIEW_FPS times a second, shared by every viewer."""
        stream = stream if stream is not None else next(iter(self.streams))
        with self._preview_lock:
            latest = self.streams[stream][0].latest()
            now = time.monotonic()
            held = self._previews.get(stream)
            stale = held is None or (latest is not None and latest[0] != held[0])
            if latest is not None and stale and now - self._preview_at.get(stream, 0.0) >= 1.0 / PREVIEW_FPS:
                import cv2

                stamp, frame = latest
                height, width = frame.shape[:2]
                if width > PREVIEW_WIDTH:
                    frame = cv2.resize(frame, (PREVIEW_WIDTH, round(height * PREVIEW_WIDTH / width)),
                                       interpolation=cv2.INTER_AREA)
                ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 75])
                if ok:
                    self._previews[stream], self._preview_at[stream] = (stamp, data.tobytes()), now
            return self._previews.get(stream)


def page_html() -> str:
    return resources.files("r1omni_edge.live").joinpath("web_page.html").read_text(encoding="utf-8")


def build_app(hub: WebHub, token: str | None):
    """The Starlette app: ``/`` (the page), ``/events`` (server-sent events), ``/preview.jpg``. A request over
    ``LIMITS`` is answered 414 / 431 / 413 first; then every route, unknown ones included, answers 401 without the
    token."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    page = page_html()

    async def index(request):
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def preview(request):
        stream = request.query_params.get("stream") or None
        if stream is not None and stream not in hub.streams:
            return JSONResponse({"error": "no such stream"}, status_code=404)
        shot = hub.preview(stream)
        if shot is None:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        return Response(shot[1], media_type="image/jpeg",
                        headers={"Cache-Control": "no-store", "X-Frame-Time": f"{shot[0]:.3f}"})

    async def events(request):
        async def stream():
            hub.viewers += 1
            hub.first_viewer.set()
            try:
                async for chunk in updates():
                    yield chunk
            finally:
                hub.viewers -= 1

        async def updates():
            seq, snapshot = hub.snapshot()
            yield f"data: {json.dumps(snapshot, ensure_ascii=False, default=str)}\n\n"
            shown: dict[str, float] = {}  # per stream, the preview this viewer has
            while not hub.closed:  # a tick per LEVEL_PERIOD: cheap for the session's process, prompt for a person
                seq, texts, lost = hub.events_after(seq)
                if lost:
                    texts.insert(0, '{"type": "gap"}')
                levels = hub.levels()
                texts.append(json.dumps({"type": "level", "dbfs": next(iter(levels.values())), "levels": levels}))
                chunk = "".join(f"data: {text}\n\n" for text in texts)
                for stream in hub.streams:
                    preview = hub.preview_event(stream)
                    if preview is not None and preview[0] != shown.get(stream):
                        shown[stream], chunk = preview[0], chunk + preview[1]
                yield chunk  # waits while this viewer's socket is full: only this viewer falls behind
                await asyncio.sleep(LEVEL_PERIOD)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return protect(Starlette(routes=[Route("/", index), Route("/events", events), Route("/preview.jpg", preview)]),
                   token, LIMITS)


def protect(app, token: str | None, limits: RequestLimits):
    """``app`` behind ``limits`` (outermost: a request over them is refused before anything else) and, with a
    token, behind the token check: every route, unknown ones included, answers 401 without it. The web view and the
    recognition service share it."""
    from starlette.responses import JSONResponse

    if token is None:
        return limit_requests(app, limits)

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and not has_token(scope, token):
            await JSONResponse({"error": "missing or wrong token"}, status_code=401)(scope, receive, send)
            return
        await app(scope, receive, send)

    return limit_requests(guarded, limits)


def has_token(scope: dict, token: str) -> bool:
    from urllib.parse import parse_qs

    given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[-1]
    for name, value in scope.get("headers", []):
        if name == b"authorization" and value.lower().startswith(b"bearer "):
            given = value[7:].decode("latin-1").strip()
    return secrets.compare_digest(given.encode(), token.encode())


class HttpServer:
    """uvicorn on a socket bound here (so a taken port fails at once, in one line): on a thread of its own
    (``start``), or in this one until SIGINT or SIGTERM (``run``)."""

    def __init__(self, app, address: ServeAddress, token: str | None):
        import uvicorn

        self.address, self.token = address, token
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((address.host, address.port))
        except OSError as exc:
            self.socket.close()
            raise InputError(f"{address.host}:{address.port}: cannot listen there ({exc.strerror or exc}); choose "
                             "another port (0: any free one) or address") from None
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=1, http="h11",  # the parser whose bound is set here
                                h11_max_incomplete_event_size=LIMITS.parser_buffer)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.run, daemon=True, name="r1omni-web")

    @property
    def url(self) -> str:
        return ServeAddress(self.address.host, self.port).url(self.token)

    def run(self) -> None:
        self.server.run(sockets=[self.socket])

    def start(self) -> HttpServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise InputError(f"the web server did not start on {self.address.host}:{self.port}")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.socket.close()


class WebServer(HttpServer):
    """The live view's server (``--serve``)."""

    def __init__(self, hub: WebHub, address: ServeAddress, token: str | None):
        self.hub = hub
        try:
            super().__init__(build_app(hub, token), address, token)
        except InputError as exc:
            raise InputError(f"--serve {exc}") from None

    def stop(self) -> None:
        self.hub.closed = True
        super().stop()
