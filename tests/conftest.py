"""Shared fixtures: one tiny checkpoint in the published layout and a few clips, built once per test session."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).parent / "data"
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


# ---- processes the suite starts ---------------------------------------------------------------------------------
def _descendants(root: int) -> dict[int, tuple[str, str]]:
    """pid -> (state, command line) of every living process below ``root`` (Linux /proc)."""
    parents: dict[int, int] = {}
    info: dict[int, tuple[str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # it ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (name) ": state, ppid, ...
        parents[int(entry.name)] = int(fields[1])
        info[int(entry.name)] = (fields[0], command or stat[stat.index("(") + 1: stat.rindex(")")])
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = info[pid]
                frontier.append(pid)
    return found


def _reap() -> None:
    """Collect the exit status of children that have ended (zombies), so that they are gone."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite():
    """Every process the suite starts ends with it. This process becomes a child subreaper, so that a server whose
    parent (a test's child) died is still found below it; at the end, whatever is left is killed and fails the run."""
    if not sys.platform.startswith("linux"):
        yield
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # the embedded Ray the in-process batch tests share
        ray.shutdown()
    deadline, quiet = time.monotonic() + 20, 0
    while quiet < 3 and time.monotonic() < deadline:  # empty three times in a row: a process forked by one that
        _reap()                                       # just ended may take a moment to show up below this one
        living = {pid: what for pid, what in _descendants(os.getpid()).items() if what[0] != "Z"}
        quiet = 0 if living else quiet + 1
        time.sleep(0.2)
    for pid in living:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap()
    assert not living, "processes started by the suite outlived it (killed now): " + "; ".join(
        f"{pid} {command[:120]}" for pid, (_, command) in living.items())


def _default_sigint() -> None:
    """In the child: Ctrl-C at its default. A suite started in the background (`cmd &` in a script) runs with
    SIGINT ignored, children inherit that, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """End ``process`` and its process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def spawn():
    """Start a command as a child of this test: in its own process group, with Ctrl-C at its default, and stopped
    with its whole group when the test ends, whatever the outcome."""
    started: list[subprocess.Popen] = []

    def start(command: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen([str(part) for part in command], start_new_session=True,
                                   preexec_fn=_default_sigint, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:  # the leader may have ended and left members of its group
        stop_group(process)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    from r1omni_edge.synthetic.checkpoint import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    from r1omni_edge.synthetic.clips import write_clip

    root = tmp_path_factory.mktemp("clips")
    return {
        "av": write_clip(root / "with_audio.mp4", seconds=2.0, audio=True),
        "video_only": write_clip(root / "no_audio.mp4", seconds=2.0, audio=False),
        "short": write_clip(root / "short.mp4", seconds=0.5, fps=10, audio=True),
    }


@pytest.fixture(scope="session")
def recognizer(tiny):
    from r1omni_edge.model import TorchRecognizer

    return TorchRecognizer.from_checkpoint(tiny.checkpoint, models_dir=tiny.root)


@pytest.fixture(scope="session")
def bundles(recognizer, tmp_path_factory):
    """fp32, int8 and int4 bundles of the tiny model, exported once: precision -> (manifest, path)."""
    from r1omni_edge.export.exporter import ExportOptions, export_bundle

    root = tmp_path_factory.mktemp("bundles")
    return {p: (export_bundle(recognizer, root / p, ExportOptions(precision=p)), root / p)
            for p in ("fp32", "int8", "int4")}
