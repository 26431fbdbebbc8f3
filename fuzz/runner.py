"""The parent side: a worker process (worker.py) that runs one mutant at a time, a deadline per mutant, a bound on
the worker's memory, and a new worker after a hang or a crash. Outcomes beyond the worker's own: ``hang`` (the
deadline passed), ``crash`` (the worker died: a signal, or an exit from native code), ``memory`` (its resident
memory passed the bound)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

GOOD = ("answer", "error")  # what every mutant must end in


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants' is not counted: the worker runs everything in-process."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Runner:
    def __init__(self, deadline: float = 60.0, memory_mb: float = 4096.0, env: dict | None = None):
        self.deadline = deadline
        self.memory_mb = memory_mb
        self.env = env
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.peak_mb = 0.0

    def _start(self) -> None:
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen([sys.executable, "-m", "fuzz.worker"], cwd=root, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        start_new_session=True, env=self.env)
        ready = self._read(120.0)
        if ready is None or "ready" not in ready:
            raise RuntimeError("the fuzz worker did not start")

    def _read(self, timeout: float) -> dict | None:
        """A reply line within ``timeout`` seconds (None: none came), watching the worker's memory meanwhile."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.process.stdout], [], [], min(left, 0.05))
            if ready:
                line = self.process.stdout.readline()
                return json.loads(line) if line else {"outcome": "crash"}
            memory = rss_mb(self.process.pid)
            self.peak_mb = max(self.peak_mb, memory)
            if memory > self.memory_mb:
                return {"outcome": "memory", "detail": f"resident memory {memory:.0f} MB > {self.memory_mb:.0f} MB"}
            if self.process.poll() is not None:
                return {"outcome": "crash"}

    def stop(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
            self.process.stdin.close()
            self.process.stdout.close()
            self.process = None

    def run(self, request: dict, deadline: float | None = None) -> dict:
        if self.process is None:
            self._start()
        start = time.perf_counter()
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            reply = {"outcome": "crash"}
        else:
            reply = self._read(deadline or self.deadline)
        if reply is None:
            reply = {"outcome": "hang", "detail": f"no answer within {deadline or self.deadline:g} s"}
        if reply["outcome"] in ("hang", "crash", "memory"):
            code = self.process.poll()
            if reply["outcome"] == "crash":
                reply["detail"] = f"the worker ended with {code} ({signal.Signals(-code).name if code and code < 0 else 'exit'})"
            self.stop()
            self.restarts += 1
        reply.setdefault("seconds", round(time.perf_counter() - start, 3))
        return reply
