"""Mutations as Hypothesis strategies: each draws a plan (a list of operations, so that Hypothesis can shrink a
failing one to its smallest form), and ``apply_*`` turns a seed into the mutant.

Bytes: bit flips, bytes set to boundary values, truncation, insertion, deletion, duplication, a 32-bit field set
to a boundary value (a size, a count, a rate), and a splice of two seeds (one's header, another's body).
Containers, by their structure: an MP4 / MOV box's size or type (a wrong codec is a wrong sample-entry type) or a
field inside it (a timescale of 0 is an absurd frame or sample rate), a WAV header field, a PNG's declared size.
JSON: a value anywhere in the tree replaced by another type, a boundary number, a huge string or a deep nest; a key
deleted or added; the whole document nested deeply; the text's bytes mutated.
HTTP: a valid request with its request line, headers or body mutated.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from hypothesis import strategies as st

INTERESTING_32 = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 1_000_000, 100_000 * 100_000 % 2**32,
                  0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
FOURCCS = (b"avc1", b"hvc1", b"hev1", b"mp4v", b"av01", b"vp09", b"mjpa", b"mp4a", b"ac-3", b"Opus", b"fLaC",
           b"lpcm", b"sowt", b"xxxx", b"\x00\x00\x00\x00", b"moov", b"trak", b"mdat", b"free")
BYTE_VALUES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


# ---- bytes --------------------------------------------------------------------------------------------------------
def byte_ops(size: int):
    size = max(size, 8)
    position = st.integers(0, size - 1)
    return st.one_of(
        st.tuples(st.just("flip"), st.integers(0, size * 8 - 1)),
        st.tuples(st.just("set"), position, st.sampled_from(BYTE_VALUES)),
        st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), position, st.integers(1, 4096)),
        st.tuples(st.just("duplicate"), position, st.integers(1, 4096), position),
        st.tuples(st.just("int32"), st.integers(0, size - 4), st.sampled_from(INTERESTING_32), st.booleans()),
    )


def apply_byte_op(data: bytes, op: tuple) -> bytes:
    kind, *args = op
    if not data:
        return data
    if kind == "flip":
        bit = args[0] % (len(data) * 8)
        out = bytearray(data)
        out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)
    if kind == "set":
        out = bytearray(data)
        out[args[0] % len(data)] = args[1]
        return bytes(out)
    if kind == "truncate":
        return data[: int(len(data) * args[0])]
    if kind == "insert":
        at = args[0] % (len(data) + 1)
        return data[:at] + args[1] + data[at:]
    if kind == "delete":
        at = args[0] % len(data)
        return data[:at] + data[at + args[1]:]
    if kind == "duplicate":
        start, length, at = args[0] % len(data), args[1], args[2] % (len(data) + 1)
        return data[:at] + data[start:start + length] + data[at:]
    if kind == "int32":
        at = args[0] % max(len(data) - 3, 1)
        packed = struct.pack(">I" if args[2] else "<I", args[1])
        return data[:at] + packed + data[at + 4:]
    raise ValueError(kind)


# ---- containers ---------------------------------------------------------------------------------------------------
CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"edts", b"dinf", b"mvex", b"moof", b"traf")


def mp4_boxes(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, size, type) of every box, nested ones and the sample entries inside stsd included."""
    boxes: list[tuple[int, int, bytes]] = []

    def walk(start: int, end: int, depth: int) -> None:
        at = start
        while at + 8 <= end and depth < 8 and len(boxes) < 400:
            size, kind = struct.unpack(">I4s", data[at:at + 8])
            header = 8
            if size == 1 and at + 16 <= end:
                size, header = struct.unpack(">Q", data[at + 8:at + 16])[0], 16
            elif size == 0:
                size = end - at
            if size < header or at + size > end:
                return
            boxes.append((at, size, kind))
            if kind in CONTAINERS:
                walk(at + header, at + size, depth + 1)
            elif kind == b"stsd":
                walk(at + header + 8, at + size, depth + 1)  # version, flags, entry count; then sample entries
            elif kind in (b"avc1", b"mp4a", b"hvc1"):
                body = at + header + (78 if kind != b"mp4a" else 28)  # the sample entry's fixed fields
                walk(body, at + size, depth + 1)
            at += size

    walk(0, len(data), 0)
    return boxes


def box_ops():
    return st.one_of(
        st.tuples(st.just("box-size"), st.integers(0, 399), st.sampled_from((0, 1, 7, 8, 0x7FFFFFFF, 0xFFFFFFFF)),
                  st.integers(-16, 16)),
        st.tuples(st.just("box-type"), st.integers(0, 399), st.sampled_from(FOURCCS)),
        st.tuples(st.just("box-field"), st.integers(0, 399), st.integers(8, 40), st.sampled_from(INTERESTING_32)),
    )


def apply_box_op(data: bytes, op: tuple) -> bytes:
    boxes = mp4_boxes(data)
    if not boxes:
        return data
    kind, index, *args = op
    offset, size, _ = boxes[index % len(boxes)]
    out = bytearray(data)
    if kind == "box-size":
        value, delta = args
        new = value if value not in (0, 1) or delta == 0 else max(size + delta, 0)
        out[offset:offset + 4] = struct.pack(">I", new & 0xFFFFFFFF)
    elif kind == "box-type":
        out[offset + 4:offset + 8] = args[0]
    elif kind == "box-field":
        at = offset + min(args[0], max(size - 4, 8))
        if at + 4 <= len(out):
            out[at:at + 4] = struct.pack(">I", args[1])
    return bytes(out)


WAV_FIELDS = {"channels": (22, "<H"), "sample_rate": (24, "<I"), "byte_rate": (28, "<I"), "block_align": (32, "<H"),
              "bits": (34, "<H"), "data_size": (40, "<I"), "format": (20, "<H")}


def wav_ops():
    return st.tuples(st.just("wav"), st.sampled_from(sorted(WAV_FIELDS)),
                     st.sampled_from((0, 1, 3, 255, 65535, 8000, 192_000, 0x7FFFFFFF, 0xFFFFFFFF)))


def apply_wav_op(data: bytes, op: tuple) -> bytes:
    _, name, value = op
    at, layout = WAV_FIELDS[name]
    value &= 0xFFFF if layout == "<H" else 0xFFFFFFFF
    if len(data) < at + struct.calcsize(layout) or not data.startswith(b"RIFF"):
        return data
    return data[:at] + struct.pack(layout, value) + data[at + struct.calcsize(layout):]


def png_ops():
    return st.tuples(st.just("png"), st.sampled_from((0, 1, 9000, 16384, 100_000, 0x7FFFFFFF)),
                     st.sampled_from((0, 1, 9000, 16384, 100_000, 0x7FFFFFFF)), st.booleans())


def apply_png_op(data: bytes, op: tuple) -> bytes:
    _, width, height, fix_crc = op
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return data
    header = struct.pack(">II", width, height) + data[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF) if fix_crc else data[29:33]
    return data[:16] + header + crc + data[33:]


@st.composite
def media_plans(draw, seeds: dict[str, bytes]):
    """A plan: which seed, then 1 to 6 operations (bytes, structure, or a splice with another seed)."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = seeds[name]
    choices = [byte_ops(len(data)), st.tuples(st.just("splice"), st.sampled_from(sorted(seeds)), st.floats(0, 1),
                                              st.floats(0, 1))]
    if mp4_boxes(data):
        choices.append(box_ops())
    if data.startswith(b"RIFF"):
        choices.append(wav_ops())
    if data.startswith(b"\x89PNG"):
        choices.append(png_ops())
    ops = draw(st.lists(st.one_of(*choices), min_size=1, max_size=6))
    return name, ops


def apply_media_plan(seeds: dict[str, bytes], plan) -> bytes:
    name, ops = plan
    data = seeds[name]
    for op in ops:
        if op[0] == "splice":
            other = seeds[op[1]]
            data = data[: int(len(data) * op[2])] + other[int(len(other) * op[3]):]
        elif op[0].startswith("box-"):
            data = apply_box_op(data, op)
        elif op[0] == "wav":
            data = apply_wav_op(data, op)
        elif op[0] == "png":
            data = apply_png_op(data, op)
        else:
            data = apply_byte_op(data, op)
    return data


# ---- JSON ---------------------------------------------------------------------------------------------------------
ODD_VALUES = (None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63), 10**30, 1e308, 0.5, -0.0, "", "x", "\u0000",
              "../../etc/passwd", "\ud800", [], {}, [None], {"": None})


def json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += json_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:50]):
            paths += json_paths(item, prefix + (index,))
    return paths[:2000]


def json_ops():
    return st.one_of(
        st.tuples(st.just("replace"), st.integers(0, 1999), st.sampled_from(ODD_VALUES)),
        st.tuples(st.just("huge-string"), st.integers(0, 1999), st.sampled_from((10_000, 1_000_000))),
        st.tuples(st.just("nest"), st.integers(0, 1999), st.sampled_from((100, 10_000, 100_000))),
        st.tuples(st.just("delete"), st.integers(0, 1999)),
        st.tuples(st.just("add-key"), st.integers(0, 1999), st.text(max_size=12), st.sampled_from(ODD_VALUES)),
        st.tuples(st.just("long-list"), st.integers(0, 1999), st.sampled_from((1000, 100_000))),
    )


def _set(document: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


def _deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def apply_json_op(document: Any, op: tuple) -> Any:
    kind, index, *args = op
    paths = json_paths(document)
    path = paths[index % len(paths)]
    if kind == "replace":
        return _set(document, path, json.loads(json.dumps(args[0])) if args[0] is not None else None)
    if kind == "huge-string":
        return _set(document, path, "A" * args[0])
    if kind == "nest":
        return _set(document, path, _deep(args[0]))
    if kind == "delete":
        return _set(document, path, None, delete=True) if path else document
    if kind == "add-key":
        target = document
        for key in path:
            target = target[key]
        if isinstance(target, dict):
            target[args[0]] = args[1]
        return document
    if kind == "long-list":
        return _set(document, path, list(range(args[0])))
    raise ValueError(kind)


@st.composite
def json_plans(draw, seeds: dict[str, Any]):
    """A plan for a JSON document: tree operations, then (sometimes) byte operations on its text."""
    name = draw(st.sampled_from(sorted(seeds)))
    ops = draw(st.lists(json_ops(), min_size=0, max_size=5))
    # half the plans keep the text valid JSON, so that the validators and what runs after them are reached
    text_ops = draw(st.one_of(st.just([]), st.lists(byte_ops(len(json.dumps(seeds[name]))), min_size=1, max_size=3)))
    wrap = draw(st.sampled_from((0, 0, 0, 0, 0, 10, 200_000)))  # the whole document nested this deep
    return name, ops, text_ops, wrap


def _dumps(document: Any) -> str:
    """JSON text, iteratively for deep nests (json.dumps recurses)."""
    depth = 0
    while isinstance(document, list) and len(document) == 1 and isinstance(document[0], list):
        document, depth = document[0], depth + 1
    if depth < 500:
        return json.dumps(_deep_wrap(document, depth), allow_nan=True)
    return "[" * depth + json.dumps(document, allow_nan=True) + "]" * depth


def _deep_wrap(document: Any, depth: int) -> Any:
    for _ in range(depth):
        document = [document]
    return document


def apply_json_plan(seeds: dict[str, Any], plan) -> bytes:
    name, ops, text_ops, wrap = plan
    document = json.loads(json.dumps(seeds[name]))
    for op in ops:
        try:
            document = apply_json_op(document, op)
        except RecursionError:
            break
    try:
        text = _dumps(document)
    except (RecursionError, ValueError):
        text = "[" * 100_000 + "]" * 100_000
    if wrap:
        text = "[" * wrap + text + "]" * wrap
    data = text.encode("utf-8", "surrogatepass")
    for op in text_ops:
        data = apply_byte_op(data, op)
    return data


# ---- HTTP ---------------------------------------------------------------------------------------------------------
METHODS = ("GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "TRACE", "CONNECT", "G\x00T", "", "GET GET")
TARGETS = ("/", "/events", "/preview.jpg", "*", "http://127.0.0.1/", "/%00", "/..%2f..%2fetc/passwd", "//",
           "/?token=" + "t" * 10_000, "/" + "a" * 100_000, "/\r\n", "/?" + "&".join(["a=1"] * 5000), "")
VERSIONS = ("HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/9.9", "", "HTTP/1.1 extra")
HEADER_LINES = ("Host: a", "Host:", "Content-Length: 10", "Content-Length: -1", "Content-Length: 99999999999999999999",
                "Content-Length: 5\r\nContent-Length: 6", "Transfer-Encoding: chunked", "Transfer-Encoding: gzip",
                "Connection: close", "Connection: keep-alive", "Authorization: Bearer " + "x" * 100,
                "Authorization: Basic Zm9vOmJhcg==", "X-Null: a\x00b", "bad header", ": empty name", "X: " + "y" * 70_000,
                "Expect: 100-continue", "Upgrade: websocket\r\nConnection: Upgrade", "Accept: text/event-stream")


@st.composite
def http_plans(draw):
    method = draw(st.sampled_from(METHODS))
    target = draw(st.sampled_from(TARGETS))
    version = draw(st.sampled_from(VERSIONS))
    headers = draw(st.lists(st.sampled_from(HEADER_LINES), max_size=6))
    repeat = draw(st.sampled_from((1, 1, 1, 100, 3000)))  # the headers repeated this many times
    body = draw(st.one_of(st.just(b""), st.binary(max_size=256), st.just(b"5\r\nhello\r\n0\r\n\r\n"),
                          st.just(b"zzzz\r\n")))
    line_end = draw(st.sampled_from(("\r\n", "\r\n", "\n", "\r")))
    byte_mutations = draw(st.lists(byte_ops(200), max_size=3))
    return method, target, version, headers, repeat, body, line_end, byte_mutations


def apply_http_plan(plan) -> bytes:
    method, target, version, headers, repeat, body, line_end, byte_mutations = plan
    lines = [f"{method} {target} {version}".strip()] + headers * repeat
    data = (line_end.join(lines) + line_end + line_end).encode("utf-8", "surrogatepass") + body
    for op in byte_mutations:
        data = apply_byte_op(data, op)
    return data
