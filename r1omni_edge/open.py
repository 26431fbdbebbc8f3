"""The front door: ``open_recognizer(path)`` opens a bundle with the torch-free engines or a checkpoint with the
PyTorch model, and both come back as the same recognizer; ``check_model`` says whether a directory will open
without loading it. torch is imported only for a checkpoint.

``OPTIONS`` is the one table of which option belongs to which kind of directory. The command line and the batch job
ask it (``kind_options``, ``misplaced``) instead of listing names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle import MANIFEST
from .errors import InputError
from .labels import DEFAULT_LABEL_SET, label_set
from .pipeline.recognizer import Recognizer

KINDS = ("bundle", "checkpoint")


@dataclass(frozen=True)
class Option:
    name: str  # open_recognizer's keyword
    kind: str  # the kind of directory that takes it
    role: str  # bundle: "runtime"; checkpoint: "towers" (where its parts are), "device" (where it runs) or "model"
    dest: str = ""  # the command line's name for it ("resize" for resize_mode); default: its name
    off: Any = None  # its value when not given (a flag's False, --backend's auto)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", self.dest or self.name)

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")


# Which options each kind of directory takes, by what they are about; the order is the order messages list them in.
_ROLES = {
    ("bundle", "runtime"): ("backend", "threads", "check_hashes"),
    ("checkpoint", "model"): ("instruction", "resize_mode", "labels"),
    ("checkpoint", "device"): ("device", "dtype", "compile", "accelerated"),
    ("checkpoint", "towers"): ("models_dir", "siglip", "whisper", "bert", "allow_pickle"),
}
_DEST = {"resize_mode": "resize"}
_OFF = {"backend": "auto", "compile": False, "allow_pickle": False}
OPTIONS = tuple(Option(name, kind, role, _DEST.get(name, ""), _OFF.get(name))
                for (kind, role), names in _ROLES.items() for name in names)


def _given(option: Option, value: Any) -> bool:
    return value is not None and value != option.off


def misplaced(values: dict[str, Any], kind: str, roles: tuple[str, ...] | None = None) -> list[Option]:
    """The options in ``values`` (keyed by their command-line names) given for the kind of directory that does not
    take them; ``roles`` narrows the search to those roles."""
    return [option for option in OPTIONS if option.kind != kind and (roles is None or option.role in roles)
            and _given(option, values.get(option.dest))]


def kind_options(values: dict[str, Any], kind: str, roles: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``open_recognizer``'s options for ``kind`` (of ``roles``), taken from ``values`` (command-line names), the
    given ones only."""
    return {option.name: values[option.dest] for option in OPTIONS
            if option.kind == kind and (roles is None or option.role in roles)
            and _given(option, values.get(option.dest))}


def _given_for(path: str | Path, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options given (by ``open_recognizer``'s names), or an error for an unknown one or one of the other kind."""
    known = {option.name: option for option in OPTIONS}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"open_recognizer got unknown options {unknown}")
    given = {name: value for name, value in options.items() if _given(known[name], value)}
    foreign = sorted(name for name in given if known[name].kind != kind)
    if foreign:
        why = "a bundle fixed them at export" if kind == "bundle" else "they apply to bundles"
        raise InputError(f"{path}: {', '.join(foreign)} cannot be used with a {kind} ({why})")
    return given


def kind_of(path: str | Path, expect: str | None = None) -> str:
    """``bundle`` or ``checkpoint``, or an InputError saying what the directory is not. With ``expect``, a directory
    that is neither is taken as that kind, so that its own loader says precisely what is missing."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return "bundle"
    if (path / "config.json").is_file():
        return "checkpoint"
    if expect is not None:
        return expect
    if not path.is_dir():
        raise InputError(f"{path}: no such directory; pass a bundle (from `r1omni-edge export`) or a checkpoint")
    raise InputError(f"{path}: neither a bundle ({MANIFEST}) nor a checkpoint (config.json)")


def open_recognizer(path: str | Path, expect: str | None = None, **options: Any) -> Recognizer:
    """A bundle or a checkpoint, with the options ``OPTIONS`` lists for its kind. Options left at None (or off) are
    not given. ``expect`` ("bundle" or "checkpoint") refuses the other kind."""
    kind = kind_of(path, expect)
    if expect is not None and kind != expect:
        advice = "export it first (r1omni-edge export)" if kind == "checkpoint" else "pass a checkpoint directory"
        raise InputError(f"{path}: is a {kind}, not a {expect}; {advice}")
    given = _given_for(path, kind, options)
    if kind == "bundle":
        from .engines import BundleRecognizer

        return BundleRecognizer.from_bundle(path, given.get("backend", "auto"), given.get("threads"),
                                            given.get("check_hashes", True))
    from .model import TorchRecognizer
    from .prompt import INSTRUCTION

    device = given.pop("device", "cpu")
    load = {name: given.pop(name, None) for name in ("siglip", "whisper", "bert", "models_dir")}
    return TorchRecognizer.from_checkpoint(
        path, load["siglip"], load["whisper"], load["bert"], load["models_dir"],
        dtype=given.pop("dtype", "bf16" if device == "cuda" else "fp32"), device=device,
        allow_pickle=given.pop("allow_pickle", False), labels=given.pop("labels", DEFAULT_LABEL_SET),
        instruction=given.pop("instruction", INSTRUCTION), resize_mode=given.pop("resize_mode", "stretch"), **given)


def bundle_label_set(manifest, asked: str | None) -> str:
    """The label set a bundle answers with (fixed at export), or an InputError when ``asked`` is another."""
    if asked is not None and asked != manifest.label_set:
        raise InputError(f"--labels {asked}: the bundle answers with the {manifest.label_set} label set, fixed at "
                         f"export; export with --labels {asked}, or drop --labels")
    return manifest.label_set


def check_model(path: str | Path, labels: str | None = None, **options: Any) -> tuple[str, ...]:
    """Whether ``open_recognizer(path, **options)`` will find what it loads, read from the headers only (a manifest,
    a config and the files they name), so that a job can stop with one clear line before it starts workers.
    ``labels``: the label set asked for (a bundle's must be it). -> the label set the model answers with."""
    kind = kind_of(path)
    given = _given_for(path, kind, options)
    if kind == "bundle":
        from .bundle import check_files, read_manifest

        manifest = read_manifest(path)
        check_files(path, manifest, hashes=False)
        return label_set(bundle_label_set(manifest, labels))
    from .config import OmniConfig
    from .model.checkpoint import find_tower_dirs, weight_files

    OmniConfig.from_file(path)
    weight_files(Path(path), given.get("allow_pickle", False))
    find_tower_dirs(Path(path), *(given.get(name) for name in ("siglip", "whisper", "bert", "models_dir")))
    return label_set(labels or DEFAULT_LABEL_SET)
