"""The GPU path on an H100 (or any CUDA GPU), in under 8 minutes: first checks on small inputs that the CUDA path
(static KV cache + CUDA graph) gives the CPU path's tokens, then times the real R1-Omni-0.5B shapes (random weights,
bf16): decode tokens/s and clip -> label in label mode. Needs no PyAV (frames and 16 kHz audio are made in memory).

    python benchmarks/gpu_latency.py [--tokens 256]
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


def check_small(device: str) -> dict:
    """Tiny model: CPU dynamic greedy vs CUDA static cache + graph, fp32, on the same prompt embeddings."""
    import torch

    from r1omni_edge.model.generate import greedy_generate
    from r1omni_edge.model.static_decode import static_greedy_generate
    from r1omni_edge.model.checkpoint import load_model
    from r1omni_edge.synthetic.checkpoint import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_tiny_checkpoint(Path(tmp))
        model, _ = load_model(paths.checkpoint, models_dir=paths.root)
    torch.manual_seed(0)
    embeds = torch.randn(1, 200, model.config.hidden_size)
    cpu = greedy_generate(model.llm, embeds, set(), 24).token_ids
    model.to(device)
    gpu = static_greedy_generate(model.llm, embeds.to(device), set(), 24, use_graph=True).token_ids
    return {"cpu_tokens": cpu, "cuda_graph_tokens": gpu, "identical": cpu == gpu}


def time_real(device: str, tokens: int, repeats: int) -> dict:
    import numpy as np
    import torch

    from r1omni_edge.media import frames_to_pixels, log_mel
    from r1omni_edge.model.static_decode import StaticDecoder, static_greedy_generate
    from r1omni_edge.runtime.generation import LABEL_ONLY_SUFFIX

    with tempfile.TemporaryDirectory() as tmp:
        recognizer = build_real_recognizer(Path(tmp), "bf16")
    model = recognizer.model.to(device)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (360, 640, 3), dtype=np.uint8) for _ in range(8)]
    audio = (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32)
    instruction = recognizer.instruction
    label_ids = [recognizer.tokenizer.encode_text(label)[0] for label in recognizer.labels]
    ids = recognizer.tokenizer.encode_prompt(instruction) + recognizer.tokenizer.encode_text(LABEL_ONLY_SUFFIX)

    def clip_to_label() -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        pixels = torch.from_numpy(frames_to_pixels(frames)).to(device)
        mel = torch.from_numpy(log_mel(audio)).to(device)
        with torch.inference_mode():
            gate = recognizer.gate(instruction)
            embeds = model.embed(ids, model.encode_video(pixels, gate), model.encode_audio(mel))
            logits = StaticDecoder(model.llm, embeds.shape[1] + 2).prefill(embeds)
            int(logits[0, label_ids].argmax())
        torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3

    clip_ms = [clip_to_label() for _ in range(repeats + 1)][1:]
    torch.manual_seed(0)
    embeds = torch.randn(1, 1000, model.config.hidden_size, device=device, dtype=torch.bfloat16) * 0.02
    runs = [static_greedy_generate(model.llm, embeds, set(), tokens) for _ in range(repeats + 1)][1:]
    decode = statistics.median(r.decode_ms / (len(r.token_ids) - 1) for r in runs)
    prefill = statistics.median(r.prefill_ms for r in runs)
    return {"clip_to_label_ms_label_mode": round(statistics.median(clip_ms), 1), "decode_ms_per_token": round(decode, 3),
            "decode_tokens_per_s": round(1000 / decode, 1), "prefill_1000_ms": round(prefill, 1), "dtype": "bf16"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu_latency.json")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark is for GPUs (see benchmarks/latency.py for the CPU)")
    info = machine_info()
    try:
        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    print_header("GPU path: static KV cache + CUDA graph", info)
    check = check_small("cuda")
    print(f"small-input check: CUDA graph tokens identical to the CPU path: {check['identical']}")
    if not check["identical"]:
        print(json.dumps(check))
        sys.exit(1)
    timing = time_real("cuda", args.tokens, args.repeats)
    report = {"benchmark": "gpu_latency", "machine": info, "check": check, **timing}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| device | decode tok/s (bf16, graph) | prefill 1,000 pos | clip -> label (label mode) |")
    print("|---|---|---|---|")
    print(f"| {info.get('cuda')} | {timing['decode_tokens_per_s']} | {timing['prefill_1000_ms']} ms | "
          f"{timing['clip_to_label_ms_label_mode']} ms |")


if __name__ == "__main__":
    main()
