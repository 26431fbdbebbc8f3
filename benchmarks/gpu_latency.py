"""The GPU path on an H100 (or any CUDA GPU), in a few minutes: first checks on small inputs that the CUDA path gives
the CPU path's answers (tokens through the static KV cache + CUDA graph, the GPU preprocessing, label mode), then
times the real R1-Omni-0.5B shapes (random weights, bf16): decode tokens/s, clip -> label in label mode (frames and
audio in memory -> label, preprocessing included) and clip -> full reasoning. Needs no PyAV.

    python benchmarks/gpu_latency.py [--tokens 256] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import build_real_recognizer, machine_info, print_header  # noqa: E402


def camera_frames(rng, count: int, height: int = 360, width: int = 640):
    """Smooth content plus sensor noise, like a camera's frames (pure noise is the worst case for resizing)."""
    import numpy as np
    from PIL import Image

    frames = []
    for _ in range(count):
        coarse = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)).astype(int)
        frames.append(np.clip(image + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8))
    return frames


def check_small(device: str) -> dict:
    """The tiny model in fp32: the CUDA path against the CPU path on the same inputs."""
    import numpy as np
    import torch

    from r1omni_edge.media import frames_to_pixels, log_mel
    from r1omni_edge.model import TorchRecognizer
    from r1omni_edge.model.generate import greedy_generate
    from r1omni_edge.model.static_decode import static_greedy_generate
    from r1omni_edge.model.tensor_media import frames_to_pixels_tensor, log_mel_tensor
    from r1omni_edge.synthetic.checkpoint import LIVELY_STD, write_tiny_checkpoint

    rng = np.random.default_rng(0)
    frames = camera_frames(rng, 8)
    square = camera_frames(rng, 8, 224, 224)  # already model-sized: both preprocessing paths are exact
    audio = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_tiny_checkpoint(Path(tmp), decoder_std=LIVELY_STD)
        cpu = TorchRecognizer.from_checkpoint(paths.checkpoint, models_dir=paths.root)
        gpu = TorchRecognizer.from_checkpoint(paths.checkpoint, models_dir=paths.root, device=device)
    torch.manual_seed(0)
    embeds = torch.randn(1, 200, cpu.model.config.hidden_size)
    cpu_tokens = greedy_generate(cpu.model.llm, embeds, set(), 24).token_ids
    graph_tokens = static_greedy_generate(gpu.model.llm, embeds.to(device), set(), 24, use_graph=True).token_ids
    compiled_tokens = static_greedy_generate(gpu.model.llm, embeds.to(device), set(), 24, use_graph=True,
                                             compile=True).token_ids
    pixels = np.abs(frames_to_pixels_tensor(frames, device).cpu().numpy() - frames_to_pixels(frames)).max()
    mel = np.abs(log_mel_tensor(audio, device).cpu().numpy() - log_mel(audio)).max()
    cpu_full = cpu.recognize(square, audio, max_new_tokens=16)
    gpu_full = gpu.recognize(square, audio, max_new_tokens=16)
    cpu_label = cpu.recognize(square, audio, mode="label")
    gpu_label = gpu.recognize(square, audio, mode="label")
    probability_diff = max(abs(cpu_label.probabilities[k] - gpu_label.probabilities[k]) for k in cpu.labels)
    checks = {
        "cuda_graph_tokens_equal_cpu": cpu_tokens == graph_tokens,
        "compiled_graph_tokens_equal_cpu": cpu_tokens == compiled_tokens,
        "pixels_max_abs_diff": float(pixels),
        "pixels_within_one_grey_level": bool(pixels <= 2 / 255 + 1e-5),
        "log_mel_max_abs_diff": float(mel),
        "log_mel_within_1e-3": bool(mel < 1e-3),
        "full_mode_tokens_equal": cpu_full.token_ids == gpu_full.token_ids,
        "label_mode_label_equal": cpu_label.label == gpu_label.label,
        "label_probability_max_abs_diff": probability_diff,
    }
    checks["passed"] = all(v for k, v in checks.items() if k.endswith(("equal", "equal_cpu", "level", "1e-3")))
    return checks


def time_real(device: str, tokens: int, repeats: int) -> dict:
    import numpy as np
    import torch

    from r1omni_edge.model.static_decode import StaticDecoder, static_greedy_generate

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        recognizer = build_real_recognizer(Path(tmp), "bf16", device)
    build_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    frames = camera_frames(rng, 8)
    audio = (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32)

    def timed(**options):
        torch.cuda.synchronize()
        start = time.perf_counter()
        result = recognizer.recognize(frames, audio, **options)
        torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3, result

    first_label_ms, _ = timed(mode="label")  # captures label mode's CUDA graph
    label_runs = [timed(mode="label") for _ in range(repeats + 1)][1:]
    label_ms = statistics.median(ms for ms, _ in label_runs)
    stages = dict(label_runs[-1][1].timings_ms)
    report = {"dtype": "bf16", "model_build_s": round(build_s, 1), "label_mode_first_clip_ms": round(first_label_ms),
              "clip_to_label_ms_label_mode": round(label_ms, 1), "label_mode_stages_ms": stages}
    print("label mode:", json.dumps(report), flush=True)

    torch.manual_seed(0)
    embeds = torch.randn(1, 1000, recognizer.model.config.hidden_size, device=device, dtype=torch.bfloat16) * 0.02
    llm = recognizer.model.llm
    for name, compile in (("graph", False), ("compiled_graph", True)):
        try:
            started = time.perf_counter()
            decoder = StaticDecoder(llm, 1000 + tokens + 8, compile=compile)
            runs = [static_greedy_generate(llm, embeds, set(), tokens, decoder=decoder) for _ in range(repeats + 1)]
            report[f"{name}_first_run_s"] = round(time.perf_counter() - started - sum(
                r.decode_ms + r.prefill_ms for r in runs[1:]) / 1e3, 1)  # capture (and compile) included
            decode = statistics.median(r.decode_ms / (len(r.token_ids) - 1) for r in runs[1:])
            report[f"{name}_decode_ms_per_token"] = round(decode, 3)
            report[f"{name}_decode_tokens_per_s"] = round(1000 / decode, 1)
            report[f"{name}_tokens"] = runs[-1].token_ids
            report["prefill_1000_ms"] = round(statistics.median(r.prefill_ms for r in runs[1:]), 1)
        except Exception as exc:  # a failed compile must not hide the graph-only figures
            report[f"{name}_error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        print(name, {k: v for k, v in report.items() if k.startswith(name) and not k.endswith("tokens")}, flush=True)
    if "graph_tokens" in report and "compiled_graph_tokens" in report:
        a, b = report.pop("graph_tokens"), report.pop("compiled_graph_tokens")
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        report["compiled_vs_graph_identical_prefix_tokens"] = same  # bf16 fusion may flip a near-tie late
    recognizer.compile = "compiled_graph_decode_ms_per_token" in report
    timed(mode="full", max_new_tokens=tokens)  # capture (and compile) the recognizer's own decoder
    full_ms, full = timed(mode="full", max_new_tokens=tokens)
    report.update({"clip_to_full_reasoning_ms": round(full_ms, 1), "full_reasoning_tokens": len(full.token_ids),
                   "full_reasoning_compiled": recognizer.compile,
                   "full_reasoning_stages_ms": dict(full.timings_ms),
                   "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)})
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu_latency.json")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark is for GPUs (see benchmarks/latency.py for the CPU)")
    info = machine_info()
    try:
        info["gpu_driver"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    print_header("GPU path: static KV cache + CUDA graph, preprocessing on the GPU", info)
    check = check_small("cuda")
    print("small-input checks against the CPU path:", json.dumps(check), flush=True)
    timing = time_real("cuda", args.tokens, args.repeats)
    report = {"benchmark": "gpu_latency", "machine": info, "check": check, **timing}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    best = max((timing.get(f"{n}_decode_tokens_per_s", 0), n) for n in ("graph", "compiled_graph"))
    print("label-mode stages (ms):", json.dumps(timing["label_mode_stages_ms"]))
    print("| device | decode tok/s, graph | decode tok/s, compiled + graph | prefill 1,000 pos | "
          "clip -> label (label mode) | clip -> 256 tokens of reasoning |")
    print("|---|---|---|---|---|---|")
    print(f"| {torch.cuda.get_device_name()} | {timing.get('graph_decode_tokens_per_s')} | "
          f"{timing.get('compiled_graph_decode_tokens_per_s')} | {timing.get('prefill_1000_ms')} ms | "
          f"{timing['clip_to_label_ms_label_mode']} ms | {timing['clip_to_full_reasoning_ms']} ms "
          f"({best[1]}) |")
    if not check["passed"]:
        sys.exit("the CUDA path disagrees with the CPU path on small inputs (see the checks above)")


if __name__ == "__main__":
    main()
