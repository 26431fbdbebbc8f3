"""Network cameras and several streams on one model: `live` against a real RTSP server on 127.0.0.1 (GStreamer's
gst-rtsp-server, run by the system's python3: tests/rtsp_server.py), the fair scheduler, streams files, credentials
never shown, doctor --stream and service install."""

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from r1omni_edge.cli.main import main
from r1omni_edge.errors import InputError
from r1omni_edge.live.network import mask_url, redact
from r1omni_edge.live.rings import FrameRing, clock
from r1omni_edge.live.scheduler import Scheduler
from r1omni_edge.live.session import LiveConfig, LiveSession, run_sessions
from r1omni_edge.live.streams import load_streams_file, parse_source
from r1omni_edge.result import Result
from tests.test_web import browser, wait_for  # noqa: F401 - the browser fixture, shared

PASSWORD = "S3cret-Pw0rd"
SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def _gst_rtsp() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import GstRtspServer")
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def rtsp():
    if not _gst_rtsp():
        if os.environ.get("R1OMNI_EDGE_REQUIRE_RTSP"):
            pytest.fail("gst-rtsp-server was installed by the test command but python3 cannot import it here")
        pytest.skip("GStreamer's RTSP server is not installed (apt-get install gir1.2-gst-rtsp-server-1.0 "
                    "gstreamer1.0-rtsp python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)")


def start_server(spawn, clip: Path, port: int = 0, password: bool = True, video_only: bool = False) -> tuple:
    """An RTSP server on 127.0.0.1 serving ``clip`` at /cam; -> (process, the camera URL)."""
    command = [SYSTEM_PYTHON, SERVER, clip, "--port", port]
    command += ["--user", "viewer", "--password", PASSWORD] if password else []
    command += ["--video-only"] if video_only else []
    process = spawn(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    assert line.startswith("READY "), line
    credentials = f"viewer:{PASSWORD}@" if password else ""
    return process, f"rtsp://{credentials}127.0.0.1:{line.split()[1]}/cam"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The trained toy's fp32 bundle, and clips of one class each (its colour and its tone all through)."""
    from r1omni_edge.cli.demo import prepare
    from r1omni_edge.synthetic.clips import write_clip
    from r1omni_edge.synthetic.task import COLOURS, TONES

    root = tmp_path_factory.mktemp("network")
    bundle, _, _ = prepare(root)
    clips = {label: write_clip(root / f"{label}.mp4", seconds=30, fps=10, size=(64, 64), color=COLOURS[label],
                               background=tuple(c // 2 for c in COLOURS[label]), tone_hz=TONES[label])
             for label in ("happy", "sad")}
    return bundle, clips


def live(spawn, bundle: Path, *args, out: Path) -> subprocess.Popen:
    """`r1omni-edge live` in the background; its stdout and stderr go to files under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "r1omni_edge.cli", "live", "--bundle", bundle, "--window", "2", "--stride", "1",
               "--jsonl", out / "events.jsonl", *args]
    return spawn(command, stdout=open(out / "stdout.txt", "w"), stderr=open(out / "stderr.txt", "w"))


def read_events(out: Path) -> list[dict]:
    path = out / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def everything_written(out: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in sorted(out.iterdir()) if path.is_file())


def stream_labels(capsys, bundle: Path, clip: Path, tmp_path: Path) -> set[str]:
    jsonl = tmp_path / "stream.jsonl"
    assert main(["stream", str(clip), "--bundle", str(bundle), "--fast", "--window", "2", "--stride", "1",
                 "--jsonl", str(jsonl), "--quiet"]) == 0
    capsys.readouterr()
    return {e["label"] for e in map(json.loads, jsonl.read_text().splitlines()) if e["type"] == "result"}


def read_sse(url: str, seconds: float) -> str:
    """What the page's event stream sends in ``seconds``."""
    chunks = []
    with urllib.request.urlopen(url, timeout=seconds + 5) as response:  # noqa: S310 - loopback only
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            line = response.readline()
            if not line:
                break
            chunks.append(line.decode())
    return "".join(chunks)


# ---- an IP camera with its sound -----------------------------------------------------------------------------------
def test_an_rtsp_camera_gives_the_clips_labels_and_sound_and_never_shows_its_password(rtsp, toy, spawn, tmp_path,
                                                                                     capsys):
    bundle, clips = toy
    server, url = start_server(spawn, clips["happy"])
    out = tmp_path / "live"
    process = live(spawn, bundle, "--camera", url, "--duration", "8", "--serve", "127.0.0.1:0", out=out)
    page_url = wait_for(lambda: next((line.split(" at ")[1].strip() for line in
                                      (out / "stderr.txt").read_text().splitlines() if "live view is at" in line), None))
    wait_for(lambda: any(e["type"] == "result" for e in read_events(out)), timeout=30)
    (out / "page.html").write_text(urllib.request.urlopen(page_url, timeout=5).read().decode())  # noqa: S310
    sse = read_sse(page_url + "events", 2.0)
    (out / "events.sse").write_text(sse)
    assert process.wait(timeout=60) == 0, (out / "stderr.txt").read_text()
    expected = stream_labels(capsys, bundle, clips["happy"], tmp_path)
    events = read_events(out)
    results = [e for e in events if e["type"] == "result"]
    assert len(results) >= 4 and expected == {"happy"}
    assert {e["label"] for e in results} == expected  # the picture and the sound of the clip, over the network
    assert all(e["audio"] == "present" and e["stream"] == "main" for e in results)
    connected = next(e for e in events if e["type"] == "source" and e["status"] == "connected")
    assert connected["audio"] is True and "h264" in connected["detail"] and "aac" in connected["detail"]
    assert connected["name"] == mask_url(url) == url.replace(PASSWORD, "***")
    levels = [json.loads(line[6:])["levels"]["main"] for line in sse.splitlines() if '"type": "level"' in line]
    assert levels and max(level for level in levels if level is not None) > -30  # the clip's tone, not silence
    assert '"type": "preview"' in sse
    written = everything_written(out)
    assert PASSWORD not in written and "viewer:***@127.0.0.1" in written
    server.kill()


def test_a_dropped_stream_is_lost_then_found_and_recognition_resumes(rtsp, toy, spawn, tmp_path):
    bundle, clips = toy
    server, url = start_server(spawn, clips["sad"])
    port = url.rsplit(":", 1)[1].split("/")[0]
    out = tmp_path / "live"
    process = live(spawn, bundle, "--camera", url, "--duration", "14", "--quiet", out=out)
    wait_for(lambda: any(e["type"] == "result" for e in read_events(out)), timeout=30)
    server.kill()
    server.wait()
    wait_for(lambda: any(e.get("status") == "lost" for e in read_events(out)), timeout=10)
    time.sleep(1.5)
    start_server(spawn, clips["sad"], port=int(port))
    assert process.wait(timeout=60) == 0, (out / "stderr.txt").read_text()
    events = read_events(out)
    statuses = [e["status"] for e in events if e["type"] == "source"]
    lost = statuses.index("lost")
    assert statuses[0] == "connected" and "reconnecting" in statuses[lost:] and "connected" in statuses[lost + 1:]
    found = next(i for i, e in enumerate(events) if e["type"] == "source" and e["status"] == "connected" and i > 0
                 and any(x.get("status") == "lost" for x in events[:i]))
    after = [e for e in events[found:] if e["type"] == "result"]
    assert len(after) >= 2 and {e["label"] for e in after} == {"sad"}
    assert PASSWORD not in everything_written(out)


def test_a_stream_without_sound_runs_video_only_and_doctor_reports_it(rtsp, toy, spawn, tmp_path, capsys):
    bundle, clips = toy
    _, url = start_server(spawn, clips["happy"], video_only=True)
    code = main(["doctor", "--stream", url, "--stream", "rtsp://127.0.0.1:9/none", "--open-timeout", "3", "--json"])
    report = {c["name"]: c for c in json.loads(capsys.readouterr().out) if c["area"] == "streams"}
    assert code == 1  # one stream does not answer
    assert report[mask_url(url)]["status"] == "ok" and "no audio track" in report[mask_url(url)]["detail"]
    assert "h264" in report[mask_url(url)]["detail"] and report["rtsp://127.0.0.1:9/none"]["status"] == "missing"
    out = tmp_path / "live"
    process = live(spawn, bundle, "--camera", url, "--duration", "4", "--quiet", out=out)
    assert process.wait(timeout=60) == 0, (out / "stderr.txt").read_text()
    events = read_events(out)
    connected = next(e for e in events if e["type"] == "source" and e["status"] == "connected")
    assert connected["audio"] is False
    assert any("carries no audio track: recognising from video only" in e.get("message", "") for e in events)
    results = [e for e in events if e["type"] == "result"]
    assert results and all(e["audio"] == "not used" for e in results)
    assert PASSWORD not in everything_written(out)


def test_a_camera_that_never_answers_fails_after_the_open_timeout(tmp_path, toy):
    bundle, _ = toy
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"rtsp://viewer:{PASSWORD}@127.0.0.1:{silent.getsockname()[1]}/cam"
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "r1omni_edge.cli", "live", "--bundle", str(bundle), "--camera",
                               url, "--open-timeout", "2", "--quiet"], capture_output=True, text=True, timeout=60)
        took = time.monotonic() - began
    assert done.returncode == 2 and took < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not open within 2 s" in lines[0] and "viewer:***@" in lines[0], done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def test_a_missing_microphone_is_one_error_not_an_abort(tmp_path, toy, clips):
    """Without a sound card: exit 2 with the microphone's error, while the camera thread was reading (it used to
    abort the process, exit 134)."""
    pytest.importorskip("cv2")
    bundle, _ = toy
    done = subprocess.run([sys.executable, "-m", "r1omni_edge.cli", "live", "--bundle", str(bundle), "--camera",
                           str(clips["av"]), "--mic", "no-such-microphone", "--open-timeout", "2", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "microphone 'no-such-microphone': did not open within 2 s" in done.stderr.strip().splitlines()[-1]


# ---- several streams on one model ----------------------------------------------------------------------------------
def test_three_cameras_on_one_model_each_get_their_results_and_their_tiles(rtsp, toy, spawn, tmp_path, browser):
    from selenium.webdriver.common.by import By

    bundle, clips = toy
    _, url = start_server(spawn, clips["happy"])
    _, sad_url = start_server(spawn, clips["sad"], password=False)
    out = tmp_path / "live"
    streams = tmp_path / "streams.yaml"
    streams.write_text(f"streams:\n  - name: door\n    camera: {url}\n  - name: desk\n    camera: {sad_url}\n"
                       f"  - name: hall\n    camera: {url}\n")
    process = live(spawn, bundle, "--streams", streams, "--duration", "10", "--serve", "127.0.0.1:0", out=out)
    page_url = wait_for(lambda: next((line.split(" at ")[1].strip() for line in
                                      (out / "stderr.txt").read_text().splitlines() if "live view is at" in line), None))
    browser.get(page_url)
    wait_for(lambda: all(len(read_labels(out, name)) >= 2 for name in ("door", "desk", "hall")), timeout=30)
    tiles = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#tiles .tile[data-labels]"))
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#tiles .tile[data-labels]")) == 3)
    tiles = {tile.get_attribute("data-stream"): tile for tile in browser.find_elements(By.CSS_SELECTOR, "#tiles .tile")}
    assert set(tiles) == {"door", "desk", "hall"}
    assert tiles["desk"].find_element(By.CLASS_NAME, "tile-label").text == "sad"
    assert tiles["door"].find_element(By.CLASS_NAME, "tile-label").text == "happy"
    assert tiles["hall"].find_elements(By.CSS_SELECTOR, ".probs .bar")
    wait_for(lambda: all(browser.execute_script("return arguments[0].querySelector('img').naturalWidth", tile) > 0
                         for tile in tiles.values()))
    assert process.wait(timeout=60) == 0, (out / "stderr.txt").read_text()
    events = read_events(out)
    counts = {e["stream"]: e["results"] for e in events if e["type"] == "stopped"}
    assert set(counts) == {"door", "desk", "hall"} and min(counts.values()) >= 5
    assert max(counts.values()) - min(counts.values()) <= 1  # all keep up: the same share each
    assert {e["label"] for e in events if e["type"] == "result" and e["stream"] == "desk"} == {"sad"}
    assert all("stream" in e for e in events)
    assert PASSWORD not in everything_written(out) + browser.page_source


def read_labels(out: Path, stream: str) -> list[str]:
    return [e["label"] for e in read_events(out) if e["type"] == "result" and e["stream"] == stream]


class StreamRecognizer:
    """A fake backend: slow on the frames of the slow stream (their pixels say which stream they come from)."""

    backend_name = "fake"

    def __init__(self, slow: float, fast: float):
        self.slow, self.fast = slow, fast

    def recognize(self, frames, audio, use_audio=True, **kwargs):
        time.sleep(self.slow if frames[0][0, 0, 0] == 1 else self.fast)
        return Result("happy", "happy", "", "", [1], "not used", {"vision": 1.0}, {"happy": 1.0})


def test_a_slow_stream_never_delays_the_others_beyond_one_recognition():
    slow, fast = 0.6, 0.02
    recognizer = StreamRecognizer(slow, fast)
    scheduler, events = Scheduler(), []
    rings = {name: FrameRing(200) for name in ("slow", "a", "b")}
    sessions = [LiveSession(recognizer, rings[name], None, LiveConfig(window=0.3, stride=0.2), [events.append],
                            name=name, scheduler=scheduler) for name in rings]
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            for name, ring in rings.items():
                ring.push(clock(), np.full((4, 4, 3), 1 if name == "slow" else 0, np.uint8))
            time.sleep(0.02)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        run_sessions(sessions, duration=4.0)
    finally:
        stop.set()
        scheduler.close()
    results = [e for e in events if e["type"] == "result"]
    by_stream = {name: [e for e in results if e["stream"] == name] for name in rings}
    assert len(by_stream["slow"]) >= 3 and len(by_stream["a"]) >= 8 and len(by_stream["b"]) >= 8
    for name in ("a", "b"):  # waited at most for one slow recognition and one fast one
        assert max(e["latency_ms"]["queued"] for e in by_stream[name]) <= (slow + fast) * 1e3 + 150, name
    for session in sessions:
        assert session.windows == session.results + session.dropped + session.skipped + session.failed
    assert sessions[0].dropped > 0  # the slow stream's own windows are dropped while it is recognised, not queued


def test_the_scheduler_keeps_the_newest_window_of_each_stream_in_its_turn():
    scheduler, ran = Scheduler(), []
    gate = threading.Event()
    assert scheduler.offer("a", lambda: (gate.wait(5), ran.append("a1"))) == "queued"
    wait_for(lambda: scheduler.busy("a"), timeout=5)
    assert scheduler.offer("a", lambda: ran.append("a2")) == "busy"  # its window is being recognised: dropped
    assert scheduler.offer("b", lambda: ran.append("b1")) == "queued"
    assert scheduler.offer("c", lambda: ran.append("c1")) == "queued"
    assert scheduler.offer("b", lambda: ran.append("b2")) == "replaced"  # stale: the newest takes b's turn
    gate.set()
    for name in "abc":
        assert scheduler.idle(name, 5)
    scheduler.close()
    assert ran == ["a1", "b2", "c1"]


# ---- streams from the command line and from files ------------------------------------------------------------------
def test_a_url_shows_no_secret():
    url = "rtsp://admin:p%40ss word@cam.local:554/live?channel=1&password=hunter2&token=abc123"
    shown = mask_url(url)
    assert shown == "rtsp://admin:***@cam.local:554/live?channel=1&password=***&token=***"
    text = f"cannot open {url}: 401 for admin:p@ss word and hunter2"
    assert all(secret not in redact(text, url) for secret in ("p%40ss word", "p@ss word", "hunter2", "abc123"))
    assert mask_url("rtsp://cam.local/live") == "rtsp://cam.local/live"


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_a_streams_file_names_each_stream_and_refuses_what_is_wrong(tmp_path, suffix):
    good = tmp_path / f"streams{suffix}"
    if suffix == ".yaml":
        good.write_text("streams:\n  - name: door\n    camera: rtsp://u:pw@10.0.0.5/s\n"
                        "  - name: desk\n    camera: 0\n    microphone: 2\n    window: 6\n    stride: 3\n")
    else:
        good.write_text('[[streams]]\nname = "door"\ncamera = "rtsp://u:pw@10.0.0.5/s"\n\n'
                        '[[streams]]\nname = "desk"\ncamera = 0\nmicrophone = 2\nwindow = 6\nstride = 3\n')
    door, desk = load_streams_file(good)
    assert door.name == "door" and door.camera == "rtsp://u:pw@10.0.0.5/s" and door.shown == "rtsp://u:***@10.0.0.5/s"
    assert desk.camera == 0 and desk.microphone == 2 and (desk.window, desk.stride) == (6.0, 3.0)
    bad = tmp_path / f"bad{suffix}"
    bad.write_text("streams:\n  - name: door\n    camra: 0\n" if suffix == ".yaml" else
                   '[[streams]]\nname = "door"\ncamra = 0\n')
    with pytest.raises(InputError, match=r"stream 1: unknown field\(s\) camra"):
        load_streams_file(bad)
    bad.write_text("streams: [" if suffix == ".yaml" else "[[streams]\n")
    with pytest.raises(InputError, match="not valid"):
        load_streams_file(bad)


def test_the_command_line_refuses_unclear_streams(capsys, toy, tmp_path):
    bundle, _ = toy
    cases = [
        (["--camera", "0", "--source", "a=1"], "--camera and --source: give one of them"),
        (["--source", "a=1", "--source", "a=2"], "stream name 'a' is given twice"),
        (["--source", "a=1", "--mic", "2"], "--mic: with several streams"),
        (["--source", "bad name=1"], "stream name 'bad name' must be"),
        (["--source", f"door=rtsp://u:{PASSWORD}@h:x/s"], "the port is not a number"),
        (["--source", "a=1", "--source", "b=2", "--show"], "--show shows one stream"),
    ]
    for extra, message in cases:
        assert main(["live", "--bundle", str(bundle), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and PASSWORD not in err, (extra, err)
    assert parse_source("door=rtsp://10.0.0.5/s").camera == "rtsp://10.0.0.5/s"


def test_service_install_takes_a_streams_file_and_keeps_passwords_off_the_command_line(toy, tmp_path, capsys):
    bundle, _ = toy
    streams = tmp_path / "streams.yaml"
    streams.write_text(f"streams:\n  - name: door\n    camera: rtsp://viewer:{PASSWORD}@10.0.0.5/s\n")
    streams.chmod(0o644)
    args = ["service", "install", "--print", "--", "--bundle", str(bundle)]
    assert main([*args, "--streams", str(streams)]) == 2
    assert "chmod 600" in capsys.readouterr().err
    streams.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert main([*args, "--streams", os.path.relpath(streams)]) == 0
    unit = capsys.readouterr().out
    assert f"--streams {streams.resolve()}" in unit and PASSWORD not in unit
    assert main([*args, "--source", f"door=rtsp://viewer:{PASSWORD}@10.0.0.5/s"]) == 2
    err = capsys.readouterr().err
    assert "put the camera in a streams file" in err and PASSWORD not in err
    assert main([*args, "--source", "door=rtsp://10.0.0.5/s", "--source", "desk=0"]) == 0
    assert "--source door=rtsp://10.0.0.5/s --source desk=0" in capsys.readouterr().out


# ---- an HTTP MJPEG camera (no sound) -------------------------------------------------------------------------------
@pytest.fixture
def mjpeg_server():
    """An HTTP server on 127.0.0.1 that sends a yellow picture as multipart MJPEG, 10 frames a second, as cheap
    network cameras do."""
    import cv2
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    picture = np.zeros((64, 64, 3), np.uint8)
    picture[:] = (40, 200, 240)  # BGR: the toy's happy yellow
    jpeg = cv2.imencode(".jpg", picture)[1].tobytes()

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                while not stopping.is_set():
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    stopping = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    stopping.set()
    server.shutdown()
    server.server_close()


def test_an_http_mjpeg_camera_runs_video_only(toy, mjpeg_server, tmp_path, capsys):
    bundle, _ = toy
    jsonl = tmp_path / "events.jsonl"
    code = main(["live", "--bundle", str(bundle), "--camera", mjpeg_server, "--duration", "4", "--window", "2",
                 "--stride", "1", "--jsonl", str(jsonl), "--quiet"])
    assert code == 0, capsys.readouterr().err
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    connected = next(e for e in events if e["type"] == "source" and e["status"] == "connected")
    assert connected["audio"] is False and "mjpeg" in connected["detail"]
    results = [e for e in events if e["type"] == "result"]
    assert len(results) >= 2 and all(e["audio"] == "not used" for e in results)
    assert max(e["frames"] for e in results) >= 15  # 10 pictures a second reach the ring (2 s windows)
