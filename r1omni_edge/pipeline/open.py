"""One entry point for every job: a bundle directory opens the torch-free runtime, a checkpoint directory the
PyTorch model; both come back as the same recognizer. torch is imported only for a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..bundle import MANIFEST
from ..errors import InputError
from .recognizer import Recognizer

# Options that only one kind of directory takes (the other fixed them at export, or has no use for them).
CHECKPOINT_OPTIONS = ("models_dir", "siglip", "whisper", "bert", "allow_pickle", "device", "dtype", "compile",
                      "labels", "instruction", "resize_mode", "accelerated")
BUNDLE_OPTIONS = ("backend", "threads", "check_hashes")


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
    """A bundle (options: backend, threads, check_hashes) or a checkpoint (options: models_dir, siglip, whisper,
    bert, allow_pickle, device, dtype, compile, labels, instruction, resize_mode, accelerated). Options left at
    None are not given. ``expect`` ("bundle" or "checkpoint") refuses the other kind."""
    kind = kind_of(path, expect)
    if expect is not None and kind != expect:
        advice = "export it first (r1omni-edge export)" if kind == "checkpoint" else "pass a checkpoint directory"
        raise InputError(f"{path}: is a {kind}, not a {expect}; {advice}")
    flags_off = {"allow_pickle", "compile"}  # flags whose False is their default, not a choice
    given = {name: value for name, value in options.items()
             if value is not None and not (value is False and name in flags_off)}
    unknown = sorted(set(given) - set(CHECKPOINT_OPTIONS) - set(BUNDLE_OPTIONS))
    if unknown:
        raise TypeError(f"open_recognizer got unknown options {unknown}")
    foreign = sorted(set(given) - set(BUNDLE_OPTIONS if kind == "bundle" else CHECKPOINT_OPTIONS))
    if foreign:
        why = "a bundle fixed them at export" if kind == "bundle" else "they apply to bundles"
        raise InputError(f"{path}: {', '.join(foreign)} cannot be used with a {kind} ({why})")
    if kind == "bundle":
        from ..runtime import Recognizer as BundleRecognizer

        return BundleRecognizer.from_bundle(path, given.get("backend", "auto"), given.get("threads"),
                                            given.get("check_hashes", True))
    from ..model import TorchRecognizer
    from ..prompt import INSTRUCTION

    device = given.pop("device", "cpu")
    load = {name: given.pop(name, None) for name in ("siglip", "whisper", "bert", "models_dir")}
    return TorchRecognizer.from_checkpoint(
        path, load["siglip"], load["whisper"], load["bert"], load["models_dir"],
        dtype=given.pop("dtype", "bf16" if device == "cuda" else "fp32"), device=device,
        allow_pickle=given.pop("allow_pickle", False), labels=given.pop("labels", "mafw"),
        instruction=given.pop("instruction", INSTRUCTION), resize_mode=given.pop("resize_mode", "stretch"), **given)
