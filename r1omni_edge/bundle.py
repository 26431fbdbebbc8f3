"""The exported bundle's manifest: the one contract between ``export/`` (which writes it) and ``runtime/`` (which
reads it). Every file the runtime opens is listed here with its sha256, and the manifest carries a checksum of its
own content; nothing else in the project spells out the bundle's layout. Torch-free.

Layout of a bundle directory:
    manifest.json          this contract
    vision.onnx            8 frames (8, 3, 224, 224) -> (392, hidden); the instruction's gate folded in
    audio.onnx             log-mel (1, 128, 100 * audio_seconds) -> (audio_tokens, hidden)
    decoder.onnx           inputs_embeds + position_ids + past KV -> last-position logits + present KV
    *.onnx.data            external weights of any ONNX part over the protobuf limit
    embeddings.npy         the token embedding table (vocab, hidden)
    tokenizer/             tokenizer.json, tokenizer_config.json
    engines/               TensorRT engines, when build-engines has run

The manifest is validated on load against the typed sections below, and every problem is named by its key
(``parts.vision.precision: expected a string, got 3``), so a hand-edited or damaged manifest never reaches the
runtime as a traceback.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .typed import build

FORMAT = "r1omni-edge-bundle"
FORMAT_VERSION = 2  # 2: typed sections, validated on load, and the manifest's own checksum
MANIFEST = "manifest.json"
CHECKSUM_FIELD = "manifest_sha256"  # sha256 of the manifest's canonical JSON without this field
PRECISIONS = ("fp32", "fp16", "int8", "int4")
PARTS = ("vision", "audio", "decoder")
PART_FILES = {"vision": "vision.onnx", "audio": "audio.onnx", "decoder": "decoder.onnx"}
EMBEDDINGS_FILE = "embeddings.npy"
TOKENIZER_DIR = "tokenizer"
ENGINES_DIR = "engines"
RESIZE_MODES = ("stretch", "pad")
PROMPTS = ("video_audio", "video_only")
PLACEHOLDERS = ("video", "audio", "image")


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


class Section:
    """Read access by key as well as by attribute (``manifest.model["hidden_size"]``), for code written against the
    first, dict-shaped manifest."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


@dataclass
class TensorSpec(Section):
    name: str
    shape: list[int | str]  # ints, or a symbolic dimension name
    dtype: str


@dataclass
class PartSpec(Section):
    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: str
    attention: str = "onnx"  # or "com.microsoft.MultiHeadAttention": the encoders' attention fused (onnxruntime)


@dataclass
class FileSpec(Section):
    sha256: str
    bytes: int


@dataclass
class ModelSpec(Section):
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    num_frames: int
    image_size: int
    visual_tokens: int
    audio_tokens: int
    audio_seconds: int
    n_mels: int
    max_positions: int
    source_checkpoint: str | None = None


@dataclass
class TokenSpec(Section):
    eos_id: int
    pad_id: int
    stop_ids: list[int]
    placeholders: dict[str, int]  # "video", "audio", "image" -> the negative id standing for the media


@dataclass
class PromptSpec(Section):
    ids: list[int]  # the whole prompt, media placeholders included
    prefix_ids: list[int]  # the ids before the first placeholder: their KV is computed once at load


@dataclass
class GenerationSpec(Section):
    max_new_tokens: int
    greedy: bool = True


@dataclass
class PreprocessSpec(Section):
    resize_mode: str
    num_frames: int
    image_size: int
    sample_rate: int
    audio_seconds: int
    missing_audio: str = "silence"


@dataclass
class EnginePartSpec(Section):
    file: str
    profiles: list[dict[str, list[list[int]]]]  # per profile: input name -> [min, opt, max] shape


@dataclass
class EnginesSpec(Section):
    tensorrt_version: str
    device: str
    flags: dict[str, bool]
    parts: dict[str, EnginePartSpec]


@dataclass
class Manifest:
    precision: str
    model: ModelSpec
    parts: dict[str, PartSpec]
    files: dict[str, FileSpec]  # relative path -> sha256 and size
    tokens: TokenSpec
    instruction: str
    gate: list[float]  # the (video, body, face) weights folded into vision.onnx
    prompt: dict[str, PromptSpec]  # "video_audio" / "video_only"
    labels: list[str]
    label_set: str
    generation: GenerationSpec
    preprocess: PreprocessSpec
    tools: dict[str, str]
    engines: EnginesSpec | None = None  # written by build-engines
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = MANIFEST) -> "Manifest":
        """Validate and build; a BundleError lists every problem, each named by its key."""
        if not isinstance(data, dict):
            raise BundleError(f"{source}: the manifest must be a JSON object, not {type(data).__name__}; "
                              "export the bundle again")
        if data.get("format") != FORMAT:
            raise BundleError(f"{source}: not an r1omni-edge bundle manifest (format {data.get('format')!r})")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise BundleError(f"{source}: format_version must be an integer, got {version!r}; the manifest was "
                              "edited or damaged, export the bundle again")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{source}: bundle format version {version} is not supported by this runtime "
                f"(it reads version {FORMAT_VERSION}); export the bundle again with this version of r1omni-edge"
            )
        manifest, problems = build(cls, data)
        if not problems:
            problems = manifest.consistency_problems()
        if problems:
            shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            raise BundleError(f"{source}: the manifest is malformed ({shown}); export the bundle again")
        return manifest

    def consistency_problems(self) -> list[str]:
        """What types alone cannot say: the values must fit together and fit what the runtime does."""
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if sorted(self.parts) != sorted(PARTS):
            problems.append(f"parts: must be exactly {', '.join(PARTS)}, found {', '.join(self.parts) or 'none'}")
        for name, part in self.parts.items():
            if part.precision not in PRECISIONS:
                problems.append(f"parts.{name}.precision: {part.precision!r} is not one of {', '.join(PRECISIONS)}")
            if part.file not in self.files:
                problems.append(f"parts.{name}.file: {part.file!r} is not listed in files")
        if not self.labels:
            problems.append("labels: empty; a bundle answers with at least one label")
        elif len(set(self.labels)) != len(self.labels):
            problems.append("labels: holds a label twice")
        if len(self.gate) != 3:
            problems.append(f"gate: expected 3 weights (video, body, face), got {len(self.gate)}")
        if not self.tokens.stop_ids:
            problems.append("tokens.stop_ids: empty; generation would never stop")
        missing = [p for p in PLACEHOLDERS if p not in self.tokens.placeholders]
        if missing:
            problems.append(f"tokens.placeholders: missing {', '.join(missing)}")
        for name in PROMPTS:
            piece = self.prompt.get(name)
            if piece is None:
                problems.append(f"prompt.{name}: missing")
            elif piece.ids[: len(piece.prefix_ids)] != piece.prefix_ids:
                problems.append(f"prompt.{name}.prefix_ids: not the start of prompt.{name}.ids")
        if self.preprocess.resize_mode not in RESIZE_MODES:
            problems.append(f"preprocess.resize_mode: {self.preprocess.resize_mode!r} is not one of "
                            f"{', '.join(RESIZE_MODES)}")
        for key in ("num_frames", "image_size", "audio_seconds"):
            if getattr(self.preprocess, key) != getattr(self.model, key):
                problems.append(f"preprocess.{key}: {getattr(self.preprocess, key)} differs from model.{key} "
                                f"{getattr(self.model, key)}")
        vision = self.parts.get("vision")
        if vision is not None and vision.inputs and vision.inputs[0].shape[:1] != [self.model.num_frames]:
            problems.append(f"model.num_frames: {self.model.num_frames}, but the vision part takes "
                            f"{vision.inputs[0].shape[:1]} frames")
        for key in ("num_layers", "num_kv_heads", "head_dim", "hidden_size", "max_new_tokens"):
            value = getattr(self.generation if key == "max_new_tokens" else self.model, key)
            if value < 1:
                problems.append(f"{'generation' if key == 'max_new_tokens' else 'model'}.{key}: must be at least "
                                f"1, got {value}")
        return problems

    def part_path(self, directory: Path, part: str) -> Path:
        return directory / self.parts[part].file

    @property
    def num_layers(self) -> int:
        return self.model.num_layers


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(directory: Path, names: list[str]) -> dict[str, FileSpec]:
    """sha256 and size of each listed file (relative paths), for the manifest."""
    return {name: FileSpec(sha256_file(directory / name), (directory / name).stat().st_size) for name in sorted(names)}


def _checksum(data: dict[str, Any]) -> str:
    canonical = json.dumps({k: v for k, v in data.items() if k != CHECKSUM_FIELD}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = Path(directory) / MANIFEST
    data = manifest.to_dict()
    data[CHECKSUM_FIELD] = _checksum(data)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc}); the manifest is damaged, export the bundle again") from exc
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    stored = data.pop(CHECKSUM_FIELD, None) if isinstance(data, dict) else None
    manifest = Manifest.from_dict(data, str(path))
    if stored != _checksum(data):
        raise BundleError(f"{path}: {'has no checksum' if stored is None else 'its checksum does not match'}; the "
                          "manifest was edited or damaged after export, export the bundle again (or copy it again)")
    return manifest


def check_files(directory: str | Path, manifest: Manifest, hashes: bool = True) -> None:
    """Refuse a bundle whose files are missing, resized or changed, naming the first file that is."""
    directory = Path(directory)
    for name, info in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing; the bundle is incomplete, copy it again")
        if path.stat().st_size != info.bytes:
            raise BundleError(
                f"{path}: {path.stat().st_size} bytes, the manifest says {info.bytes}; the file was changed or "
                "truncated, copy or export the bundle again"
            )
        if hashes and sha256_file(path) != info.sha256:
            raise BundleError(
                f"{path}: its sha256 differs from the manifest; the file was changed, copy or export the bundle again"
            )


def load_bundle(directory: str | Path, hashes: bool = True) -> Manifest:
    """Read the manifest and check every file it lists."""
    manifest = read_manifest(directory)
    check_files(directory, manifest, hashes)
    return manifest
