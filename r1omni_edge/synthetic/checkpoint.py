"""Write a tiny R1-Omni checkpoint in exactly the published layout, beside tiny stock-layout tower directories.

The result looks to the loader like what users download: a HumanOmni config.json (with the authors' absolute tower
paths, which must be ignored), bf16 safetensors under the published names, the Qwen tokenizer files, and SigLIP /
Whisper / BERT directories as Hugging Face publishes them (full SigLIP, Whisper with its decoder, BertForPreTraining).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import TOWER_PRESETS, OmniConfig
from ..model.towers import PUBLISHED_NAMES, TowerConfigs
from .tokenizers import write_bert_tokenizer, write_qwen_tokenizer

CHECKPOINT_NAME = "R1-Omni-tiny"
# Fields the published config.json carries that this project does not use; kept so the loader is tested on them.
PUBLISHED_EXTRAS = {
    "transformers_version": "4.49.0",
    "hyper_layers": None,
    "mm_tunable_parts": "mm_mlp_adapter,audio_projector,mm_language_model",
    "freeze_mm_mlp_adapter": False,
    "tune_mm_mlp_adapter": False,
    "use_cache": True,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "sliding_window": 32768,
    "use_sliding_window": False,
    "max_window_layers": 21,
}


@dataclass
class TinyPaths:
    root: Path
    checkpoint: Path
    siglip: Path
    whisper: Path
    bert: Path


def _write_towers(root: Path, bert_vocab: int) -> TinyPaths:
    from transformers import (BertConfig, BertForPreTraining, SiglipConfig, SiglipModel, WhisperConfig,
                              WhisperForConditionalGeneration)

    preset = TOWER_PRESETS["tiny"]
    paths = TinyPaths(root, root / CHECKPOINT_NAME, *(root / PUBLISHED_NAMES[p] for p in ("siglip", "whisper", "bert")))
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64,
                pad_token_id=1, bos_token_id=2, eos_token_id=3)
    SiglipModel(SiglipConfig(vision_config=preset["siglip"], text_config=text)).save_pretrained(paths.siglip)
    (paths.siglip / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "SiglipImageProcessor", "do_resize": True, "size": {"height": 224, "width": 224},
        "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}, indent=2))
    whisper = dict(preset["whisper"], pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
                   suppress_tokens=[], begin_suppress_tokens=[])
    WhisperForConditionalGeneration(WhisperConfig(**whisper)).save_pretrained(paths.whisper)
    (paths.whisper / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128, "sampling_rate": 16000,
        "hop_length": 160, "n_fft": 400, "chunk_length": 30, "n_samples": 480000, "nb_max_frames": 3000}, indent=2))
    BertForPreTraining(BertConfig(**preset["bert"], vocab_size=bert_vocab)).save_pretrained(paths.bert)
    return paths


LIVELY_STD = 0.25  # decoder weight scale of the tiny model: large enough that greedy output varies token to token
# For training the tiny model on the synthetic task: at 0.02 (transformers' default) a 64-wide decoder barely routes
# the media to the answer (attention is uniform over ~1,000 positions and damped twice), at 0.25 training is
# chaotic; at 0.08 it learns the task (measured: 8 examples fitted and 8 unseen ones right within 60 steps).
TRAINABLE_STD = 0.08


def write_tiny_checkpoint(root: str | Path, seed: int = 0, include_towers: bool = False,
                          decoder_std: float = LIVELY_STD) -> TinyPaths:
    """Write ``root/R1-Omni-tiny`` and the three tower directories under their published names.

    The decoder's weights are drawn with ``decoder_std`` (transformers would use 0.02): a tiny model initialised
    that small repeats one token forever, which would make every token-level comparison in the tests vacuous.
    """
    import torch

    from ..model.checkpoint import tower_tensors, save_model
    from ..model.omni import OmniModel

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's per-shard bar is noise for three tiny files
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    bert_vocab = write_bert_tokenizer(root / PUBLISHED_NAMES["bert"])
    paths = _write_towers(root, bert_vocab)
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        vocab = write_qwen_tokenizer(tokenizer_dir)
        from tokenizers import Tokenizer

        qwen = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
        config = OmniConfig.tiny(vocab_size=max(512, vocab))
        config.bos_token_id = qwen.token_to_id("<|endoftext|>")
        config.eos_token_id = qwen.token_to_id("<|im_end|>")
        config.mm_vision_tower = "/mnt/data/authors/models/siglip-base-patch16-224"  # never read by the loader
        config.mm_audio_tower = "/mnt/data/authors/models/whisper-large-v3"
        config.extra = dict(PUBLISHED_EXTRAS)
        model = OmniModel(config, TowerConfigs.from_dirs(paths.siglip, paths.whisper, paths.bert))
        for part, prefix in (("siglip", "vision_tower."), ("whisper", "audio_tower."), ("bert", "bert_model.")):
            model.load_state_dict(tower_tensors(getattr(paths, part), part, prefix, False), strict=False)
        with torch.no_grad():
            for name, param in model.llm.named_parameters():
                if "norm" not in name:
                    param.normal_(0.0, decoder_std)
        save_model(model, paths.checkpoint, tokenizer_dir=tokenizer_dir, include_towers=include_towers)
    return paths
