"""The child process that runs mutants through the public entry points, one request per line on stdin, one
outcome per line on stdout. It runs in-process what a user runs (the CLI's ``main`` with its output captured, or
a loader the CLI calls), so the model's libraries are imported once; the parent (runner.py) bounds each request's
time and this process's memory, and restarts it after a hang or a crash.

Outcomes: ``answer`` (exit 0), ``error`` (the project's one-line error: exit 1 or 2 with exactly one
``r1omni-edge CMD: error:`` line), ``bad-error`` (an error without that line, or with more), ``traceback`` (an
exception escaped, or a traceback was printed)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")


class _CurrentStderr(logging.Handler):
    """Log records go to whatever sys.stderr is now (the capture of the request being run)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


def run_cli(argv: list[str]) -> dict:
    from r1omni_edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    except BaseException:  # noqa: BLE001 - anything that escapes main is what the fuzzer looks for
        return {"outcome": "traceback", "detail": traceback.format_exc()[-3000:]}
    return classify(argv[0], code, out.getvalue(), err.getvalue())


def classify(command: str, code: int, out: str, err: str) -> dict:
    if "Traceback (most recent call last)" in err:
        return {"outcome": "traceback", "detail": err[-3000:], "code": code}
    if code == 0:
        return {"outcome": "answer", "detail": out[-300:], "code": code}
    errors = [line for line in err.splitlines() if line.startswith(f"r1omni-edge {command}: error:")]
    if code in (1, 2) and len(errors) == 1:
        return {"outcome": "error", "detail": errors[0][:500], "code": code}
    return {"outcome": "bad-error", "detail": err[-1500:], "code": code}


def run_loader(kind: str, path: str, data_root: str | None = None) -> dict:
    from r1omni_edge.errors import InputError

    try:
        if kind == "config-sft":
            from r1omni_edge.train.config import SFTConfig

            SFTConfig.from_file(path)
        elif kind == "config-grpo":
            from r1omni_edge.train.config import GRPOConfig

            GRPOConfig.from_file(path)
        elif kind == "dataset":
            from r1omni_edge.labels import label_set
            from r1omni_edge.datasets import load_dataset

            load_dataset(path, data_root, labels=label_set("mafw"))
        elif kind == "archive-list":
            from r1omni_edge.batch.archive import list_archive

            list_archive(path)
        else:
            raise ValueError(kind)
    except InputError as exc:
        return {"outcome": "error", "detail": str(exc)[:500]}
    except BaseException:  # noqa: BLE001
        return {"outcome": "traceback", "detail": traceback.format_exc()[-3000:]}
    return {"outcome": "answer", "detail": ""}


_web = None


def run_http(path: str) -> dict:
    """Send the request's bytes as written; then an ordinary request must still be answered."""
    global _web
    if _web is None:
        import numpy as np

        from r1omni_edge.live.rings import AudioRing, FrameRing
        from r1omni_edge.live.web import ServeAddress, WebHub, WebServer

        frames = FrameRing()
        frames.push(1.0, np.full((48, 64, 3), 90, np.uint8))
        _web = WebServer(WebHub(frames, AudioRing()), ServeAddress("127.0.0.1", 0), "a-token-of-enough-length").start()
    data = Path(path).read_bytes()
    answer = b""
    with socket.create_connection(("127.0.0.1", _web.port), timeout=1.5) as connection:
        try:
            connection.sendall(data)
            while b"\r\n" not in answer:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except socket.timeout:
            pass  # waiting for the rest of a request that promised more: the server's right
        except OSError:
            pass  # the server closed a connection it would not serve
    with socket.create_connection(("127.0.0.1", _web.port), timeout=5) as connection:
        connection.sendall(b"GET /?token=a-token-of-enough-length HTTP/1.1\r\nHost: a\r\n\r\n")
        after = connection.recv(64)
    if not after.startswith(b"HTTP/1.1 200"):
        return {"outcome": "bad-error", "detail": f"the server stopped answering: {after[:64]!r}"}
    if answer.startswith(b"HTTP/1."):
        status = int(answer.split()[1])
        return {"outcome": "answer" if status < 500 else "bad-error", "detail": answer.split(b"\r\n")[0].decode()}
    return {"outcome": "answer", "detail": "closed or waiting, then served the next request"}


def run_batch(directory: str, argv: list[str]) -> dict:
    """One batch job over a directory of mutants: every file must get exactly one row, answered or an error."""
    from r1omni_edge.batch.archive import list_archive

    result = run_cli(argv)
    output = Path(argv[argv.index("--output") + 1])
    files = sorted(clip.path for clip in list_archive(directory))  # the clips the job takes (video suffixes)
    if result["outcome"] not in ("answer", "error"):
        return dict(result, rows={})
    rows = {}
    if output.exists():
        for line in output.read_text().splitlines():
            row = json.loads(line)
            rows[row["path"]] = {"outcome": "error" if row.get("error") else "answer",
                                 "detail": (row.get("error") or row.get("label") or "")[:300]}
    if result["outcome"] == "error" and not rows:
        return dict(result, outcome="bad-error", rows={})  # a bad clip must be a row, not the job's end
    missing = sorted(set(files) - set(rows))
    return {"outcome": "answer" if not missing else "bad-error",
            "detail": f"{len(rows)} rows for {len(files)} files" + (f"; no row for {missing[:3]}" if missing else ""),
            "rows": rows}


def handle(request: dict) -> dict:
    entry = request["entry"]
    if entry == "cli":
        return run_cli(request["argv"])
    if entry == "loader":
        return run_loader(request["kind"], request["path"], request.get("data_root"))
    if entry == "http":
        return run_http(request["path"])
    if entry == "batch":
        return run_batch(request["directory"], request["argv"])
    raise ValueError(entry)


def main() -> None:
    root = logging.getLogger()
    root.handlers[:] = [_CurrentStderr()]
    root.setLevel(logging.WARNING)
    replies = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol's own channel: stdout stays the captured one's
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # what native code prints to fd 1 must not mix into replies
    print(json.dumps({"ready": os.getpid()}), file=replies)
    for line in sys.stdin:
        request = json.loads(line)
        start = time.perf_counter()
        reply = handle(request)
        reply["seconds"] = round(time.perf_counter() - start, 3)
        print(json.dumps(reply), file=replies)


if __name__ == "__main__":
    main()
