"""What a live run watches: one or several named streams, each a camera (a device index, a video file, a network
URL or a GStreamer pipeline), an optional microphone, and its own window and stride.

From the command line: ``--camera`` (one stream, named ``main``), or ``--source NAME=CAMERA`` repeated, or a streams
file (``--streams FILE``, YAML or TOML), which can also name a microphone per stream and keeps passwords out of the
process list::

    streams:
      - name: door
        camera: rtsp://viewer:secret@10.0.0.5:554/stream1
      - name: desk
        camera: 0
        microphone: USB Audio
        window: 6
        stride: 3
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .network import check_url, is_network_url, mask_url

DEFAULT_STREAM = "main"  # the name of the one stream of `live --camera` and `stream`
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # also a path segment of the web view and of MQTT topics
FIELDS = ("name", "camera", "microphone", "window", "stride")


@dataclass(frozen=True)
class StreamSpec:
    name: str
    camera: str | int
    microphone: str | int | None = None  # None: a network camera's own sound, else none (several streams)
    window: float | None = None  # None: the run's --window
    stride: float | None = None

    @property
    def shown(self) -> str:
        """The camera as events and logs show it (a URL's password masked)."""
        return mask_url(self.camera) if is_network_url(self.camera) else str(self.camera)


def camera_spec(text: str) -> str | int:
    """A device index as an int; anything else (a file, a URL, a pipeline) as given."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if is_network_url(text):
        check_url(text)
    return text


def check_name(name: str, where: str) -> str:
    if not NAME.match(name):
        raise InputError(f"{where}: stream name {name!r} must be 1 to 64 letters, digits, '_', '.' or '-', starting "
                         "with a letter or digit")
    return name


def parse_source(text: str) -> StreamSpec:
    """``NAME=CAMERA`` from ``--source``."""
    name, sep, camera = text.partition("=")
    if not sep or not camera.strip():
        raise InputError(f"--source {mask_url(text) if '://' in text else text}: expected NAME=CAMERA, e.g. "
                         "door=rtsp://10.0.0.5/stream1 or desk=0")
    return StreamSpec(check_name(name.strip(), "--source"), camera_spec(camera))


def load_streams_file(path: str | Path) -> list[StreamSpec]:
    """The streams of a YAML (.yaml, .yml) or TOML (.toml) file: a list under ``streams``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise InputError(f"--streams {path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise InputError(f"--streams {path}: expected a .yaml, .yml or .toml file")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the parsers' own errors: one line naming the file
        raise InputError(f"--streams {path}: not valid {path.suffix[1:].upper()} ({str(exc).splitlines()[0]})"
                         ) from None
    rows = data.get("streams") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise InputError(f"--streams {path}: expected a non-empty list under 'streams' (each with name and camera)")
    return [_spec(row, f"--streams {path}: stream {index + 1}") for index, row in enumerate(rows)]


def _spec(row: Any, where: str) -> StreamSpec:
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a mapping with name and camera")
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}; the fields are "
                         f"{', '.join(FIELDS)}")
    for field in ("name", "camera"):
        if row.get(field) in (None, ""):
            raise InputError(f"{where}: '{field}' is missing")
    numbers = {}
    for field in ("window", "stride"):
        value = row.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise InputError(f"{where}: '{field}' must be a positive number of seconds (got {value!r})")
        numbers[field] = None if value is None else float(value)
    microphone = row.get("microphone")
    return StreamSpec(check_name(str(row["name"]), where), camera_spec(str(row["camera"])),
                      int(microphone) if isinstance(microphone, int) or str(microphone).isdigit() else microphone,
                      **numbers)


def check_streams(specs: list[StreamSpec]) -> list[StreamSpec]:
    """Names unique, at least one stream."""
    if not specs:
        raise InputError("no stream to watch: give --camera, --source NAME=CAMERA or --streams FILE")
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise InputError(f"stream name {spec.name!r} is given twice; every stream needs its own name")
        seen.add(spec.name)
    return specs
