"""`r1omni-edge serve`: the HTTP recognition service, as a real server on 127.0.0.1: concurrent clients get what
`predict --json` prints, the queue's limit, bad uploads, the token rules, and no uploaded file left behind."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from r1omni_edge.cli.main import main
from r1omni_edge.http_service import RecognitionService, ServiceSettings, build_app
from r1omni_edge.live.web import HttpServer, ServeAddress
from r1omni_edge.recognition import RecognitionOptions
from r1omni_edge.result import Result

requests = pytest.importorskip("requests")
pytest.importorskip("multipart")
TOKEN = "a-service-token-of-enough-length"


def start_serve(spawn, bundle: Path, tmp: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`serve` as its own process, its temporary files under ``tmp``; -> (process, base URL)."""
    env = dict(os.environ, TMPDIR=str(tmp))
    process = spawn([sys.executable, "-m", "r1omni_edge.cli", "serve", "--bundle", bundle, "--port", "0", *extra],
                    stderr=subprocess.PIPE, text=True, env=env)
    line = process.stderr.readline()
    assert "the recognition service is at http://" in line, line + process.stderr.read()
    return process, line.split(" at ")[1].strip().split("/docs")[0]


def without_timings(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "timings_ms"}


def predict_json(capsys, bundle: Path, clip: Path, *extra: str) -> dict:
    assert main(["predict", str(clip), "--bundle", str(bundle), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_twenty_concurrent_clients_get_what_predict_prints(bundles, clips, tmp_path, spawn, capsys):
    bundle = bundles["fp32"][1]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process, url = start_serve(spawn, bundle, scratch, "--queue", "20", "--max-new-tokens", "24")
    before = set(scratch.iterdir())  # what the libraries keep there (onnxruntime's session id file)
    chosen = [clips["av"], clips["video_only"], clips["short"]]
    expected = {clip: without_timings(predict_json(capsys, bundle, clip, "--max-new-tokens", "24")) for clip in chosen}
    expected_label = {clip: without_timings(predict_json(capsys, bundle, clip, "--max-new-tokens", "24", "--mode",
                                                         "label")) for clip in chosen[:1]}

    def post(index: int):
        clip = chosen[index % len(chosen)]
        if index % 2:  # half as the raw body, half as a multipart upload
            response = requests.post(f"{url}/v1/recognize", data=clip.read_bytes(), timeout=120,
                                     headers={"Content-Type": "video/mp4"})
        else:
            response = requests.post(f"{url}/v1/recognize", files={"file": (clip.name, clip.read_bytes())},
                                     timeout=120)
        return clip, response

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    for index, (clip, response) in enumerate(answers):
        assert response.status_code == 200, response.text
        named = clip.name if index % 2 == 0 else "the uploaded clip"  # a note names the upload, not a device path
        wanted = dict(expected[clip], notes=[note.replace(str(clip), named) for note in expected[clip]["notes"]])
        assert without_timings(response.json()) == wanted
    response = requests.post(f"{url}/v1/recognize?mode=label", data=chosen[0].read_bytes(), timeout=60)
    assert without_timings(response.json()) == expected_label[chosen[0]]  # options as query fields
    response = requests.post(f"{url}/v1/recognize", files={"file": ("a.mp4", chosen[0].read_bytes())},
                             data={"mode": "label"}, timeout=60)
    assert without_timings(response.json()) == expected_label[chosen[0]]  # and as form fields
    health = requests.get(f"{url}/v1/health", timeout=5).json()
    assert health["status"] == "ok" and health["answered"] == 22 and health["busy"] == 0
    info = requests.get(f"{url}/v1/info", timeout=5).json()
    assert info["precision"] == "fp32" and info["labels"] and info["backend"] and info["versions"]["r1omni-edge"]
    api = requests.get(f"{url}/openapi.json", timeout=5).json()
    assert set(api["paths"]) == {"/v1/recognize", "/v1/health", "/v1/info"}
    assert "r1omni-edge recognition service" in requests.get(f"{url}/docs", timeout=5).text
    assert set(scratch.iterdir()) == before  # no upload left on disk
    process.terminate()  # uvicorn stops gracefully, then dies of the signal it caught: the shell says 143
    assert process.wait(timeout=30) == -signal.SIGTERM


def test_bad_uploads_are_one_line_each_and_leave_nothing_behind(bundles, clips, tmp_path, spawn):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process, url = start_serve(spawn, bundles["fp32"][1], scratch, "--max-upload-mb", "0.5")
    before = set(scratch.iterdir())
    truncated = clips["av"].read_bytes()[: clips["av"].stat().st_size // 3]
    cases = {
        "empty": (b"", 400, "the upload is empty"),
        "text": (b"just some words, not a video\n" * 20, 400, "ffmpeg cannot read this file as a video"),
        "truncated": (truncated, 400, "the uploaded clip"),
        "oversized": (b"\0" * 600_000, 413, "bytes"),
    }
    for name, (body, status, message) in cases.items():
        for multipart in (False, True):
            if multipart:
                response = requests.post(f"{url}/v1/recognize", files={"file": (f"{name}.mp4", body)}, timeout=60)
            else:
                response = requests.post(f"{url}/v1/recognize", data=body, timeout=60)
            assert response.status_code == status, (name, multipart, response.text)
            error = response.json()["error"]
            assert message in error or (multipart and status == 400 and f"{name}.mp4" in error), (name, error)
            assert "\n" not in error and str(scratch) not in error and "Traceback" not in error
    response = requests.post(f"{url}/v1/recognize?mode=loud", data=clips["av"].read_bytes(), timeout=60)
    assert response.status_code == 400 and "--mode must be" in response.json()["error"]
    response = requests.post(f"{url}/v1/recognize?colour=red", data=clips["av"].read_bytes(), timeout=60)
    assert response.status_code == 400 and "unknown option(s) colour" in response.json()["error"]
    assert requests.get(f"{url}/v1/health", timeout=5).json()["status"] == "ok"  # it goes on
    assert set(scratch.iterdir()) == before


class SlowRecognizer:
    """Takes ``seconds`` per clip, so that the queue fills."""

    backend_name = "slow-fake"
    label_sequences = {"happy": [1]}

    def __init__(self, seconds: float):
        self.seconds = seconds

    def check(self, options):
        return options

    def recognize_file(self, path, use_audio=True, options=None):
        time.sleep(self.seconds)
        return Result("happy", "happy", "", "", [1], "present", {"total": 1.0}, {"happy": 1.0})


def test_beyond_the_queue_the_answer_is_503_with_retry_after(clips):
    service = RecognitionService(SlowRecognizer(1.0), RecognitionOptions(), ServiceSettings(queue=1))
    server = HttpServer(build_app(service, None), ServeAddress("127.0.0.1", 0), None).start()
    try:
        url = f"http://127.0.0.1:{server.port}/v1/recognize"
        body = clips["av"].read_bytes()
        barrier = threading.Barrier(6)

        def post(_):
            barrier.wait()
            return requests.post(url, data=body, timeout=30)

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(post, range(6)))
        codes = sorted(response.status_code for response in answers)
        assert codes == [200, 200, 503, 503, 503, 503]  # one running and one waiting; the rest refused at once
        refused = next(response for response in answers if response.status_code == 503)
        assert refused.headers["Retry-After"] == "2" and "try again" in refused.json()["error"]
        assert requests.post(url, data=body, timeout=30).status_code == 200  # and served again once there is room
    finally:
        server.stop()


def test_a_service_beyond_loopback_needs_its_token(bundles, clips, tmp_path, spawn, capsys):
    assert main(["serve", "--bundle", str(bundles["fp32"][1]), "--host", "0.0.0.0", "--no-token"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "without a token" in err
    process, url = start_serve(spawn, bundles["fp32"][1], tmp_path, "--host", "0.0.0.0", "--token", TOKEN)
    local = url.replace("0.0.0.0", "127.0.0.1").split("?")[0]
    assert requests.get(f"{local}/v1/health", timeout=5).status_code == 401
    assert requests.post(f"{local}/v1/recognize", data=clips["av"].read_bytes(), timeout=5).status_code == 401
    response = requests.get(f"{local}/v1/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert response.status_code == 200 and TOKEN not in response.text
    process.terminate()  # uvicorn stops gracefully, then dies of the signal it caught: the shell says 143
    assert process.wait(timeout=30) == -signal.SIGTERM


def test_service_install_writes_a_serve_unit(bundles, tmp_path, capsys):
    code = main(["service", "install", "--command", "serve", "--name", "r1omni-api", "--unit-dir", str(tmp_path),
                 "--env-dir", str(tmp_path / "env"), "--", "--bundle", os.path.relpath(bundles["fp32"][1]), "--host",
                 "0.0.0.0", "--port", "8000", "--token", TOKEN])
    assert code == 0, capsys.readouterr().err
    unit = (tmp_path / "r1omni-api.service").read_text()
    assert f"-m r1omni_edge.cli serve --bundle {bundles['fp32'][1].resolve()}" in unit and TOKEN not in unit
    assert (tmp_path / "env" / "r1omni-api.env").read_text() == f"R1OMNI_EDGE_TOKEN={TOKEN}\n"
