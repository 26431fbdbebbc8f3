"""The frozen towers, built from transformers: SigLIP vision, the Whisper encoder and BERT (the gate's reader).

Tower directories are the stock Hugging Face ones (full SigLIP, WhisperForConditionalGeneration,
BertForPreTraining); only the part the model uses is read from them, so Whisper's decoder never reaches memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..files import read_json_object

# What each tower's own files call its parts: (prefix in the stock file, the transformers config class's key)
STOCK_PREFIXES = {
    "siglip": ("vision_model.", ""),  # full SiglipModel; "" covers a bare SiglipVisionModel save (5.x)
    "whisper": ("model.encoder.", "encoder."),  # WhisperForConditionalGeneration or WhisperModel
    "bert": ("bert.", ""),  # BertForPreTraining or a bare BertModel
}
PUBLISHED_NAMES = {
    "siglip": "siglip-base-patch16-224",
    "whisper": "whisper-large-v3",
    "bert": "bert-base-uncased",
}


def read_config_json(directory: Path, what: str) -> dict[str, Any]:
    path = directory / "config.json"
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: the {what} directory does not exist")
    if not path.is_file():
        raise CheckpointError(f"{directory}: no config.json; pass the stock Hugging Face {what} directory")
    return read_json_object(path, CheckpointError)


def siglip_config(data: dict[str, Any]):
    from transformers import SiglipVisionConfig

    if data.get("model_type") == "siglip" or "vision_config" in data:
        data = data.get("vision_config") or {}
    data = {k: v for k, v in data.items() if k not in ("model_type", "architectures", "transformers_version")}
    return SiglipVisionConfig(**data)


def whisper_config(data: dict[str, Any]):
    from transformers import WhisperConfig

    data = {k: v for k, v in data.items() if k not in ("model_type", "architectures", "transformers_version")}
    return WhisperConfig(**data)


def bert_config(data: dict[str, Any]):
    from transformers import BertConfig

    data = {k: v for k, v in data.items() if k not in ("model_type", "architectures", "transformers_version")}
    return BertConfig(**data)


@dataclass
class TowerConfigs:
    """transformers configs of the three towers; their widths must fit the checkpoint's config."""

    siglip: Any
    whisper: Any
    bert: Any

    @classmethod
    def from_dirs(cls, siglip_dir: Path, whisper_dir: Path, bert_dir: Path) -> "TowerConfigs":
        return cls(
            siglip_config(read_config_json(siglip_dir, "SigLIP")),
            whisper_config(read_config_json(whisper_dir, "Whisper")),
            bert_config(read_config_json(bert_dir, "BERT")),
        )

    @classmethod
    def preset(cls, name: str) -> "TowerConfigs":
        from ..config import TOWER_PRESETS

        preset = TOWER_PRESETS[name]
        return cls(siglip_config(preset["siglip"]), whisper_config(preset["whisper"]), bert_config(preset["bert"]))


def build_towers(configs: TowerConfigs):
    """Randomly initialised towers with the given configs: (SigLIP vision, Whisper encoder, BERT)."""
    from transformers import BertModel, SiglipVisionModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return SiglipVisionModel(configs.siglip), WhisperEncoder(configs.whisper), BertModel(configs.bert)


def load_bert_tokenizer(directory: Path, max_length: int = 512):
    """The gate's WordPiece tokenizer (bert-base-uncased) from tokenizer.json, or from vocab.txt when that is all."""
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    directory = Path(directory)
    if (directory / "tokenizer.json").is_file():
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    elif (directory / "vocab.txt").is_file():
        tokenizer = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=True)
    else:
        raise CheckpointError(f"{directory}: no tokenizer.json or vocab.txt; pass the stock bert-base-uncased directory")
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    return tokenizer
