"""The int8 weight formats (bundle.INT8_WEIGHTS) side by side on this CPU: each part's cosine to PyTorch, identical
greedy tokens and label agreement, for the tiny random model and the trained toy, on clips none of them saw. The
speed of the same formats at real size comes from latency.py on three real-size bundles (docs/robustness.md, "int8 on every
x86 CPU"):

    .venv/bin/python benchmarks/int8_formats.py [--models tiny toy] [--formats s8 s7 u8]
    .venv/bin/python benchmarks/real_size_export.py --precision int8 --int8-weights s8 --out out/real-int8-s8  # etc.
    .venv/bin/python benchmarks/latency.py --bundles out/real-int8-s8 out/real-int8-u8 out/real-int8 \\
        --out benchmarks/results/int8_formats

Clips: for the toy, 24 held-out clips of its task written with a seed it was not trained on, and the demo's scene
clip; for both, verify's synthetic patterns; and, where scikit-image and espeak-ng are installed, a face photo
(scikit-image's astronaut) that moves and zooms, with espeak-ng speech: natural pictures and a voice are where int8
activations spread widest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, print_header  # noqa: E402

PARTS = ("vision", "audio", "decoder (prefill logits)", "decoder (step logits)")


def face_and_speech_clip(path: Path) -> Path | None:
    """A photo of a face, panned and zoomed over 3 s, with a spoken sentence; None without scikit-image or
    espeak-ng."""
    try:
        from skimage import data
    except ImportError:
        return None
    if shutil.which("espeak-ng") is None:
        return None
    import av
    import numpy as np
    from PIL import Image

    from r1omni_edge.media import decode_audio

    wav = path.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-w", str(wav), "I can't believe it, this is the best day of my life"], check=True)
    speech = decode_audio(wav)
    photo = Image.fromarray(data.astronaut())
    fps, seconds = 10, 3.0
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 320, 320, "yuv420p"
        sound = container.add_stream("aac", rate=16000)
        sound.layout = "mono"
        for index in range(int(fps * seconds)):
            crop = 380 - 4 * index  # zoom in on the face while panning
            box = (60 + index, 10 + index // 2, 60 + index + crop, 10 + index // 2 + crop)
            frame = np.asarray(photo.crop(box).resize((320, 320), Image.BILINEAR))
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        samples = np.zeros(int(16000 * seconds), np.float32)
        samples[: min(len(speech), len(samples))] = speech[: len(samples)]
        for start in range(0, len(samples), 1024):
            chunk = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            for packet in sound.encode(chunk):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)
    return path


def models(names: list[str], tmp: Path) -> dict:
    """name -> (reference recognizer, export options, clips)."""
    from r1omni_edge.synthetic import TOY_DIR
    from r1omni_edge.model import TorchRecognizer
    from r1omni_edge.synthetic.checkpoint import write_tiny_checkpoint
    from r1omni_edge.synthetic.task import write_scene_clip, write_task

    face = face_and_speech_clip(tmp / "face_and_speech.mp4")
    out = {}
    if "tiny" in names:
        tiny = write_tiny_checkpoint(tmp / "tiny", seed=0)
        out["tiny (random weights)"] = (TorchRecognizer.from_checkpoint(tiny.checkpoint, models_dir=tiny.root),
                                        {}, [face] if face else [])
    if "toy" in names:
        (tmp / "task").mkdir()
        task = write_task(tmp / "task", train=0, held_out=24, seed=7)  # a seed the toy never trained on
        held_out = [tmp / "task" / row["video"] for row in json.loads(task["eval"].read_text())]
        scene, _ = write_scene_clip(tmp / "demo_scenes.mp4")
        reference = TorchRecognizer.from_checkpoint(TOY_DIR / "R1-Omni-toy", models_dir=TOY_DIR, resize_mode="pad",
                                                    labels="dfew")
        out["toy (trained)"] = (reference, dict(labels="dfew", resize_mode="pad"),
                                held_out + [scene] + ([face] if face else []))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "toy"], choices=("tiny", "toy"))
    parser.add_argument("--formats", nargs="+", default=["s8", "s7", "u8"], choices=("s8", "s7", "u8"))
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "int8_formats")
    args = parser.parse_args()

    from r1omni_edge.cpu import int8_support
    from r1omni_edge.export.exporter import ExportOptions, export_bundle
    from r1omni_edge.export.verify import verify_bundle

    info = dict(machine_info(), int8_instructions=int8_support().describe())
    print_header("int8 weight formats: agreement with PyTorch", info)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (reference, options, clips) in models(args.models, tmp).items():
            for weights in args.formats:
                bundle = tmp / f"{name.split()[0]}-{weights}"
                export_bundle(reference, bundle, ExportOptions(precision="int8", int8_weights=weights, **options))
                report = verify_bundle(reference, bundle, clips=clips, synthetic=4,
                                       max_new_tokens=args.max_new_tokens)
                cosines = {p.part: round(p.cosine, 5) for p in report.parts}
                rows.append({"model": name, "int8_weights": weights, **{k: cosines[k] for k in PARTS},
                             "clips": len(report.clips), "identical_tokens": round(report.token_agreement, 3),
                             "label_agreement": round(report.label_agreement, 3), "passes": not report.failures})
                print(json.dumps(rows[-1]), flush=True)
    lines = [f"CPU: {info['processor']}; int8 instructions: {info['int8_instructions']}", "",
             "| model | int8 weights | vision | audio | prefill logits | step logits | clips | identical tokens | "
             "labels | verify |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['int8_weights']} | " + " | ".join(f"{r[k]:.5f}" for k in PARTS)
              + f" | {r['clips']} | {r['identical_tokens']:.0%} | {r['label_agreement']:.0%} | "
              f"{'pass' if r['passes'] else 'FAIL'} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "agreement.json").write_text(json.dumps({"benchmark": "int8_formats", "machine": info,
                                                             "rows": rows}, indent=2) + "\n")
    (args.results / "agreement.md").write_text(table + "\n")
    print(f"wrote {args.results}/agreement.json and agreement.md")


if __name__ == "__main__":
    main()
