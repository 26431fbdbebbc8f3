"""The exported bundle's manifest: the one contract between ``export/`` (which writes it) and ``engines/`` (which
reads it). Every file the runtime opens is listed here with its sha256, and the manifest carries a checksum of its
own content; nothing else in the project spells out the bundle's layout. Torch-free.

Layout of a bundle directory:
    manifest.json          this contract
    vision.onnx            8 frames (8, 3, 224, 224) -> (392, hidden); the instruction's gate folded in
    audio.onnx             log-mel (1, 128, 100 * s) -> (100 * s // 6, hidden), s from 1 to 30 seconds (or fixed at
                           audio_seconds by export --audio-seconds: preprocess.audio_window_range says which)
    decoder.onnx           inputs_embeds + position_ids + past KV -> last-position logits + present KV; in int8 and
                           int4 bundles the KV is a buffer of fixed capacity, shared by past and present (written in
                           place by onnxruntime's GroupQueryAttention, valid up to the last position id + 1)
    prefill.onnx           int4 bundles only: the same decoder with int8 weights, for calls of more than one
                           position (4-bit MatMulNBits is several times slower than int8 on long inputs)
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

from .errors import InputError, first_of
from .files import read_json, sha256_file
from .media.audio import CHUNK_SECONDS
from .media.frames import RESIZE_MODES
from .typed import build

FORMAT = "r1omni-edge-bundle"
FORMAT_VERSION = 4  # 2: typed sections, validated on load, the manifest's own checksum; 3: the fused decoder's KV
# buffer and the int4 bundle's prefill part; 4: each int8 part names its weight format (INT8_WEIGHTS). Older bundles
# still load; their int8 parts are full-range ("s8").
READABLE_VERSIONS = (2, 3, 4)
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 16 * 1024 * 1024  # a real-size manifest is about 10 kB
CHECKSUM_FIELD = "manifest_sha256"  # sha256 of the manifest's canonical JSON without this field

# ---- files -------------------------------------------------------------------------------------------------------
PARTS = ("vision", "audio", "decoder")  # every bundle has these
OPTIONAL_PARTS = ("prefill",)  # the decoder for calls of more than one position, where a precision has one
PART_FILES = {"vision": "vision.onnx", "audio": "audio.onnx", "decoder": "decoder.onnx", "prefill": "prefill.onnx"}
EMBEDDINGS_FILE = "embeddings.npy"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
ENGINES_DIR = "engines"
TIMING_CACHE_FILE = f"{ENGINES_DIR}/timing.cache"


def engine_file(part: str) -> str:
    """Where build-engines writes a part's TensorRT engine, relative to the bundle."""
    return f"{ENGINES_DIR}/{part}.plan"


# ---- tensors -----------------------------------------------------------------------------------------------------
VISION_INPUT, VISION_OUTPUT = "pixel_values", "video_embeds"
AUDIO_INPUT, AUDIO_OUTPUT = "input_features", "audio_embeds"
DECODER_EMBEDS, DECODER_POSITIONS, DECODER_LOGITS = "inputs_embeds", "position_ids", "logits"
PAST_KEY, PAST_VALUE = "past_key_values.{layer}.key", "past_key_values.{layer}.value"  # optimum's names
PRESENT_KEY, PRESENT_VALUE = "present.{layer}.key", "present.{layer}.value"
PAST_SEQUENCE, TOTAL_SEQUENCE, SEQUENCE = "past_sequence", "total_sequence", "sequence"  # symbolic dimensions
MEL_FRAMES, AUDIO_POSITIONS = "mel_frames", "audio_positions"  # the audio part's time axis, in and out


def past_key_name(layer: int) -> str:
    return PAST_KEY.format(layer=layer)


def past_value_name(layer: int) -> str:
    return PAST_VALUE.format(layer=layer)


def present_key_name(layer: int) -> str:
    return PRESENT_KEY.format(layer=layer)


def present_value_name(layer: int) -> str:
    return PRESENT_VALUE.format(layer=layer)


def past_names(layers: int) -> list[str]:
    """The decoder's cache inputs in order: key then value of layer 0, 1, ..."""
    return [name for i in range(layers) for name in (past_key_name(i), past_value_name(i))]


def present_names(layers: int) -> list[str]:
    return [name for i in range(layers) for name in (present_key_name(i), present_value_name(i))]


# ---- precisions ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartPlan:
    precision: str  # the part's numbers
    quantizer: str  # how export/quantize.py converts the traced fp32 part: none, fp16, dynamic-int8, matmulnbits-4
    attention: str = "onnx"  # or onnxruntime's fused attention: FUSED (encoders) or FUSED_DECODER


@dataclass(frozen=True)
class PrecisionPlan:
    parts: dict[str, PartPlan]
    embeddings: str  # dtype of embeddings.npy
    tensorrt: bool  # plain ONNX that TensorRT parses (no onnxruntime-only ops)
    min_cosine: float  # verify: per-part cosine against PyTorch
    min_token_agreement: float  # verify: share of clips with identical greedy tokens
    min_label_agreement: float  # verify: share of clips with the same label


# The int8 weight formats of onnxruntime's dynamic quantization (activations are uint8 in each). On x86 CPUs without
# VNNI (AVX2 or AVX-512 without VNNI: older Intel, AMD before Zen 4) onnxruntime multiplies uint8 activations by int8
# weights with vpmaddubsw, whose 16-bit sums of two products saturate for full-range weights (255 x 127 x 2 > 32767,
# onnxruntime's quantization docs); there, a tiny model's full-range int8 vision part kept cosine 0.983 to fp32 and
# its audio part 0.949. 7-bit weights (reduce_range) cannot saturate (255 x 63 x 2 < 32767) and run the very kernels
# of full-range ones on every CPU (VNNI, AMX, AVX2, ARM), at the cost of one bit of weight resolution: cosine 0.9999
# there (benchmarks/int8_formats.py). uint8 weights (U8U8) do not saturate either, but take other kernels.
INT8_WEIGHTS = ("s7", "u8", "s8")
INT8_WEIGHTS_DEFAULT = "s7"
INT8_WEIGHTS_BEFORE_4 = "s8"  # what bundles before format 4 hold
FUSED = "com.microsoft.MultiHeadAttention"
FUSED_DECODER = "com.microsoft.GroupQueryAttention"  # rotary inside, KV buffer shared by past and present
# The one precision table. The int4 bundle's 4 bits go where they pay: the decoder, whose token-by-token decode reads
# every weight per token (memory-bound). The encoders run long sequences through their matrices (compute-bound),
# where onnxruntime's 4-bit MatMulNBits was 3.7x slower than dynamic int8 on the Whisper encoder (8.9 s against
# 2.4 s on 2 cores, benchmarks/results/latency.json of 2026-11-26), so they stay int8. Bundles that need
# onnxruntime's own ops anyway (int8, int4) also get its fused attention in the encoders and the decoder. The int4
# bundle's prefill runs with int8 weights: MatMulNBits took 18 to 25 ms for a (700, 896) x (896, 4864) product where
# int8 took 2.1 ms, while for one position it is the faster (0.044 against 0.149 ms; Intel Xeon, 2 threads).
PRECISION_TABLE: dict[str, PrecisionPlan] = {
    "fp32": PrecisionPlan({p: PartPlan("fp32", "none") for p in PARTS}, "float32", True, 0.99999, 1.0, 1.0),
    "fp16": PrecisionPlan({p: PartPlan("fp16", "fp16") for p in PARTS}, "float16", True, 0.999, 0.0, 0.99),
    "int8": PrecisionPlan({"vision": PartPlan("int8", "dynamic-int8", FUSED),
                           "audio": PartPlan("int8", "dynamic-int8", FUSED),
                           "decoder": PartPlan("int8", "dynamic-int8", FUSED_DECODER)}, "float16", False, 0.99, 0.0,
                          0.99),
    "int4": PrecisionPlan({"vision": PartPlan("int8", "dynamic-int8", FUSED),
                           "audio": PartPlan("int8", "dynamic-int8", FUSED),
                           "decoder": PartPlan("int4", "matmulnbits-4", FUSED_DECODER),
                           "prefill": PartPlan("int8", "dynamic-int8", FUSED_DECODER)}, "float16", False, 0.98, 0.0,
                          0.95),
}
PRECISIONS = tuple(PRECISION_TABLE)
PROMPTS = ("video_audio", "video_only")
PLACEHOLDERS = ("video", "audio", "image")


def adapted_front_end_problem(front_end: dict[str, Any]) -> str | None:
    """What is wrong with an adapted front end record, or None."""
    from .media.processor import AUDIO_LAYOUTS, parse_audio_window

    if set(front_end) != {"audio_window", "audio_layout"}:
        return f"expected the fields audio_window and audio_layout, got {sorted(front_end)}"
    try:
        window = parse_audio_window(front_end["audio_window"])
    except InputError as exc:
        return str(exc)
    if window == "full" or front_end["audio_layout"] not in AUDIO_LAYOUTS[1:]:
        return (f"{front_end}: the window must be fit or seconds and the layout one of "
                f"{', '.join(AUDIO_LAYOUTS[1:])}")
    return None


class BundleError(InputError):
    """A bundle directory is incomplete, altered or of another format."""


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
    attention: str = "onnx"  # or FUSED (the encoders' attention) or FUSED_DECODER (attention and KV buffer)
    int8_weights: str | None = None  # int8 parts: one of INT8_WEIGHTS (None before format 4: full-range "s8")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


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
    answer_room: int | None = None  # positions an answer takes past max_new_tokens (bundles before it: computed)


@dataclass
class PreprocessSpec(Section):
    resize_mode: str
    num_frames: int
    image_size: int
    sample_rate: int
    audio_seconds: int  # the default window: 30, the published one
    missing_audio: str = "silence"
    # [shortest, longest] window in seconds the audio part accepts; None (bundles before it): audio_seconds only
    audio_window_range: list[int] | None = None
    # the audio front end the model was adapted to (`train adapt`): {"audio_window": "fit" or seconds,
    # "audio_layout": "compact" or "tail"}; None: the published one
    adapted_front_end: dict[str, Any] | None = None

    @property
    def audio_range(self) -> tuple[int, int]:
        if self.audio_window_range is None:
            return self.audio_seconds, self.audio_seconds
        low, high = self.audio_window_range
        return low, high


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
        if version not in READABLE_VERSIONS:
            raise BundleError(
                f"{source}: bundle format version {version} is not supported by this runtime "
                f"(it reads versions {', '.join(map(str, READABLE_VERSIONS))}); export the bundle again with this "
                "version of r1omni-edge"
            )
        manifest, problems = build(cls, data)
        if not problems:
            problems = manifest.consistency_problems()
        if problems:
            shown = first_of(problems, 8, "; ")
            raise BundleError(f"{source}: the manifest is malformed ({shown}); export the bundle again")
        return manifest

    def consistency_problems(self) -> list[str]:
        """What types alone cannot say: the values must fit together and fit what the runtime does."""
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not set(PARTS) <= set(self.parts) <= set(PARTS + OPTIONAL_PARTS):
            problems.append(f"parts: must be {', '.join(PARTS)} (and optionally {', '.join(OPTIONAL_PARTS)}), found "
                            f"{', '.join(self.parts) or 'none'}")
        for name, part in self.parts.items():
            if part.precision not in PRECISIONS:
                problems.append(f"parts.{name}.precision: {part.precision!r} is not one of {', '.join(PRECISIONS)}")
            if part.int8_weights is not None and part.int8_weights not in INT8_WEIGHTS:
                problems.append(f"parts.{name}.int8_weights: {part.int8_weights!r} is not one of "
                                f"{', '.join(INT8_WEIGHTS)}")
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
        window = self.preprocess.audio_window_range
        if window is not None and (len(window) != 2 or not 1 <= window[0] <= self.preprocess.audio_seconds <= window[1]
                                   or window[1] > CHUNK_SECONDS):
            problems.append(f"preprocess.audio_window_range: {window} must be [shortest, longest] seconds with 1 <= "
                            f"shortest <= audio_seconds ({self.preprocess.audio_seconds}) <= longest <= "
                            f"{CHUNK_SECONDS}")
        adapted = self.preprocess.adapted_front_end
        if adapted is not None and adapted_front_end_problem(adapted):
            problems.append(f"preprocess.adapted_front_end: {adapted_front_end_problem(adapted)}")
        for key in ("num_frames", "image_size", "audio_seconds"):
            if getattr(self.preprocess, key) != getattr(self.model, key):
                problems.append(f"preprocess.{key}: {getattr(self.preprocess, key)} differs from model.{key} "
                                f"{getattr(self.model, key)}")
        expected_io = {"vision": (1, 1), "audio": (1, 1),
                       "decoder": (2 + 2 * self.model.num_layers, 1 + 2 * self.model.num_layers)}
        expected_io["prefill"] = expected_io["decoder"]
        for name, (inputs, outputs) in expected_io.items():
            part = self.parts.get(name)
            if part is not None and (len(part.inputs), len(part.outputs)) != (inputs, outputs):
                problems.append(f"parts.{name}: {len(part.inputs)} inputs and {len(part.outputs)} outputs, expected "
                                f"{inputs} and {outputs} for {self.model.num_layers} layers")
        decoder, prefill = self.parts.get("decoder"), self.parts.get("prefill")
        if prefill is not None and decoder is not None and (prefill.inputs, prefill.outputs, prefill.attention) != (
                decoder.inputs, decoder.outputs, decoder.attention):
            problems.append("parts.prefill: its inputs, outputs and attention must be the decoder's")
        if decoder is not None and decoder.attention == FUSED_DECODER:
            capacity = decoder.inputs[2].shape[2] if len(decoder.inputs) > 2 and len(decoder.inputs[2].shape) == 4 \
                else None
            if not isinstance(capacity, int) or capacity < 1:
                problems.append(f"parts.decoder: a {FUSED_DECODER} decoder needs a KV buffer of a fixed number of "
                                f"positions, found {capacity!r}")
        vision = self.parts.get("vision")
        if vision is not None and vision.inputs and vision.inputs[0].shape[:1] != [self.model.num_frames]:
            problems.append(f"model.num_frames: {self.model.num_frames}, but the vision part takes "
                            f"{vision.inputs[0].shape[:1]} frames")
        for key in ("num_layers", "num_kv_heads", "head_dim", "hidden_size", "max_new_tokens"):
            value = getattr(self.generation if key == "max_new_tokens" else self.model, key)
            if value < 1:
                problems.append(f"{'generation' if key == 'max_new_tokens' else 'model'}.{key}: must be at least "
                                f"1, got {value}")
        if self.generation.answer_room is not None and self.generation.answer_room < 1:
            problems.append(f"generation.answer_room: must be at least 1, got {self.generation.answer_room}")
        return problems

    def part_path(self, directory: Path, part: str) -> Path:
        return directory / self.parts[part].file

    @property
    def kv_capacity(self) -> int | None:
        """The positions the fused decoder's KV buffer holds (prompt and generated tokens together), or None where
        the cache grows without a bound (plain decoders)."""
        decoder = self.parts["decoder"]
        return decoder.inputs[2].shape[2] if decoder.attention == FUSED_DECODER else None

    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    def int8_weights(self) -> dict[str, str]:
        """The weight format of each int8 part (bundles before format 4: full range)."""
        return {name: part.int8_weights or INT8_WEIGHTS_BEFORE_4 for name, part in self.parts.items()
                if part.precision == "int8"}


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
    data = read_json(path, BundleError, "; the manifest is damaged, export the bundle again",
                     max_bytes=MANIFEST_MAX_BYTES)
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
