"""What a checkpoint directory holds, read from headers alone (no weights loaded): parts, sizes, dtypes, towers,
tokenizer. Backs ``r1omni-edge inspect``."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from ..config import OmniConfig
from ..prompt import WRAPPERS, PromptTokenizer
from .checkpoint import read_headers, to_internal, weight_files

PARTS = ("llm", "vision_tower", "audio_tower", "bert_model", "mm_projector", "bert_gate", "audio_projector")


def inspect_checkpoint(directory: str | Path, allow_pickle: bool = False) -> dict:
    directory = Path(directory)
    config = OmniConfig.from_file(directory)
    files = weight_files(directory, allow_pickle)
    headers = read_headers(files)
    counts: dict[str, int] = defaultdict(int)
    dtypes: dict[str, set[str]] = defaultdict(set)
    other: list[str] = []
    for name, (dtype, shape) in headers.items():
        part = to_internal(name).split(".")[0]
        if part not in PARTS:
            other.append(name)
            continue
        counts[part] += math.prod(shape)
        dtypes[part].add(dtype)
    tokenizer = PromptTokenizer(directory)
    wrappers = [w for pair in WRAPPERS.values() for w in pair]
    return {
        "checkpoint": str(directory),
        "files": [f.name for f in files],
        "config": {
            "model_type": "HumanOmni_qwen2",
            "hidden_size": config.hidden_size,
            "layers": config.num_hidden_layers,
            "heads": f"{config.num_attention_heads} (kv {config.num_key_value_heads})",
            "vocab_size": config.vocab_size,
            "rope_theta": config.rope_theta,
            "num_frames": config.num_frames,
            "mm_hidden_size": config.mm_hidden_size,
            "audio_hidden_size": config.audio_hidden_size,
            "tie_word_embeddings": config.tie_word_embeddings,
            "mm_use_x_start_end": config.mm_use_x_start_end,
        },
        "parts": {p: {"parameters": counts[p], "dtypes": sorted(dtypes[p])} for p in PARTS if counts[p]},
        "total_parameters": sum(counts.values()),
        "towers_inside": {"siglip": counts["vision_tower"] > 0, "whisper": counts["audio_tower"] > 0,
                          "bert": counts["bert_model"] > 0},
        "lm_head_stored": any(n.startswith("lm_head.") for n in headers),
        "unrecognised_tensors": other[:20],
        "tokenizer": {
            "vocab_size": tokenizer.tokenizer.get_vocab_size(),
            "special_tokens": tokenizer.special_tokens(),
            "media_wrappers_are_tokens": {w: tokenizer.tokenizer.token_to_id(w) is not None for w in wrappers},
            "chat_template": "present",
        },
    }


def format_report(report: dict) -> str:
    lines = [f"checkpoint  {report['checkpoint']}  ({', '.join(report['files'])})"]
    lines += [f"  {key:20s} {value}" for key, value in report["config"].items()]
    lines.append("parts:")
    for part, info in report["parts"].items():
        lines.append(f"  {part:20s} {info['parameters'] / 1e6:10.2f} M  {'/'.join(info['dtypes'])}")
    lines.append(f"  {'total':20s} {report['total_parameters'] / 1e6:10.2f} M")
    inside = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in report["towers_inside"].items())
    lines.append(f"towers inside the checkpoint: {inside}")
    lines.append(f"lm_head stored: {'yes' if report['lm_head_stored'] else 'no (tied to the embeddings)'}")
    if report["unrecognised_tensors"]:
        lines.append(f"unrecognised tensors: {', '.join(report['unrecognised_tensors'])}")
    tok = report["tokenizer"]
    specials = ", ".join(f"{k}={v}" for k, v in tok["special_tokens"].items())
    lines.append(f"tokenizer: vocab {tok['vocab_size']}; special tokens {specials}")
    plain = [w for w, is_token in tok["media_wrappers_are_tokens"].items() if not is_token]
    lines.append("media wrappers: " + ("plain text (" + " ".join(plain) + ")" if plain else "all added tokens"))
    return "\n".join(lines)
