"""The valid inputs the mutants start from, written once into a work directory: a tiny checkpoint in the published
layout and its fp32 and int8 bundles, clips in several containers and codecs, a WAV, stills, bundles' manifests,
training configs, a dataset in the published format and archive lists."""

from __future__ import annotations

import json
import os
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@dataclass
class Workdir:
    root: Path
    checkpoint: Path
    models_dir: Path
    bundles: dict[str, Path]  # fp32, int8
    clip: Path  # a valid clip for the manifest and config mutants
    media: dict[str, bytes] = field(default_factory=dict)  # seed name -> file bytes (the name keeps the suffix)
    manifests: dict[str, Any] = field(default_factory=dict)  # bundle name -> manifest document
    configs: dict[str, Any] = field(default_factory=dict)  # "sft" / "grpo" -> config document
    datasets: dict[str, Any] = field(default_factory=dict)  # "train" -> rows
    lists: dict[str, bytes] = field(default_factory=dict)  # "clips.csv" / "clips.jsonl" -> file bytes


def _write_video(path: Path, codec: str, audio_codec: str | None, size=(64, 48), fps=8, seconds=1.5) -> Path:
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height = size
        video.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        sound = None
        if audio_codec:
            sound = container.add_stream(audio_codec, rate=48000 if audio_codec == "libopus" else 44100)
            sound.layout = "stereo"
        for index in range(int(fps * seconds)):
            picture = np.zeros((size[1], size[0], 3), np.uint8)
            picture[:, : (index * 7) % size[0]] = (200, 60 + index * 10 % 150, 40)
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            rate = sound.rate
            t = np.arange(int(rate * seconds)) / rate
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            step = sound.codec_context.frame_size or 1024
            for start in range(0, len(samples) - step + 1, step):
                chunk = np.stack([samples[start:start + step]] * 2)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, start
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return path


def _write_wav(path: Path) -> Path:
    t = np.arange(16000) / 16000
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes((0.3 * np.sin(2 * np.pi * 330 * t) * 32767).astype("<i2").tobytes())
    return path


def write_media_seeds(directory: Path) -> dict[str, bytes]:
    from PIL import Image

    from r1omni_edge.synthetic.clips import write_clip

    directory.mkdir(parents=True, exist_ok=True)
    paths = [write_clip(directory / "clip.mp4", seconds=1.5, fps=8, size=(64, 48), audio=True),
             write_clip(directory / "silent.mp4", seconds=1.0, fps=8, size=(64, 48), audio=False),
             _write_video(directory / "clip.mkv", "libx264", "aac"),
             _write_video(directory / "clip.webm", "libvpx-vp9", "libopus"),
             _write_video(directory / "clip.avi", "mpeg4", None),
             _write_video(directory / "anim.gif", "gif", None, seconds=0.5),
             _write_wav(directory / "tone.wav")]
    picture = np.zeros((48, 64, 3), np.uint8)
    picture[10:30, 20:40] = (250, 200, 30)
    for name in ("still.png", "still.jpg"):
        Image.fromarray(picture).save(directory / name)
        paths.append(directory / name)
    return {path.name: path.read_bytes() for path in paths}


def prepare(root: str | Path) -> Workdir:
    """Everything the mutants start from, under ``root`` (reused when already there)."""
    import yaml

    from r1omni_edge.export.exporter import ExportOptions, export_bundle
    from r1omni_edge.model import TorchRecognizer
    from r1omni_edge.synthetic.checkpoint import write_tiny_checkpoint
    from r1omni_edge.synthetic.task import TOY_GRPO, TOY_SFT, write_task

    root = Path(root)
    models = write_tiny_checkpoint(root / "models", seed=0) if not (root / "models").is_dir() else None
    checkpoint = root / "models" / "R1-Omni-tiny"
    bundles = {p: root / "bundles" / p for p in ("fp32", "int8")}
    if not all((b / "manifest.json").is_file() for b in bundles.values()):
        reference = TorchRecognizer.from_checkpoint(checkpoint, models_dir=root / "models")
        for precision, path in bundles.items():
            if not (path / "manifest.json").is_file():
                export_bundle(reference, path, ExportOptions(precision=precision))
    del models
    media = write_media_seeds(root / "seeds")
    task = write_task(root / "task", train=4, held_out=2, seed=3)
    paths = {"model": str(checkpoint), "models_dir": str(root / "models"), "train_data": str(task["train"]),
             "eval_data": str(task["eval"]), "data_root": str(root / "task"), "output_dir": str(root / "runs"),
             "cache_dir": str(root / "cache")}
    configs = {"sft": dict(TOY_SFT, **paths), "grpo": dict(TOY_GRPO, **paths)}
    for name, config in configs.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
    clip = root / "seeds" / "clip.mp4"
    rows = [{"path": str(clip), "label": "happy"}, {"path": str(root / "seeds" / "silent.mp4"), "label": "sad"}]
    lists = {"clips.csv": ("path,label\n" + "".join(f"{r['path']},{r['label']}\n" for r in rows)).encode(),
             "clips.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode()}
    return Workdir(root=root, checkpoint=checkpoint, models_dir=root / "models", bundles=bundles, clip=clip,
                   media=media,
                   manifests={p: json.loads((b / "manifest.json").read_text()) for p, b in bundles.items()},
                   configs=configs, datasets={"train": json.loads(task["train"].read_text())}, lists=lists)
