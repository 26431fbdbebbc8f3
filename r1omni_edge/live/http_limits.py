"""Bounds on what one HTTP request may bring, for every server this project runs (the web view, services).

uvicorn's h11 parser bounds only a request that is still incomplete: a complete request with a 100 kB query, a
100 kB header or 2,000 headers reaches the application. This ASGI layer, outermost (before the token check), answers
such a request 414 (request target), 431 (headers) or 413 (body) with one line (``{"error": ...}``), and the server
goes on; the parser's own buffer for an unfinished request is bounded by ``parser_buffer`` (what uvicorn is given
as ``h11_max_incomplete_event_size``). Limits in the spirit of Apache's LimitRequestLine / LimitRequestFields /
LimitRequestFieldSize and nginx's large_client_header_buffers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


@dataclass(frozen=True)
class RequestLimits:
    max_target: int = 8 * 1024  # bytes of the request target: path and query string
    max_headers: int = 64  # header fields
    max_header_bytes: int = 8 * 1024  # one field's name and value
    max_total_header_bytes: int = 32 * 1024  # every field together
    max_body: int = 0  # bytes of the request body (0: the server takes no body)
    # what the HTTP parser may hold of a request it has not finished reading: beyond it uvicorn answers 400 itself;
    # below it, a request over a limit above reaches this layer whole and gets its own status
    parser_buffer: int = 1024 * 1024

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, reason) for a request over a limit, else None: judged from the request line and headers."""
        target = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(scope.get("query_string", b""))
        if target > self.max_target:
            return 414, f"the request target is {target} bytes; the limit is {self.max_target}"
        headers = scope.get("headers", [])
        if len(headers) > self.max_headers:
            return 431, f"{len(headers)} header fields; the limit is {self.max_headers}"
        sizes = [len(name) + len(value) for name, value in headers]
        if sizes and max(sizes) > self.max_header_bytes:
            return 431, f"a header field of {max(sizes)} bytes; the limit is {self.max_header_bytes}"
        if sum(sizes) > self.max_total_header_bytes:
            return 431, f"{sum(sizes)} bytes of header fields; the limit is {self.max_total_header_bytes}"
        declared = dict(headers).get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return 400, "the Content-Length header is not a number"
            if int(declared) > self.max_body:
                return 413, f"a body of {int(declared)} bytes; the limit is {self.max_body}"
        elif self.max_body == 0 and b"chunked" in dict(headers).get(b"transfer-encoding", b"").lower():
            return 413, "a body; this server takes none"
        return None


class BodyTooLarge(Exception):
    pass


async def _answer(send: Callable, status: int, reason: str) -> None:
    body = (json.dumps({"error": reason}) + "\n").encode()  # as every route's own refusals
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def limit_requests(app: ASGIApp, limits: RequestLimits) -> ASGIApp:
    """``app`` behind ``limits``: a request over one is answered here and never reaches ``app``; a body that turns
    out longer than it declared (or than the limit, when chunked) is cut off with 413."""

    async def limited(scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        refusal = limits.refusal(scope)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limits.max_body:
                    raise BodyTooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _answer(send, 413, f"a body over {limits.max_body} bytes")

    return limited
