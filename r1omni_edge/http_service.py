"""``r1omni-edge serve``: recognition as an HTTP service that other programs call with a clip.

    POST /v1/recognize   a clip as the request body, or a multipart upload (field ``file``); options as query or form
                         fields (mode, audio_window, audio_gate, audio_layout, max_new_tokens, max_think_tokens,
                         video_only). Answers ``predict --json``'s object.
    GET  /v1/health      {"status": "ok", "busy": N, "capacity": N}
    GET  /v1/info        the bundle, its precision and labels, the backend, the versions, the default options
    GET  /openapi.json   the API as OpenAPI 3; GET /docs: the same as a page (self-contained)

One recognizer behind a bounded queue: one recognition runs at a time (on its own thread, so the server keeps
answering), ``queue`` more may wait, and a request beyond them is answered 503 with Retry-After at once, never
queued without bound. The same token rules as the web view (loopback without one, any other address with one), the
same request limits, an upload limit (413), and bad media answered 400 with the one-line message the command line
gives. An upload is written to a temporary file for the decoder and removed when the request ends, whatever happens.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import InputError, R1OmniError
from .live.http_limits import RequestLimits
from .live.web import protect
from .recognition import RecognitionOptions

INTEGER_FIELDS = ("max_new_tokens", "max_think_tokens")
TEXT_FIELDS = ("mode", "audio_window", "audio_gate", "audio_layout")


@dataclass(frozen=True)
class ServiceSettings:
    queue: int = 8  # requests that may wait while one is recognised
    max_upload: int = 64 * 1024 * 1024  # bytes of one clip
    retry_after: int = 2  # seconds a refused client is told to wait


class Busy(Exception):
    pass


class RecognitionService:
    """The recognizer, its one worker thread and the count of requests it holds (running and waiting)."""

    def __init__(self, recognizer, options: RecognitionOptions, settings: ServiceSettings = ServiceSettings(),
                 info: dict[str, Any] | None = None):
        self.recognizer = recognizer
        self.options = recognizer.check(options)
        self.settings = settings
        self.info = info or {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="r1omni-serve")
        self._lock = threading.Lock()
        self.held = 0  # requests running or waiting
        self.answered = 0

    @property
    def capacity(self) -> int:
        return self.settings.queue + 1

    def options_from(self, fields: dict[str, str]) -> tuple[RecognitionOptions, bool]:
        """A request's options over the service's defaults, checked (InputError: 400)."""
        unknown = sorted(set(fields) - set(INTEGER_FIELDS) - set(TEXT_FIELDS) - {"video_only", "token", "file"})
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)}; the options are "
                             f"{', '.join(TEXT_FIELDS + INTEGER_FIELDS)}, video_only")
        changes: dict[str, Any] = {}
        for name in INTEGER_FIELDS:
            if name in fields:
                value = fields[name]
                if not value.isdigit() or len(value) > 9:
                    raise InputError(f"{name}={value[:20]!r}: a whole number")
                changes[name] = int(value)
        for name in TEXT_FIELDS:
            if name in fields:
                changes[name] = fields[name]
        video_only = fields.get("video_only", "false").lower()
        if video_only not in ("true", "false", "1", "0"):
            raise InputError("video_only: true or false")
        options = replace(self.options, **changes)  # RecognitionOptions checks each field (InputError)
        return self.recognizer.check(options), video_only in ("true", "1")

    def hold(self) -> None:
        with self._lock:
            if self.held >= self.capacity:
                raise Busy()
            self.held += 1

    def release(self) -> None:
        with self._lock:
            self.held -= 1

    async def recognize(self, path: Path, options: RecognitionOptions, video_only: bool) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self.executor, lambda: self.recognizer.recognize_file(path, use_audio=not video_only, options=options))
        self.answered += 1
        return result.to_dict()


def openapi() -> dict[str, Any]:
    """The API, written once here (the routes below answer as it says)."""
    option = lambda name, kind, text: {"name": name, "in": "query", "required": False,  # noqa: E731
                                       "schema": {"type": kind}, "description": text}
    error = {"description": "", "content": {"application/json": {"schema": {"type": "object", "properties": {
        "error": {"type": "string"}}}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "r1omni-edge recognition service", "version": _version("r1omni-edge") or "dev",
                 "description": "R1-Omni emotion recognition: a clip in, the label, its probabilities and the "
                                "reasoning out. Beyond loopback every route needs the token (Authorization: Bearer "
                                "TOKEN, or ?token=TOKEN)."},
        "paths": {
            "/v1/recognize": {"post": {
                "summary": "Recognise the emotion in one clip",
                "parameters": [option("mode", "string", "full (reasoning, then the label) or label"),
                               option("audio_window", "string", "full, fit or seconds"),
                               option("audio_gate", "string", "off, energy or vad"),
                               option("audio_layout", "string", "auto, compact, positions or tail"),
                               option("max_new_tokens", "integer", "tokens generated at most"),
                               option("max_think_tokens", "integer", "reasoning tokens at most"),
                               option("video_only", "boolean", "a prompt without audio")],
                "requestBody": {"required": True, "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "video/*": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "file": {"type": "string", "format": "binary"}}}}}},
                "responses": {"200": {"description": "the result, as predict --json prints it"},
                              "400": dict(error, description="bad media or options (one line)"),
                              "401": dict(error, description="missing or wrong token"),
                              "413": dict(error, description="the upload is over the limit"),
                              "503": dict(error, description="the queue is full; see Retry-After")}}},
            "/v1/health": {"get": {"summary": "Whether the service answers, and how busy it is",
                                   "responses": {"200": {"description": "status, busy, capacity"}}}},
            "/v1/info": {"get": {"summary": "The bundle, precision, labels, backend and versions",
                                 "responses": {"200": {"description": "what runs here"}}}},
        },
    }


DOCS_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>r1omni-edge API</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}code,pre{background:#f3f3f3;padding:2px 4px}
</style></head><body><h1>r1omni-edge recognition service</h1><p id="about"></p><div id="paths"></div>
<p>The machine-readable form: <a href="openapi.json">openapi.json</a>. Example:</p>
<pre>curl -s --data-binary @clip.mp4 -H "Authorization: Bearer $TOKEN" "http://HOST:PORT/v1/recognize?mode=label"</pre>
<script>
const token = new URLSearchParams(location.search).get("token");
fetch("openapi.json" + (token ? `?token=${encodeURIComponent(token)}` : "")).then((r) => r.json()).then((api) => {
  document.getElementById("about").textContent = api.info.description;
  const box = document.getElementById("paths");
  for (const [path, methods] of Object.entries(api.paths)) for (const [method, op] of Object.entries(methods)) {
    const h = document.createElement("h3"); h.textContent = `${method.toUpperCase()} ${path}: ${op.summary}`;
    const ul = document.createElement("ul");
    for (const p of op.parameters || []) {
      const li = document.createElement("li"); li.textContent = `${p.name} (${p.schema.type}): ${p.description}`;
      ul.append(li);
    }
    for (const [code, r] of Object.entries(op.responses)) {
      const li = document.createElement("li"); li.textContent = `${code}: ${r.description}`; ul.append(li);
    }
    box.append(h, ul);
  }
});
</script></body></html>"""


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def describe(recognizer, bundle: str) -> dict[str, Any]:
    """What GET /v1/info answers."""
    manifest = getattr(recognizer, "manifest", None)
    return {"model": bundle, "precision": getattr(manifest, "precision", None),
            "labels": list(recognizer.label_sequences), "backend": recognizer.backend_name,
            "versions": {name: _version(name) for name in ("r1omni-edge", "onnxruntime", "av", "numpy")}}


def build_app(service: RecognitionService, token: str | None):
    """The Starlette app, inside the request limits and (with a token) the token check."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    spec = openapi()

    def refuse(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def recognize(request):
        try:
            service.hold()
        except Busy:
            return refuse(503, f"{service.capacity} requests are being answered or waiting; try again",
                          **{"Retry-After": str(service.settings.retry_after)})
        upload = None
        try:
            fields = dict(request.query_params)
            content_type = request.headers.get("content-type", "")
            with tempfile.TemporaryDirectory(prefix="r1omni-serve-") as folder:
                upload = Path(folder) / "upload"
                if content_type.startswith("multipart/form-data"):
                    name = await _save_form(request, upload, fields)
                else:
                    name = "the uploaded clip"
                    await _save_body(request, upload)
                if upload.stat().st_size == 0:
                    return refuse(400, f"{name}: the upload is empty; send the clip as the request body or as "
                                       "the multipart field 'file'")
                options, video_only = service.options_from(fields)
                try:
                    result = await service.recognize(upload, options, video_only)
                except R1OmniError as exc:
                    return refuse(400, str(exc).replace(str(upload), name))
            result["notes"] = [note.replace(str(upload), name) for note in result.get("notes") or []]
            return JSONResponse(result)
        except InputError as exc:
            return refuse(400, str(exc).replace(str(upload), "the uploaded clip") if upload else str(exc))
        except _TooLarge:
            return refuse(413, f"the upload is over {service.settings.max_upload} bytes")
        finally:
            service.release()

    async def _save_body(request, path: Path) -> None:
        size = 0
        with open(path, "wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > service.settings.max_upload:
                    raise _TooLarge()
                handle.write(chunk)

    async def _save_form(request, path: Path, fields: dict[str, str]) -> str:
        form = await request.form(max_files=1, max_fields=16, max_part_size=1024 * 1024)
        try:
            for key, value in form.items():
                if isinstance(value, str):
                    fields.setdefault(key, value)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise InputError("the multipart request has no file field 'file'; send the clip as 'file'")
            name = Path(upload.filename or "upload").name[:100]
            size = 0
            with open(path, "wb") as handle:
                while chunk := await upload.read(1024 * 1024):
                    size += len(chunk)
                    if size > service.settings.max_upload:
                        raise _TooLarge()
                    handle.write(chunk)
            return name
        finally:
            await form.close()

    async def health(request):
        return JSONResponse({"status": "ok", "busy": service.held, "capacity": service.capacity,
                             "answered": service.answered})

    async def info(request):
        return JSONResponse({**service.info, "options": asdict(service.options), "queue": service.settings.queue,
                             "max_upload": service.settings.max_upload})

    async def api(request):
        return JSONResponse(spec)

    async def docs(request):
        return HTMLResponse(DOCS_PAGE)

    app = Starlette(routes=[Route("/v1/recognize", recognize, methods=["POST"]), Route("/v1/health", health),
                            Route("/v1/info", info), Route("/openapi.json", api), Route("/docs", docs)])
    # the multipart framing beside the largest upload
    return protect(app, token, RequestLimits(max_body=service.settings.max_upload + 64 * 1024))


class _TooLarge(Exception):
    pass


def serve_forever(service: RecognitionService, address, token: str | None, on_listening=None) -> None:
    """Listen on ``address`` (a ``web.ServeAddress``) until SIGINT or SIGTERM (uvicorn finishes the requests in
    flight); ``on_listening`` gets the API page's URL."""
    from .live.web import HttpServer

    server = HttpServer(build_app(service, token), address, token)
    if on_listening is not None:
        on_listening(server.url.replace("/?", "/docs?") if "?" in server.url else server.url + "docs")
    try:
        server.run()
    finally:
        service.executor.shutdown(wait=False, cancel_futures=True)
