"""Load and save R1-Omni checkpoints in the published layout (HF directory, bf16 safetensors, Qwen tokenizer).

The published ``config.json`` names tower paths on the authors' machines; they are never read. Towers come from
directories given by argument, or from one models directory holding them under their published names, and their
weights are taken from the checkpoint itself whenever it holds copies.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import OmniConfig
from ..errors import CheckpointError
from ..files import atomic_directory, read_json
from .omni import OmniModel, check_tower_widths
from .towers import PUBLISHED_NAMES, STOCK_PREFIXES, TowerConfigs

# published prefix <-> internal prefix; the first match wins, so the specific ones come first
NAME_MAP = (
    ("model.vision_tower.vision_tower.vision_model.", "vision_tower."),
    ("model.audio_tower.audio_tower.", "audio_tower."),
    ("model.mm_projector.", "mm_projector."),
    ("model.bert_gate.", "bert_gate."),
    ("model.bert_model.", "bert_model."),
    ("model.audio_projector.", "audio_projector."),
    ("model.", "llm.model."),
    ("lm_head.", "llm.lm_head."),
)
TOWER_PARTS = ("vision_tower.", "audio_tower.")
# Buffers older transformers saved; harmless to drop.
IGNORED_SUFFIXES = (".position_ids", "rotary_emb.inv_freq")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja", "generation_config.json")
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def _renamed(name: str, pairs) -> str:
    """``name`` with the first matching prefix of (old, new) ``pairs`` replaced."""
    for old, new in pairs:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def to_internal(name: str) -> str:
    return _renamed(name, NAME_MAP)


def to_published(name: str) -> str:
    return _renamed(name, [(internal, published) for published, internal in NAME_MAP])


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name]
    except KeyError:
        raise CheckpointError(f"unknown dtype {name!r}; choose one of fp32, bf16, fp16") from None


# ---- reading weight files -------------------------------------------------------------------------------------
def weight_files(directory: Path, allow_pickle: bool = False) -> list[Path]:
    """The safetensors files of a HF directory (single or sharded); pickled .bin only when explicitly allowed."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index, CheckpointError)
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index}: not a valid safetensors index (no weight_map of tensor name: file)")
        files = [directory / name for name in sorted(set(weight_map.values()))]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{directory}: the index names shard(s) that are missing: {', '.join(absent)}")
        return files
    files = sorted(directory.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(directory.glob("*.bin"))
    if pickles:
        if not allow_pickle:
            raise CheckpointError(
                f"{directory}: holds only pickled weights ({pickles[0].name}); pickle files can run code when loaded. "
                "Convert them to safetensors, or pass --allow-pickle if you trust their source"
            )
        return pickles
    raise CheckpointError(f"{directory}: no weights found (*.safetensors or a model.safetensors.index.json)")


def read_tensors(files: list[Path], keep=lambda name: True) -> dict[str, torch.Tensor]:
    """The tensors whose names ``keep`` accepts, read lazily so unused parts (Whisper's decoder) stay on disk."""
    from safetensors import SafetensorError, safe_open

    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            if path.suffix == ".bin":
                state = torch.load(path, map_location="cpu", weights_only=True)
                tensors.update({k: v for k, v in state.items() if keep(k)})
                continue
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    if keep(name):
                        tensors[name] = handle.get_tensor(name)
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot be read as a weight file ({exc}); it is damaged or truncated") from exc
    return tensors


def read_headers(files: list[Path]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) from safetensors headers, without reading any tensor."""
    import struct

    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for path in files:
        if path.suffix != ".safetensors":
            continue
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) != 8:
                raise CheckpointError(f"{path}: truncated safetensors file")
            size = struct.unpack("<Q", raw)[0]
            try:
                header = json.loads(handle.read(size))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"{path}: damaged safetensors header ({exc})") from exc
        if not isinstance(header, dict):
            raise CheckpointError(f"{path}: damaged safetensors header (not a JSON object)")
        tensors = {name: info for name, info in header.items() if name != "__metadata__"}
        try:
            data_end = max((int(info["data_offsets"][1]) for info in tensors.values()), default=0)
            found = {name: (info["dtype"], tuple(info["shape"])) for name, info in tensors.items()}
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"{path}: damaged safetensors header ({exc!r})") from exc
        stored = path.stat().st_size - 8 - size
        if stored < data_end:
            raise CheckpointError(f"{path}: truncated: the header describes {data_end:,} bytes of tensors but the "
                                  f"file holds {max(stored, 0):,}; the download or copy did not finish, fetch it again")
        out.update(found)
    return out


# ---- locating the towers ---------------------------------------------------------------------------------------
@dataclass
class TowerDirs:
    siglip: Path
    whisper: Path
    bert: Path

    def as_dict(self) -> dict[str, str]:
        return {"siglip": str(self.siglip), "whisper": str(self.whisper), "bert": str(self.bert)}


def find_tower_dirs(
    checkpoint: Path,
    siglip: str | Path | None = None,
    whisper: str | Path | None = None,
    bert: str | Path | None = None,
    models_dir: str | Path | None = None,
) -> TowerDirs:
    """Explicit arguments win; otherwise look in ``models_dir`` (or beside the checkpoint) by published name."""
    given = {"siglip": siglip, "whisper": whisper, "bert": bert}
    roots = [Path(models_dir)] if models_dir else [checkpoint.parent]
    found: dict[str, Path] = {}
    for part, value in given.items():
        if value is not None:
            found[part] = Path(value)
            continue
        candidates = [root / PUBLISHED_NAMES[part] for root in roots]
        hit = next((c for c in candidates if (c / "config.json").is_file()), None)
        if hit is None:
            where = " or ".join(str(c) for c in candidates)
            raise CheckpointError(
                f"no {part} tower directory: looked for {where}; pass --{part} DIR or --models-dir DIR holding "
                f"{', '.join(PUBLISHED_NAMES.values())}"
            )
        found[part] = hit
    for part, path in found.items():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a {part} model directory (no config.json); pass the stock HF directory")
    return TowerDirs(**found)


def tower_tensors(directory: Path, part: str, internal_prefix: str, allow_pickle: bool) -> dict[str, torch.Tensor]:
    prefixes = STOCK_PREFIXES[part]
    files = weight_files(directory, allow_pickle)
    names = set(read_headers(files)) if all(f.suffix == ".safetensors" for f in files) else None
    chosen = next((p for p in prefixes if p and names is not None and any(n.startswith(p) for n in names)), prefixes[-1])
    tensors = read_tensors(files, keep=lambda n: n.startswith(chosen))
    return {internal_prefix + name[len(chosen):]: value for name, value in tensors.items()}


# ---- the load -----------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    checkpoint: str
    towers: dict[str, str]
    towers_from_checkpoint: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    absent_optional: list[str] = field(default_factory=list)


def _optional(name: str, config: OmniConfig) -> bool:
    """Parameters a checkpoint may lack without changing any output."""
    return (
        (name == "llm.lm_head.weight" and config.tie_word_embeddings)
        or name.startswith("bert_model.pooler.")  # the gate reads [CLS], never the pooler
        or name.startswith("vision_tower.head.")  # the pooling head is not used (patch features)
    )


def _key_error(directory: Path, missing: list[str], unexpected: list[str], mismatched: list[str]) -> CheckpointError:
    def listing(title: str, names: list[str]) -> str:
        shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
        return f"{title} ({len(names)}): {shown}"

    parts = [listing(t, n) for t, n in (("missing keys", missing), ("unexpected keys", unexpected),
                                         ("shape mismatches", mismatched)) if n]
    return CheckpointError(
        f"{directory}: the weights do not fit the R1-Omni architecture described by its config.json; "
        + "; ".join(parts) + ". Is this a complete R1-Omni / HumanOmni checkpoint?"
    )


def load_model(
    checkpoint: str | Path,
    siglip: str | Path | None = None,
    whisper: str | Path | None = None,
    bert: str | Path | None = None,
    models_dir: str | Path | None = None,
    dtype: str | torch.dtype = "fp32",
    device: str = "cpu",
    allow_pickle: bool = False,
) -> tuple[OmniModel, LoadReport]:
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise CheckpointError(f"{checkpoint}: the checkpoint directory does not exist")
    config = OmniConfig.from_file(checkpoint)
    dirs = find_tower_dirs(checkpoint, siglip, whisper, bert, models_dir)
    towers = TowerConfigs.from_dirs(dirs.siglip, dirs.whisper, dirs.bert)
    check_tower_widths(config, towers, {k: str(v) for k, v in dirs.as_dict().items()})
    dtype = parse_dtype(dtype)

    published = read_tensors(weight_files(checkpoint, allow_pickle))
    state = {to_internal(name): value for name, value in published.items()}
    report = LoadReport(str(checkpoint), dirs.as_dict())
    for part, internal in (("siglip", "vision_tower."), ("whisper", "audio_tower."), ("bert", "bert_model.")):
        if any(name.startswith(internal) for name in state):
            report.towers_from_checkpoint.append(part)
        else:
            state.update(tower_tensors(getattr(dirs, part), part, internal, allow_pickle))

    gate_width = state.get("bert_gate.0.weight")
    if gate_width is not None:
        if gate_width.shape[1] != towers.bert.hidden_size:
            raise CheckpointError(
                f"{dirs.bert}: this BERT has hidden_size {towers.bert.hidden_size}, but the checkpoint's gate reads "
                f"{gate_width.shape[1]}; pass the BERT the checkpoint was trained with"
            )
        config.gate_hidden_size = gate_width.shape[0]

    model = OmniModel(config, towers)
    expected = model.state_dict()
    report.ignored = sorted(n for n in state if n not in expected and n.endswith(IGNORED_SUFFIXES))
    for name in report.ignored:
        del state[name]
    missing = sorted(n for n in expected if n not in state and not _optional(n, config))
    report.absent_optional = sorted(n for n in expected if n not in state and _optional(n, config))
    unexpected = sorted(n for n in state if n not in expected)
    mismatched = sorted(f"{to_published(n)} {tuple(state[n].shape)} vs {tuple(expected[n].shape)}"
                        for n in state if n in expected and state[n].shape != expected[n].shape)
    if missing or unexpected or mismatched:
        raise _key_error(checkpoint, [to_published(n) for n in missing], [to_published(n) for n in unexpected],
                         mismatched)
    model.load_state_dict(state, strict=False)
    if config.tie_word_embeddings:
        model.llm.tie_weights()
    model.to(device=device, dtype=dtype).eval()
    return model, report


# ---- the save -----------------------------------------------------------------------------------------------------
def published_state_dict(model: OmniModel, include_towers: bool = False,
                         dtype: torch.dtype | None = torch.bfloat16,
                         source: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The model's weights under their published names; ``source`` replaces ``model.state_dict()`` (the full state a
    sharded trainer gathered)."""
    state: dict[str, torch.Tensor] = {}
    for name, value in (source if source is not None else model.state_dict()).items():
        if name.endswith(IGNORED_SUFFIXES):
            continue
        if name == "llm.lm_head.weight" and model.config.tie_word_embeddings:
            continue  # tied to the embedding table, stored once as published
        if name.startswith(TOWER_PARTS) and not include_towers:
            continue
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        state[to_published(name)] = value.contiguous()
    return state


def save_model(model: OmniModel, directory: str | Path, tokenizer_dir: str | Path | None = None,
               include_towers: bool = False, dtype: str | torch.dtype = "bf16", extra=None,
               state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write config.json, model.safetensors and the tokenizer files atomically (a temp dir, then a rename).

    ``extra(staging_dir)`` may add files (a trainer's state) that land in the same atomic swap; ``state`` replaces
    the model's own weights (see ``published_state_dict``)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    with atomic_directory(directory) as staging:
        dtype_name = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}[parse_dtype(dtype)]
        dataclasses.replace(model.config, torch_dtype=dtype_name).save(staging)
        save_file(published_state_dict(model, include_towers, parse_dtype(dtype), state),
                  str(staging / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer_dir is not None:
            for name in TOKENIZER_FILES:
                source = Path(tokenizer_dir) / name
                if source.is_file():
                    shutil.copy2(source, staging / name)
        if extra is not None:
            extra(staging)
    return directory
