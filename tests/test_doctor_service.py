"""The headless device's tools: `doctor` (what this machine can run), `service install` (a systemd unit that runs
live recognition at boot) and the JSONL rotation a long-running service relies on."""

import configparser
import json
import shlex
import shutil
import stat
import subprocess
import sys

import pytest

from r1omni_edge.cli import main
from r1omni_edge.cli.doctor import MISSING, OK, run_checks


def by_name(checks):
    return {check.name: check for check in checks}


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA GPU")
def test_doctor_reports_this_machine(bundles):
    checks = by_name(run_checks(bundles["fp32"][1]))
    assert checks["onnxruntime"].status == OK and "CPUExecutionProvider" in checks["onnxruntime"].detail
    assert checks["CUDAExecutionProvider"].status == MISSING and "onnxruntime-gpu" in checks["CUDAExecutionProvider"].fix
    assert checks["TensorRT"].status == MISSING and checks["TensorRT"].fix
    assert checks["NVIDIA GPU"].status == MISSING
    assert checks["cpu"].status == OK and checks["cpu"].area == "bundle" and "fp32" in checks["cpu"].detail
    assert checks["cuda"].status == MISSING and checks["engine"].status == MISSING
    assert checks["PyAV"].status == OK and checks["web view (--serve)"].status == OK


def test_doctor_names_a_missing_module_and_its_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["doctor", "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["onnxruntime"]["status"] == MISSING and "pip install onnxruntime" in checks["onnxruntime"]["fix"]
    assert "CUDAExecutionProvider" not in checks  # nothing to ask a missing onnxruntime
    assert checks["web view (--serve)"]["status"] == MISSING and "uvicorn" in checks["web view (--serve)"]["detail"]
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "[ x ] onnxruntime" in text and "-> pip install onnxruntime" in text


def test_a_jsonl_rotates_by_size_and_keeps_every_line(tmp_path):
    from r1omni_edge.live.sinks import JsonlSink

    sink = JsonlSink(tmp_path / "events.jsonl", max_bytes=400, backups=50)
    for index in range(40):
        sink({"type": "result", "index": index, "label": "happy"})
    sink.close()
    parts = sorted(tmp_path.glob("events.jsonl*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    assert len(parts) > 3 and all(p.stat().st_size <= 400 for p in parts)
    lines = [json.loads(line)["index"] for part in parts for line in part.read_text().splitlines()]
    assert lines == list(range(40))  # oldest part first: every event once, in order
    kept = JsonlSink(tmp_path / "few.jsonl", max_bytes=400, backups=2)
    for index in range(40):
        kept({"type": "result", "index": index})
    kept.close()
    assert sorted(p.name for p in tmp_path.glob("few.jsonl*")) == ["few.jsonl", "few.jsonl.1", "few.jsonl.2"]


def test_service_install_writes_a_unit_whose_command_runs(bundles, clips, tmp_path, capsys):
    units, env = tmp_path / "units", tmp_path / "env"
    jsonl = tmp_path / "log" / "events.jsonl"
    code = main(["service", "install", "--name", "r1omni-test", "--unit-dir", str(units), "--env-dir", str(env),
                 "--", "--bundle", str(bundles["fp32"][1]), "--camera", str(clips["av"]), "--no-mic", "--jsonl",
                 str(jsonl), "--jsonl-max-mb", "0.001", "--serve", "0.0.0.0:0", "--mode", "label", "--window", "1",
                 "--stride", "0.5"])
    out = capsys.readouterr().out
    assert code == 0 and "systemctl enable --now r1omni-test" in out
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(units / "r1omni-test.service")
    service = unit["Service"]
    assert service["Restart"] == "always" and unit["Install"]["WantedBy"] == "multi-user.target"
    token_file = env / "r1omni-test.env"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip().split("=", 1)[1]
    assert len(token) >= 24 and token not in (units / "r1omni-test.service").read_text()
    command = shlex.split(service["ExecStart"])
    assert command[:4] == [sys.executable, "-m", "r1omni_edge.cli", "live"]
    # what systemd would run, for as long as the clip lasts, with the environment file's token
    done = subprocess.run(command, env={"R1OMNI_EDGE_TOKEN": token, "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"?token={token}" in done.stderr  # the URL the journal shows
    parts = list(jsonl.parent.glob("events.jsonl*"))
    assert len(parts) >= 2  # rotated at 1 kB
    events = [json.loads(line) for part in parts for line in part.read_text().splitlines()]
    assert any(e["type"] == "result" for e in events) and any(e["type"] == "stopped" for e in events)


@pytest.mark.parametrize("extra, message", [
    (["--duration", "5"], "--duration: a service runs until it is stopped"),
    (["--show"], "--show: a service has no display"),
    (["--serve", "0.0.0.0:8080", "--no-token"], "without a token would show the camera"),
    (["--bogus"], "are not what `r1omni-edge live` takes"),
])
def test_service_install_refuses_what_cannot_run_at_boot(bundles, tmp_path, capsys, extra, message):
    code = main(["service", "install", "--unit-dir", str(tmp_path), "--", "--bundle", str(bundles["fp32"][1]),
                 *extra])
    assert code == 2 and message in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_the_jetson_recipe_installs_what_the_project_declares():
    """The Dockerfile cannot be built here (no Docker, no Jetson): its references to this repository are checked."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = (root / "docker" / "jetson" / "Dockerfile").read_text()
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for copied in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in copied.split():
            assert (root / path).exists(), path
    installed = re.findall(r'pip install "\.\[([a-z,]+)\]"', text)
    assert installed == ["live"] and "runtime" not in installed[0]  # onnxruntime-gpu instead of the CPU build
    assert not any(name.startswith("onnxruntime") for name in extras["live"])
    assert re.search(r"^ARG BASE=nvcr\.io/nvidia/l4t-jetpack:r36", text, re.M) and "onnxruntime-gpu" in text
    assert 'CMD ["doctor"]' in text


def test_doctor_exits_non_zero_for_a_missing_or_damaged_bundle(bundles, tmp_path, capsys):
    assert main(["doctor", "--bundle", str(tmp_path / "nowhere")]) == 2
    assert "the bundle directory does not exist" in capsys.readouterr().out
    damaged = tmp_path / "damaged"
    shutil.copytree(bundles["fp32"][1], damaged)
    data = bytearray((damaged / "vision.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    (damaged / "vision.onnx").write_bytes(bytes(data))
    assert main(["doctor", "--bundle", str(damaged), "--json"]) == 2
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out) if c["area"] == "bundle"}
    assert checks["files"]["status"] == MISSING and "sha256 differs" in checks["files"]["detail"]
    assert main(["doctor", "--bundle", str(bundles["fp32"][1])]) == 0


def _format_3(bundle, out):
    """The bundle as format 3 wrote it: its int8 parts without a weight format (full range)."""
    from r1omni_edge.bundle import read_manifest, write_manifest

    shutil.copytree(bundle, out)
    manifest = read_manifest(out)
    manifest.format_version = 3
    for part in manifest.parts.values():
        part.int8_weights = None
    write_manifest(out, manifest)
    return out


@pytest.mark.parametrize("saturates", [True, False])
def test_doctor_warns_where_a_bundles_int8_weights_saturate(bundles, tmp_path, monkeypatch, capsys, saturates):
    """A format 3 int8 bundle (full-range weights) on a CPU without VNNI: doctor warns, names the fix and exits 1,
    and loading it logs the same warning; on a VNNI CPU, and for a format 4 bundle anywhere, it is right."""
    import logging

    from r1omni_edge import cpu
    from r1omni_edge.engines import BundleRecognizer

    support = cpu.Int8Support("SSE4.1", True) if saturates else cpu.Int8Support("AVX512-VNNI", False)
    monkeypatch.setattr(cpu, "int8_support", lambda: support)
    old = _format_3(bundles["int8"][1], tmp_path / "old-int8")
    code = main(["doctor", "--bundle", str(old), "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["int8 kernels"]["detail"].startswith(support.instructions)
    if saturates:
        assert code == 1 and checks["int8 weights"]["status"] == "warn"
        assert "vision" in checks["int8 weights"]["detail"] and "(SSE4.1)" in checks["int8 weights"]["detail"]
        assert "export --precision int8" in checks["int8 weights"]["fix"]
    else:
        assert code == 0 and checks["int8 weights"]["status"] == OK
    assert main(["doctor", "--bundle", str(bundles["int8"][1])]) == 0  # 7-bit weights: right on every CPU
    capsys.readouterr()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("r1omni_edge.engines.recognizer").addHandler(handler)
    try:
        BundleRecognizer.from_bundle(old, backend="cpu")
    finally:
        logging.getLogger("r1omni_edge.engines.recognizer").removeHandler(handler)
    assert [r.getMessage() for r in records if "saturate" in r.getMessage()] == (
        [records[0].getMessage()] if saturates else [])
