"""Encode once: the frozen towers (SigLIP to layer -2, the Whisper encoder + pooling, the gate's BERT) run once per
clip into an on-disk cache keyed by the clip's content, the towers' weights and the preprocessing. Training reads
the cache and runs only the trainable parts (projectors, gate MLP, LLM): R1-Omni's own trainer re-ran the towers
1 + 2G = 17 times per prompt per step."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..datasets import Sample
from ..files import sha256_file
from ..media import decode_clip, frames_to_pixels, log_mel, silence
from ..media.processor import Processor
from ..model.omni import OmniModel

log = logging.getLogger(__name__)


@dataclass
class ClipFeatures:
    vision: torch.Tensor  # (T, patches, siglip width): SigLIP layer -2
    audio: torch.Tensor  # (500, whisper width): encoder states pooled by 3 (fewer for a shorter window)
    has_audio: bool


def tower_identity(model: OmniModel) -> str:
    """A digest of the three frozen towers' weights (and so of their configs)."""
    digest = hashlib.sha256()
    for part in (model.vision_tower, model.audio_tower, model.bert_model):
        for name, tensor in sorted(part.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def file_digest(path: Path) -> str:
    return sha256_file(path)[:24]


class FeatureCache:
    """``audio_window``: the log-mel window the audio is encoded under (the processor's policies: full, the published
    30 s; fit; seconds), so that window adaptation trains on what the fast front end feeds."""

    def __init__(self, directory: str | Path, model: OmniModel, resize_mode: str = "stretch",
                 audio_window: str | int = "full"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.resize_mode = resize_mode
        self.audio_window = audio_window
        self.towers = tower_identity(model)
        self.hits = self.misses = 0
        self._memory: dict[str, ClipFeatures] = {}

    def key(self, path: Path) -> str:
        window = "" if self.audio_window == "full" else f"-audio{self.audio_window}"
        return f"{file_digest(path)}-{self.towers}-{self.resize_mode}{window}"

    @torch.no_grad()
    def encode(self, path: Path) -> ClipFeatures:
        from ..model.projector import audio_pool

        clip = decode_clip(path, self.model.config.num_frames)
        pixels = torch.from_numpy(frames_to_pixels(clip.frames, self.resize_mode, self.model.config.num_frames))
        waveform = clip.audio if clip.audio is not None else silence()
        seconds = Processor(audio_window=self.audio_window).window_seconds(len(waveform))
        mel = torch.from_numpy(log_mel(waveform, seconds=seconds))
        vision = self.model.vision_features(pixels).float().cpu()
        audio = audio_pool(self.model.audio_states(mel))[0].float().cpu()
        return ClipFeatures(vision, audio, clip.audio is not None)

    def get(self, path: Path) -> ClipFeatures:
        from safetensors.torch import load_file, save_file

        key = self.key(path)
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        file = self.directory / f"{key}.safetensors"
        if file.is_file():
            self.hits += 1
            data = load_file(str(file))
            features = ClipFeatures(data["vision"], data["audio"], bool(data["has_audio"].item()))
        else:
            self.misses += 1
            features = self.encode(path)
            tmp = file.with_suffix(".tmp")
            save_file({"vision": features.vision.contiguous(), "audio": features.audio.contiguous(),
                       "has_audio": torch.tensor(int(features.has_audio))}, str(tmp),
                      metadata={"clip": str(path), "towers": self.towers})
            tmp.replace(file)
        self._memory[key] = features
        return features

    def warm(self, samples: list[Sample], progress=None) -> None:
        """Encode every clip not cached yet (before training starts)."""
        for index, sample in enumerate(samples):
            self.get(sample.video)
            if progress is not None:
                progress(index + 1, len(samples))
        log.info("feature cache %s: %d encoded, %d reused", self.directory, self.misses, self.hits)

    def describe(self) -> str:
        return json.dumps({"directory": str(self.directory), "towers": self.towers, "encoded": self.misses,
                           "reused": self.hits})
