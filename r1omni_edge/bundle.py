"""The exported bundle's manifest: the one contract between ``export/`` (which writes it) and ``runtime/`` (which
reads it). Every file the runtime opens is listed here with its sha256; nothing else in the project spells out the
bundle's layout. Torch-free.

Layout of a bundle directory:
    manifest.json          this contract
    vision.onnx            8 frames (8, 3, 224, 224) -> (392, hidden); the instruction's gate folded in
    audio.onnx             log-mel (1, 128, 100 * audio_seconds) -> (audio_tokens, hidden)
    decoder.onnx           inputs_embeds + position_ids + past KV -> last-position logits + present KV
    *.onnx.data            external weights of any ONNX part over the protobuf limit
    embeddings.npy         the token embedding table (vocab, hidden)
    tokenizer/             tokenizer.json, tokenizer_config.json
    engines/               TensorRT engines, when build-engines has run
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

FORMAT = "r1omni-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8", "int4")
PART_FILES = {"vision": "vision.onnx", "audio": "audio.onnx", "decoder": "decoder.onnx"}
EMBEDDINGS_FILE = "embeddings.npy"
TOKENIZER_DIR = "tokenizer"
ENGINES_DIR = "engines"


class BundleError(InputError):
    """A bundle directory is incomplete, altered or of another format."""


def past_key_name(layer: int) -> str:
    return f"past_key_values.{layer}.key"


def past_value_name(layer: int) -> str:
    return f"past_key_values.{layer}.value"


def present_key_name(layer: int) -> str:
    return f"present.{layer}.key"


def present_value_name(layer: int) -> str:
    return f"present.{layer}.value"


@dataclass
class TensorSpec:
    name: str
    shape: list[int | str]  # ints, or a symbolic dimension name
    dtype: str


@dataclass
class PartSpec:
    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: str
    attention: str = "onnx"  # or "com.microsoft.MultiHeadAttention": the encoders' attention fused (onnxruntime)


@dataclass
class Manifest:
    precision: str
    model: dict[str, Any]  # hidden_size, num_layers, num_kv_heads, head_dim, vocab_size, num_frames, ...
    parts: dict[str, PartSpec]
    files: dict[str, dict[str, Any]]  # relative path -> {"sha256", "bytes"}
    tokens: dict[str, Any]  # eos_id, pad_id, stop_ids, placeholders
    instruction: str
    gate: list[float]  # the (video, body, face) weights folded into vision.onnx
    prompt: dict[str, dict[str, list[int]]]  # "video_audio" / "video_only" -> {"ids", "prefix_ids"}
    labels: list[str]
    label_set: str
    generation: dict[str, Any]
    preprocess: dict[str, Any]
    tools: dict[str, str]
    engines: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = MANIFEST) -> "Manifest":
        if data.get("format") != FORMAT:
            raise BundleError(f"{source}: not an r1omni-edge bundle manifest (format {data.get('format')!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"{source}: bundle format version {data.get('format_version')} is not supported by this runtime "
                f"(it reads version {FORMAT_VERSION}); export the bundle again with this version of r1omni-edge"
            )
        try:
            parts = {
                name: PartSpec(
                    file=spec["file"],
                    inputs=[TensorSpec(**t) for t in spec["inputs"]],
                    outputs=[TensorSpec(**t) for t in spec["outputs"]],
                    precision=spec["precision"],
                    attention=spec.get("attention", "onnx"),
                )
                for name, spec in data["parts"].items()
            }
            fields = {k: v for k, v in data.items() if k != "parts"}
            return cls(parts=parts, **fields)
        except (KeyError, TypeError) as exc:
            raise BundleError(f"{source}: the manifest is incomplete or malformed ({exc}); export the bundle again") from exc

    def part_path(self, directory: Path, part: str) -> Path:
        return directory / self.parts[part].file

    @property
    def num_layers(self) -> int:
        return int(self.model["num_layers"])


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """sha256 and size of each listed file (relative paths), for the manifest."""
    return {name: {"sha256": sha256_file(directory / name), "bytes": (directory / name).stat().st_size}
            for name in sorted(names)}


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = Path(directory) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    tmp.replace(path)
    return path


def read_manifest(directory: str | Path) -> Manifest:
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise BundleError(f"{directory}: the bundle directory does not exist; create one with `r1omni-edge export`")
    if not path.is_file():
        raise BundleError(f"{directory}: no {MANIFEST}; this is not a bundle written by `r1omni-edge export`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc}); the manifest is damaged, export the bundle again") from exc
    return Manifest.from_dict(data, str(path))


def check_files(directory: str | Path, manifest: Manifest, hashes: bool = True) -> None:
    """Refuse a bundle whose files are missing, resized or changed, naming the first file that is."""
    directory = Path(directory)
    for name, info in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing; the bundle is incomplete, copy it again")
        if path.stat().st_size != info["bytes"]:
            raise BundleError(
                f"{path}: {path.stat().st_size} bytes, the manifest says {info['bytes']}; the file was changed or "
                "truncated, copy or export the bundle again"
            )
        if hashes and sha256_file(path) != info["sha256"]:
            raise BundleError(
                f"{path}: its sha256 differs from the manifest; the file was changed, copy or export the bundle again"
            )


def load_bundle(directory: str | Path, hashes: bool = True) -> Manifest:
    """Read the manifest and check every file it lists."""
    manifest = read_manifest(directory)
    check_files(directory, manifest, hashes)
    return manifest
