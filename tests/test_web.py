"""The web view (--serve): the page in a real headless browser (Debian's chromium, driven by Selenium through
Debian's chromedriver), and the server's security rules over plain HTTP."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from r1omni_edge.errors import InputError  # noqa: E402
from r1omni_edge.live.rings import AudioRing, FrameRing  # noqa: E402
from r1omni_edge.live.web import ServeAddress, WebHub, WebServer, choose_token, parse_serve  # noqa: E402

TOKEN = "a-test-token-of-enough-length"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str, method: str = "GET", headers: dict | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request(method, path, headers=headers or {})  # the path goes out as written: no normalising
    response = connection.getresponse()
    body = response.read(2000) if response.status != 200 or path.startswith("/?") or path == "/" else b""
    connection.close()
    return response.status, body


@pytest.fixture
def server():
    frames, audio = FrameRing(), AudioRing()
    frames.push(1.0, np.full((48, 64, 3), 128, np.uint8))
    audio.push(1.0, 0.1 * np.ones(1600, np.float32))
    hub = WebHub(frames, audio)
    web = WebServer(hub, ServeAddress("127.0.0.1", 0), TOKEN).start()
    yield web
    web.stop()


def test_every_route_wants_the_token(server):
    for path in ("/", "/events", "/preview.jpg", "/nothing", "/../../etc/passwd"):
        assert get(server.port, path)[0] == 401, path
        assert get(server.port, path + "?token=wrong")[0] == 401, path
    assert get(server.port, f"/?token={TOKEN}")[0] == 200
    assert get(server.port, "/", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    status, _ = get(server.port, f"/preview.jpg?token={TOKEN}")
    assert status == 200


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
                                  "/preview.jpg/../../../etc/passwd", "//etc/passwd", "/web_page.html",
                                  "/r1omni_edge/live/web.py"])
def test_paths_outside_the_three_routes_are_404(server, path):
    status, body = get(server.port, f"{path}?token={TOKEN}")
    assert status == 404 and b"root:" not in body


def test_no_input_beyond_the_token(server):
    assert get(server.port, f"/?token={TOKEN}", method="POST")[0] == 405
    assert get(server.port, f"/events?token={TOKEN}", method="PUT")[0] == 405


def test_events_start_with_a_snapshot_then_follow_the_session(server):
    server.hub({"type": "result", "time": 1.0, "label": "happy", "probabilities": {"happy": 0.9},
                "latency_ms": {"total": 10.0}, "window": [0, 4], "dropped_windows": 0})
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("GET", f"/events?token={TOKEN}")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("content-type").startswith("text/event-stream")
    first = json.loads(response.readline().decode().removeprefix("data: "))
    assert first["type"] == "snapshot" and [r["label"] for r in first["results"]] == ["happy"]
    server.hub({"type": "result", "time": 2.0, "label": "sad", "latency_ms": {"total": 5.0}})
    seen = []
    deadline = time.time() + 5
    while time.time() < deadline and "sad" not in seen:
        line = response.readline().decode().strip()
        if line.startswith("data: "):
            event = json.loads(line[6:])
            seen.append(event.get("label") or event["type"])
            if event["type"] == "level":
                assert event["dbfs"] == pytest.approx(-20.0, abs=0.1)  # 0.1 of full scale
    connection.close()
    assert "sad" in seen


def raw_request(port: int, data: bytes) -> int:
    """Send ``data`` as written; the status code of the answer (0: the server closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.parametrize("request_bytes, status", [
    (f"GET /?token={TOKEN}&q={'x' * 100_000} HTTP/1.1\r\nHost: a\r\n\r\n".encode(), 414),  # a 100 kB query
    (f"GET /{'a' * 9000} HTTP/1.1\r\nHost: a\r\n\r\n".encode(), 414),  # a long path, before the token
    (f"GET /?token={TOKEN} HTTP/1.1\r\nHost: a\r\nX-Big: {'x' * 100_000}\r\n\r\n".encode(), 431),
    (f"GET /?token={TOKEN} HTTP/1.1\r\nHost: a\r\n".encode() + b"".join(
        f"X-H{i}: 1\r\n".encode() for i in range(2000)) + b"\r\n", 431),  # 2,000 headers
    (f"GET /?token={TOKEN} HTTP/1.1\r\nHost: a\r\n".encode() + b"".join(
        f"X-H{i}: {'y' * 1000}\r\n".encode() for i in range(40)) + b"\r\n", 431),  # 40 kB in 40 fields
    (f"GET /?token={TOKEN} HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n".encode() + b"z" * 100_000,
     413),
    (f"GET /?token={TOKEN} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
     .encode(), 413),
    (f"GET /?token={TOKEN} HTTP/1.1\r\nHost: a\r\nX-Big: {'x' * 2_000_000}\r\n\r\n".encode(), 400),  # parser
])
def test_requests_over_a_limit_are_refused_and_the_server_goes_on(server, request_bytes, status):
    assert raw_request(server.port, request_bytes) == status
    assert get(server.port, f"/?token={TOKEN}")[0] == 200  # still serving
    assert raw_request(server.port, f"GET /?token={TOKEN} HTTP/1.1\r\nHost: a\r\n\r\n".encode()) == 200


def test_the_limits_hold_without_a_token_too():
    from r1omni_edge.live.web import LIMITS

    hub = WebHub(FrameRing(), AudioRing())
    web = WebServer(hub, ServeAddress("127.0.0.1", 0), None).start()
    try:
        assert raw_request(web.port, f"GET /?q={'x' * (LIMITS.max_target + 1)} HTTP/1.1\r\nHost: a\r\n\r\n"
                           .encode()) == 414
        assert raw_request(web.port, f"GET /?q={'x' * (LIMITS.max_target - 10)} HTTP/1.1\r\nHost: a\r\n\r\n"
                           .encode()) == 200  # just under the limit
    finally:
        web.stop()


def test_binding_beyond_loopback_needs_a_token(capsys, clips):
    from r1omni_edge.cli import main

    assert choose_token(ServeAddress("127.0.0.1", 8080), None, False) is None
    generated = choose_token(ServeAddress("0.0.0.0", 8080), None, False)
    assert generated and len(generated) >= 24
    assert choose_token(ServeAddress("192.168.1.5", 8080), TOKEN, False) == TOKEN
    with pytest.raises(InputError, match="without a token would show the camera"):
        choose_token(ServeAddress("0.0.0.0", 8080), None, True)
    with pytest.raises(InputError, match="at least 16"):
        choose_token(ServeAddress("0.0.0.0", 8080), "short", False)
    assert parse_serve("8080") == ServeAddress("127.0.0.1", 8080)
    assert parse_serve("[::1]:9000") == ServeAddress("::1", 9000) and parse_serve("[::1]:9000").loopback
    code = main(["stream", str(clips["av"]), "--bundle", "b", "--serve", "0.0.0.0:8080", "--no-token"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "without a token" in err


def test_a_taken_port_is_one_clear_error(server):
    with pytest.raises(InputError, match="cannot listen there"):
        WebServer(server.hub, ServeAddress("127.0.0.1", server.port), None)


# ---- the page in a real browser ---------------------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("R1OMNI_EDGE_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver were found by the test command but not here")
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory):
    from r1omni_edge.synthetic.task import write_scene_clip

    clip, _ = write_scene_clip(tmp_path_factory.mktemp("web") / "demo_scenes.mp4")
    return clip


def start_stream(spawn, bundle: Path, clip: Path, port: int, jsonl: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "r1omni_edge.cli", "stream", str(clip), "--bundle", str(bundle), "--fast",
               "--serve", f"127.0.0.1:{port}", "--jsonl", str(jsonl), "--quiet"]
    process = spawn(command, stderr=subprocess.PIPE, text=True)
    line = process.stderr.readline()  # the URL, once the server listens
    assert "the live view is at http://127.0.0.1:" in line, line
    return process


def stop(process: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    process.send_signal(sig)
    assert process.wait(timeout=30) == 128 + sig  # as a shell reports it: Ctrl-C 130, SIGTERM 143


def wait_for(condition, timeout: float = 60.0, every: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def result_labels(jsonl: Path) -> list[str]:
    events = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    return [e["label"] for e in events if e["type"] == "result"]


def events(jsonl: Path) -> list[dict]:
    return [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []


def clip_over(jsonl: Path) -> bool:
    """The clip has been recognised to its end; the page stays up (the session stops on Ctrl-C or SIGTERM)."""
    return any("the page stays up" in e.get("message", "") for e in events(jsonl))


def test_the_page_shows_the_stream_and_catches_up_after_a_restart(browser, bundles, demo_clip, tmp_path, spawn):
    from selenium.webdriver.common.by import By

    port = free_port()
    first = tmp_path / "first.jsonl"
    process = start_stream(spawn, bundles["fp32"][1], demo_clip, port, first)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        frames = set()
        deadline = time.time() + 120
        while not clip_over(first) and time.time() < deadline:  # the clip starts when the page connects
            frames.add(browser.find_element(By.ID, "preview").get_attribute("data-frame"))
            time.sleep(0.05)
        expected = result_labels(first)
        assert len(expected) >= 3
        shown = wait_for(lambda: (browser.execute_script("return document.body.dataset.labels") or "").split(","))
        wait_for(lambda: browser.execute_script("return document.body.dataset.labels") == ",".join(expected))
        frames.add(wait_for(lambda: browser.find_element(By.ID, "preview").get_attribute("data-frame")))
        assert len(frames - {"", None}) >= 2, f"the preview did not change: {frames}"  # noqa: B950
        assert shown and browser.find_element(By.ID, "label").text == expected[-1]
        bars = browser.find_elements(By.CSS_SELECTOR, "#probabilities .bar")
        assert bars and bars[0].get_attribute("data-label") == expected[-1]  # sorted: the label on top
        wait_for(lambda: browser.find_element(By.ID, "connection").text == "input ended")  # not "live"
        assert browser.find_element(By.ID, "sources").text.endswith("demo_scenes.mp4 ended")  # the source state
        assert browser.execute_script("return document.getElementById('preview').naturalWidth") > 0
        shot = tmp_path / "web-view.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("R1OMNI_EDGE_SCREENSHOT"):  # how docs/web-view.png is made
            shutil.copy(shot, os.environ["R1OMNI_EDGE_SCREENSHOT"])
    finally:
        stop(process)
    assert events(first)[-1]["type"] == "stopped" and events(first)[-1]["reason"] == "interrupted"
    wait_for(lambda: browser.find_element(By.ID, "connection").text == "reconnecting")
    second = tmp_path / "second.jsonl"
    process = start_stream(spawn, bundles["fp32"][1], demo_clip, port, second)
    try:  # the browser reconnects by itself; the new server starts the clip for it
        wait_for(lambda: clip_over(second), timeout=120)
        wait_for(lambda: browser.execute_script("return document.body.dataset.labels") == ",".join(
            result_labels(second)))
        wait_for(lambda: browser.find_element(By.ID, "connection").text == "input ended")
    finally:
        stop(process, signal.SIGTERM)  # what systemctl stop sends, after the clip as during it
    assert events(second)[-1]["type"] == "stopped" and events(second)[-1]["reason"] == "terminated"
    wait_for(lambda: browser.find_element(By.ID, "connection").text == "reconnecting")
