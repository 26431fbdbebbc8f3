"""The model's configuration: reads a published HumanOmni ``config.json`` and names the presets.

One flat dataclass mirrors the published file (which is flat too); unknown fields are kept untouched in ``extra`` so
that saving writes back everything that was read. Torch-free: the runtime and the tools read it too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .files import read_json_object

MODEL_TYPE = "HumanOmni_qwen2"
ARCHITECTURE = "HumanOmniQwen2ForCausalLM"
PROJECTOR_TYPE = "all_in_one_small"
AUDIO_PROJECTOR_TYPE = "mlp2x_gelu"

# How many vectors the media become: the one place the shape rules of the two media paths are written down, for the
# exporter, the runtime, and label mode's graph sizing alike.
PROJECTOR_DOWNSAMPLE = 2  # the projector's branches halve each side of SigLIP's patch grid (14 x 14 -> 7 x 7)
MEL_FRAMES_PER_SECOND = 100  # hop 160 at 16 kHz
WHISPER_CONV_STRIDE = 2  # Whisper's second convolution halves the mel frames
AUDIO_POOL = 3  # the audio path averages encoder states in threes


def visual_tokens(num_frames: int, image_size: int, patch_size: int) -> int:
    """(T, 3, size, size) frames -> T * ((size / patch) / 2) ** 2 vectors: 8 * 49 = 392 for R1-Omni."""
    return num_frames * (image_size // patch_size // PROJECTOR_DOWNSAMPLE) ** 2


def audio_tokens(seconds: int) -> int:
    """``seconds`` of log-mel -> seconds * 100 / 2 / 3 vectors: 500 for the published 30 s window."""
    return seconds * MEL_FRAMES_PER_SECOND // WHISPER_CONV_STRIDE // AUDIO_POOL


# The audio front end a checkpoint was adapted to (`r1omni-edge train adapt`), kept in its config.json beside the
# published fields (exported into the bundle's manifest): {"audio_window": "fit", "audio_layout": "compact"}. A
# checkpoint without it answers as published: under the full 30 s window.
ADAPTED_FRONT_END = "r1omni_edge_adapted_front_end"


def adapted_front_end(config: "OmniConfig") -> dict[str, Any] | None:
    """The front end ``config``'s model was adapted to, or None (the published one)."""
    value = config.extra.get(ADAPTED_FRONT_END)
    return dict(value) if isinstance(value, dict) else None


# Fields without which the model cannot be built; everything else has the published value as its default.
REQUIRED_FIELDS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "mm_hidden_size",
    "mm_projector_type",
)


@dataclass
class OmniConfig:
    """R1-Omni / HumanOmni-Qwen2: the LLM fields, then the multimodal ones. Defaults are R1-Omni-0.5B's."""

    # Qwen2 decoder
    hidden_size: int = 896
    intermediate_size: int = 4864
    num_hidden_layers: int = 24
    num_attention_heads: int = 14
    num_key_value_heads: int = 2
    vocab_size: int = 151936
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = True
    bos_token_id: int = 151643
    eos_token_id: int = 151645
    # multimodal parts
    mm_hidden_size: int = 768  # SigLIP width
    audio_hidden_size: int = 1280  # Whisper encoder width
    mm_projector_type: str = PROJECTOR_TYPE
    mm_audio_projector_type: str = AUDIO_PROJECTOR_TYPE
    mm_vision_select_layer: int = -2
    mm_vision_select_feature: str = "patch"
    mm_use_x_start_end: bool = True
    num_frames: int = 8
    image_aspect_ratio: str = "pad"
    tokenizer_model_max_length: int = 2048
    torch_dtype: str = "bfloat16"
    mm_vision_tower: str = "siglip-base-patch16-224"
    mm_audio_tower: str = "whisper-large-v3"
    # Hard-coded in the published code (a leftover of the 7B); not a config.json field there.
    gate_hidden_size: int = 3584
    # Every other field of the file, written back unchanged on save.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # ---- reading and writing -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config.json") -> "OmniConfig":
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        if "rope_theta" not in data and "rope_theta" not in (data.get("rope_parameters") or {}):
            missing.append("rope_theta")
        if missing:
            raise ConfigError(
                f"{source}: missing required field(s) {', '.join(missing)}; "
                "pass the config.json of a published R1-Omni / HumanOmni checkpoint"
            )
        if data["model_type"] != MODEL_TYPE:
            raise ConfigError(
                f"{source}: model_type is {data['model_type']!r}, expected {MODEL_TYPE!r}; "
                "this is not an R1-Omni / HumanOmni-Qwen2 checkpoint"
            )
        if data["mm_projector_type"] != PROJECTOR_TYPE:
            raise ConfigError(
                f"{source}: mm_projector_type {data['mm_projector_type']!r} is not supported "
                f"(only {PROJECTOR_TYPE!r}, the one R1-Omni uses)"
            )
        audio_type = data.get("mm_audio_projector_type", AUDIO_PROJECTOR_TYPE)
        if audio_type != AUDIO_PROJECTOR_TYPE:
            raise ConfigError(
                f"{source}: mm_audio_projector_type {audio_type!r} is not supported (only {AUDIO_PROJECTOR_TYPE!r})"
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        if "rope_theta" not in values:  # written by transformers 5.x
            values["rope_theta"] = data["rope_parameters"]["rope_theta"]
        for key in ("bos_token_id", "eos_token_id"):
            if isinstance(values.get(key), list):
                values[key] = values[key][0]
        extra = {k: v for k, v in data.items() if k not in known}
        try:
            return cls(**values, extra=extra)
        except TypeError as exc:  # pragma: no cover - dataclass signature mismatch
            raise ConfigError(f"{source}: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> "OmniConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ConfigError(
                f"{path}: no config.json here; pass a checkpoint directory that holds config.json "
                "and the model's *.safetensors files"
            )
        data = read_json_object(path, ConfigError, "; the file is damaged or not a config.json")
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The published layout: transformers-4.49 style (top-level rope_theta), unknown fields preserved."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name not in ("extra", "gate_hidden_size"):
                out[f.name] = getattr(self, f.name)
        out.pop("rope_parameters", None)
        out["model_type"] = MODEL_TYPE
        out.setdefault("architectures", [ARCHITECTURE])
        out.setdefault("hidden_act", "silu")
        out.setdefault("audio_hidden_size", self.audio_hidden_size)
        return dict(sorted(out.items()))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / "config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    # ---- presets ---------------------------------------------------------------------------------------------
    @classmethod
    def real(cls) -> "OmniConfig":
        """R1-Omni-0.5B as published (Qwen2.5-0.5B decoder, SigLIP-base, Whisper-large-v3)."""
        return cls()

    @classmethod
    def tiny(cls, vocab_size: int = 512) -> "OmniConfig":
        """A model of the same architecture small enough for unit tests (matches ``TOWER_PRESETS['tiny']``)."""
        return cls(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=vocab_size,
            max_position_embeddings=4096,
            mm_hidden_size=TOWER_PRESETS["tiny"]["siglip"]["hidden_size"],
            audio_hidden_size=TOWER_PRESETS["tiny"]["whisper"]["d_model"],
            gate_hidden_size=64,
        )


# Tower configurations (kwargs of the transformers config classes). "real" restates the stock checkpoints'
# configs so a real-size model can be built with random weights and no download; "tiny" keeps every shape rule
# of the real ones (224 px, 16 px patches, 128 mel bins, 1500 audio positions) at a fraction of the width.
TOWER_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "real": {
        "siglip": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       image_size=224, patch_size=16, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh"),
        "whisper": dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120,
                        decoder_layers=32, decoder_attention_heads=20, decoder_ffn_dim=5120, num_mel_bins=128,
                        max_source_positions=1500, max_target_positions=448, vocab_size=51866),
        "bert": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                     vocab_size=30522, max_position_embeddings=512),
    },
    "tiny": {
        "siglip": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                       image_size=224, patch_size=16, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh"),
        "whisper": dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=128,
                        max_source_positions=1500, max_target_positions=64, vocab_size=128),
        "bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=512),
    },
}
