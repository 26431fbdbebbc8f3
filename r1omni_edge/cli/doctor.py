"""``r1omni-edge doctor``: what this machine can run, in one screen, and the command that installs each missing
piece. It imports what the runtime would import (never torch: its presence is read from the package metadata) and
opens what a live session would open (cameras, the microphone list, a bundle with each backend)."""

from __future__ import annotations

import argparse
import glob
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

OK, MISSING, INFO, WARN = "ok", "missing", "info", "warn"


@dataclass
class Check:
    area: str
    name: str
    status: str  # ok, missing or info
    detail: str
    fix: str = ""  # the command that installs or fixes it


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module(name: str):
    """The module, or None where it cannot be imported (not installed, or broken: its error is kept)."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - a broken install is reported, not raised
        _module.errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        return None


_module.errors = {}


def _jetson() -> str | None:
    release = Path("/etc/nv_tegra_release")
    if release.is_file():
        return release.read_text(errors="replace").splitlines()[0][:80]
    model = Path("/proc/device-tree/model")
    if model.is_file() and "nvidia" in model.read_text(errors="replace").lower():
        return model.read_text(errors="replace").strip("\x00\n")
    return None


def system_checks() -> list[Check]:
    jetson = _jetson()
    from ..cpu import int8_support

    checks = [Check("system", "python", OK, f"{platform.python_version()} ({sys.executable})"),
              Check("system", "machine", INFO, f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
                    + (f", Jetson: {jetson}" if jetson else "")),
              Check("system", "int8 kernels", INFO, int8_support().describe())]
    for module, distribution, fix in (("numpy", "numpy", "pip install numpy"),
                                      ("tokenizers", "tokenizers", "pip install tokenizers"),
                                      ("PIL", "pillow", "pip install pillow")):
        found = _module(module)
        checks.append(Check("core", distribution, OK if found else MISSING,
                            _version(distribution) or _module.errors.get(module, "not installed"),
                            "" if found else fix))
    av = _module("av")
    if av is not None:
        libraries = getattr(av, "library_versions", {})
        ffmpeg = ".".join(map(str, libraries.get("libavcodec", ()))) or "?"
        checks.append(Check("media", "PyAV", OK, f"{av.__version__} (libavcodec {ffmpeg}): decodes clips"))
    else:
        checks.append(Check("media", "PyAV", MISSING, _module.errors.get("av", "not installed"), "pip install av"))
    ffmpeg = shutil.which("ffmpeg")
    checks.append(Check("media", "ffmpeg (command)", OK if ffmpeg else INFO,
                        ffmpeg or "not on PATH; not needed (PyAV carries its own FFmpeg), handy for tests",
                        "" if ffmpeg else "sudo apt-get install ffmpeg"))
    return checks


def inference_checks() -> list[Check]:
    checks = []
    ort = _module("onnxruntime")
    gpu_fix = ("on Jetson: the onnxruntime-gpu wheel for your JetPack (see docs/device.md, Jetson); on x86 with "
               "NVIDIA: pip uninstall onnxruntime && pip install onnxruntime-gpu")
    if ort is None:
        checks.append(Check("inference", "onnxruntime", MISSING, _module.errors.get("onnxruntime", "not installed"),
                            "pip install onnxruntime   (NVIDIA: onnxruntime-gpu)"))
    else:
        providers = ort.get_available_providers()
        checks.append(Check("inference", "onnxruntime", OK, f"{ort.__version__}, providers: {', '.join(providers)}"))
        for provider, what in (("CUDAExecutionProvider", "the cuda backend"),
                               ("TensorrtExecutionProvider", "the tensorrt backend")):
            present = provider in providers
            checks.append(Check("inference", provider, OK if present else MISSING,
                                f"{what}: {'available' if present else 'not in this onnxruntime'}",
                                "" if present else gpu_fix))
    trt = _module("tensorrt")
    checks.append(Check("inference", "TensorRT", OK if trt else MISSING,
                        trt.__version__ if trt else "not installed: no native engines (build-engines, --backend "
                                                    "engine)",
                        "" if trt else "JetPack ships it (apt-get install python3-libnvinfer); on x86: "
                                       "pip install tensorrt"))
    cuda = _module("cuda.bindings") or _module("cuda")
    checks.append(Check("inference", "cuda-python", OK if cuda else MISSING,
                        (_version("cuda-python") or _version("cuda-bindings") or "present") if cuda else
                        "not installed: native engines need it",
                        "" if cuda else "pip install cuda-python"))
    torch = _version("torch")
    checks.append(Check("inference", "torch", OK if torch else INFO,
                        f"{torch}: export, training and the PyTorch reference" if torch else
                        "not installed: not needed to run bundles (only to export, train, or run --model)",
                        "" if torch else 'pip install "r1omni-edge[torch,export]"'))
    return checks + gpu_checks()


def gpu_checks() -> list[Check]:
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,memory.total,memory.used", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            out = ""
            return [Check("gpu", "NVIDIA GPU", MISSING, f"nvidia-smi failed ({exc})", "check the NVIDIA driver")]
        if out:
            return [Check("gpu", f"GPU {index}", OK, line.strip()) for index, line in enumerate(out.splitlines())]
    if _jetson():
        return [Check("gpu", "Jetson GPU", OK, "integrated (memory shared with the CPU; tegrastats shows its use)")]
    return [Check("gpu", "NVIDIA GPU", MISSING, "none found (no nvidia-smi, not a Jetson): the CPU backend runs",
                  "on a GPU machine: install the NVIDIA driver")]


def device_checks(max_cameras: int = 4) -> list[Check]:
    checks = []
    cv2 = _module("cv2")
    if cv2 is None:
        checks.append(Check("live", "OpenCV", MISSING, _module.errors.get("cv2", "not installed"),
                            'pip install "r1omni-edge[live]"'))
    else:
        devices = sorted(glob.glob("/dev/video*"), key=lambda d: int(d[10:]) if d[10:].isdigit() else 99)
        opened = []
        for device in devices[:max_cameras]:
            index = int(device[10:]) if device[10:].isdigit() else device
            capture = cv2.VideoCapture(index)
            ok, frame = capture.read() if capture.isOpened() else (False, None)
            capture.release()
            if ok:
                opened.append(f"{device} ({frame.shape[1]}x{frame.shape[0]})")
        checks.append(Check("live", "cameras", OK if opened else MISSING,
                            ", ".join(opened) if opened else
                            (f"{', '.join(devices)} present, none gave a frame" if devices else "no /dev/video*"),
                            "" if opened else "plug a camera in (ls /dev/video*), add the user to the video group, "
                                              "or pass --camera FILE|URL"))
    sounddevice = _module("sounddevice")
    if sounddevice is None:
        error = _module.errors.get("sounddevice", "not installed")
        fix = ("sudo apt-get install libportaudio2" if "PortAudio" in error else 'pip install "r1omni-edge[live]"')
        checks.append(Check("live", "microphones", MISSING, error, fix))
    else:
        inputs = [d["name"] for d in sounddevice.query_devices() if d.get("max_input_channels", 0) > 0]
        checks.append(Check("live", "microphones", OK if inputs else MISSING,
                            ", ".join(inputs) if inputs else "sounddevice lists no input device",
                            "" if inputs else "plug a microphone in, or run with --no-mic"))
    web = [name for name in ("starlette", "uvicorn") if _module(name) is None]
    checks.append(Check("live", "web view (--serve)", MISSING if web else OK,
                        f"{', '.join(web)} missing" if web else
                        f"starlette {_version('starlette')}, uvicorn {_version('uvicorn')}",
                        'pip install "r1omni-edge[live]"' if web else ""))
    return checks


def bundle_checks(bundle: str | Path) -> list[Check]:
    """The bundle's files (hashed once), which backends load it here (each tried for real), and whether its int8
    weights saturate on this CPU."""
    from ..bundle import load_bundle
    from ..engines import BACKENDS
    from ..errors import R1OmniError
    from ..engines import BundleRecognizer
    from ..engines.recognizer import saturation_warning

    try:
        manifest = load_bundle(bundle)
    except R1OmniError as exc:  # every backend would say the same
        return [Check("bundle", "files", MISSING, str(exc), "export the bundle again, or copy it again")]
    checks = [Check("bundle", "files", OK, f"{len(manifest.files)} files match the manifest (format "
                                           f"{manifest.format_version})")]
    for backend in [b for b in BACKENDS if b != "auto"]:
        try:
            recognizer = BundleRecognizer.from_bundle(bundle, backend, check_hashes=False)
        except R1OmniError as exc:
            checks.append(Check("bundle", backend, MISSING, str(exc)[:200]))
            continue
        except Exception as exc:  # noqa: BLE001 - a provider that fails to start is reported
            checks.append(Check("bundle", backend, MISSING, f"{type(exc).__name__}: {str(exc)[:160]}"))
            continue
        checks.append(Check("bundle", backend, OK, f"loads: {manifest.precision}, labels {manifest.label_set}, "
                                                   f"{getattr(recognizer, 'backend_name', backend)}"))
    warning = saturation_warning(bundle, manifest)
    if warning:
        checks.append(Check("bundle", "int8 weights", WARN, warning, f"r1omni-edge export --precision "
                                                                     f"{manifest.precision} (this version)"))
    elif manifest.int8_weights():
        formats = sorted(set(manifest.int8_weights().values()))
        checks.append(Check("bundle", "int8 weights", OK, f"{', '.join(formats)}: right on this CPU"))
    return checks


def stream_checks(urls: list[str], timeout: float = 10.0) -> list[Check]:
    """Each network stream given: does it open, how soon its first frame comes, its codecs, whether it has sound.
    URLs are shown with their password masked."""
    from ..live.network import probe

    checks = []
    for url in urls:
        found = probe(url, timeout)
        if found.opened:
            sound = "" if found.has_audio else " (video only: recognised without sound)"
            checks.append(Check("streams", found.url, OK, f"{found.detail}; first frame after "
                                f"{found.first_frame_ms:.0f} ms{sound}"))
        else:
            checks.append(Check("streams", found.url, MISSING, found.detail,
                                "check the URL, the user and password, and that the camera answers from this machine"))
    return checks


def bundle_exit_code(checks: list[Check]) -> int:
    """2: the bundle's files are missing or damaged; 1: no backend loads it, or its answers drift on this CPU;
    0: it runs here (machine checks never fail doctor: a missing GPU is a fact, not an error). A network stream
    given on the command line that does not answer is 1 too."""
    streams_down = any(c.area == "streams" and c.status != OK for c in checks)
    bundle = {c.name: c for c in checks if c.area == "bundle"}
    if not bundle:
        return 1 if streams_down else 0
    if bundle["files"].status != OK:
        return 2
    loads = any(c.status == OK for name, c in bundle.items() if name not in ("files", "int8 weights"))
    return 0 if loads and all(c.status != WARN for c in bundle.values()) and not streams_down else 1


def run_checks(bundle: str | Path | None = None, streams: list[str] | None = None,
               stream_timeout: float = 10.0) -> list[Check]:
    _module.errors.clear()
    checks = system_checks() + inference_checks() + device_checks()
    if streams:
        checks += stream_checks(streams, stream_timeout)
    if bundle is not None:
        checks += bundle_checks(bundle)
    return checks


def format_checks(checks: list[Check]) -> str:
    marks = {OK: "ok ", MISSING: " x ", INFO: " - ", WARN: " ! "}
    width = max(len(c.name) for c in checks) + 1
    lines, area = [], None
    for check in checks:
        if check.area != area:
            area = check.area
            lines.append(f"{area}:")
        lines.append(f"  [{marks[check.status]}] {check.name:<{width}} {check.detail}")
        if check.fix:
            lines.append(f"  {'':5} {'':<{width}} -> {check.fix}")
    return "\n".join(lines)


def as_dicts(checks: list[Check]) -> list[dict]:
    return [asdict(check) for check in checks]


def register(sub) -> None:
    doctor = sub.add_parser("doctor", help="what this machine can run: Python, onnxruntime and its providers, "
                                           "TensorRT, GPUs, cameras, microphones, PyAV, and a bundle's backends")
    doctor.add_argument("--bundle", metavar="DIR", help="also check this bundle: its files, every backend, its int8 "
                                                        "weights on this CPU (exit 2: damaged, 1: does not run right "
                                                        "here)")
    doctor.add_argument("--stream", action="append", metavar="URL",
                        help="also open this network camera (rtsp://, http(s)://...; repeatable): its first frame, "
                             "codecs and sound (exit 1 when one does not answer)")
    doctor.add_argument("--open-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long a --stream gets to answer (default 10)")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..live.network import check_url, is_network_url, mask_url

    for url in args.stream or []:
        if not is_network_url(url):
            raise InputError(f"--stream {mask_url(url) if '://' in url else url}: not a network URL; expected e.g. "
                             "rtsp://host:554/stream or http://host/video.mjpg")
        check_url(url)
    checks = run_checks(args.bundle, args.stream, args.open_timeout)
    print(json.dumps(as_dicts(checks), indent=2) if args.json else format_checks(checks))
    return bundle_exit_code(checks)
