"""Per-stage latency of R1-Omni-0.5B (real shapes, random weights, nothing downloaded) side by side in one run:
PyTorch eager fp32 (the reference), transformers' own generate (a peer), and the runtime's bundles; with the physical
floors of this machine measured in the same run. Writes JSON, a markdown table and a PNG to benchmarks/results/.

    .venv/bin/python benchmarks/latency.py --bundles out/real-fp32 out/real-int8 [--tokens 32]

Bundles come from benchmarks/real_size_export.py. Each configuration runs in its own process, so its peak memory
is its own. Decode is timed over a fixed number of tokens (random weights never stop on their own).
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

from common import machine_info, peak_rss_mb, print_header  # noqa: E402
from floors import measure as measure_floors  # noqa: E402

STAGES = ("preprocess", "vision", "audio", "prefill", "decode_per_token")


# ---- one configuration per process ------------------------------------------------------------------------------------
def clip_path(tmp: Path) -> Path:
    from r1omni_edge.synthetic.clips import write_clip

    return write_clip(tmp / "clip.mp4", seconds=3.0, fps=25, size=(640, 360), audio=True)


def run_torch(tokens: int, repeats: int) -> dict:
    from common import build_real_recognizer

    with tempfile.TemporaryDirectory() as tmp:
        recognizer = build_real_recognizer(Path(tmp))
        recognizer.stop_ids = set()
        clip = clip_path(Path(tmp))
        runs = [recognizer.recognize_file(clip, max_new_tokens=tokens).timings_ms for _ in range(repeats + 1)][1:]
    return summarise(runs)


def run_transformers_generate(tokens: int, repeats: int) -> dict:
    """The peer: transformers' generate on the same random-weight Qwen2 decoder, from a prompt of the same length."""
    import torch
    from transformers import Qwen2ForCausalLM

    from r1omni_edge.config import OmniConfig
    from r1omni_edge.model.omni import qwen2_config

    torch.manual_seed(0)
    llm = Qwen2ForCausalLM(qwen2_config(OmniConfig.real())).eval()
    ids = torch.randint(0, 150000, (1, 1000))
    results = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            llm.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
            prefill = time.perf_counter() - start
            start = time.perf_counter()
            llm.generate(ids, max_new_tokens=tokens + 1, min_new_tokens=tokens + 1, do_sample=False)
            total = time.perf_counter() - start
            results.append({"prefill": prefill * 1e3, "decode_per_token": (total - prefill) / tokens * 1e3})
    return summarise(results[1:])


def run_genai(tokens: int, repeats: int, threads: int | None, workdir: Path) -> dict:
    """The peer to beat for decode: onnxruntime-genai's model builder on the same random-weight Qwen2 decoder (int4),
    with intra-op threads set as ours, prompted with 1,000 token ids."""
    import onnxruntime_genai as og
    import torch
    from transformers import Qwen2ForCausalLM

    from r1omni_edge.config import OmniConfig
    from r1omni_edge.model.omni import qwen2_config

    built = workdir / "genai-int4"
    if not (built / "genai_config.json").is_file():
        source = workdir / "qwen2-random"
        torch.manual_seed(0)
        Qwen2ForCausalLM(qwen2_config(OmniConfig.real())).save_pretrained(source)
        subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source), "-o", str(built),
                        "-p", "int4", "-e", "cpu"], check=True, capture_output=True)
    config_file = built / "genai_config.json"
    config = json.loads(config_file.read_text())
    options = config["model"]["decoder"].setdefault("session_options", {})
    options["intra_op_num_threads"] = threads or os.cpu_count()
    config_file.write_text(json.dumps(config, indent=2))
    model = og.Model(str(built))
    ids = [int(i) for i in torch.randint(0, 150000, (1000,))]
    results = []
    for _ in range(repeats + 1):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=1000 + tokens + 1, do_sample=False)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(ids)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(tokens):
            generator.generate_next_token()
        results.append({"prefill": prefill * 1e3, "decode_per_token": (time.perf_counter() - start) / tokens * 1e3})
    out = summarise(results[1:])
    out["decoder_bytes"] = sum(f.stat().st_size for f in built.glob("model.onnx*"))
    return out


def run_bundle(bundle: str, tokens: int, repeats: int, threads: int | None) -> dict:
    from r1omni_edge.engines import BundleRecognizer

    with tempfile.TemporaryDirectory() as tmp:
        recognizer = BundleRecognizer.from_bundle(bundle, backend="cpu", threads=threads, check_hashes=False)
        clip = clip_path(Path(tmp))
        full = []
        for _ in range(repeats + 1):
            result = recognizer.recognize_file(clip, max_new_tokens=tokens, constrain=False)
            full.append(result.timings_ms)
        label = [recognizer.recognize_file(clip, mode="label").timings_ms for _ in range(repeats)]
    out = summarise(full[1:])
    out["label_mode_total"] = round(statistics.median(t["total"] for t in label), 1)
    out["precision"] = recognizer.manifest.precision
    out["decoder_bytes"] = sum(v["bytes"] for k, v in recognizer.manifest.files.items() if k.startswith("decoder"))
    return out


def summarise(runs: list[dict]) -> dict:
    keys = set().union(*runs)
    out = {k: round(statistics.median(r[k] for r in runs if k in r), 2) for k in keys}
    out["peak_rss_mb"] = round(peak_rss_mb())
    return out


def child(args) -> None:
    if args.child == "floors":
        result = measure_floors(args.threads or os.cpu_count() or 1)
    elif args.child == "torch":
        result = run_torch(args.tokens, args.repeats)
    elif args.child == "generate":
        result = run_transformers_generate(args.tokens, args.repeats)
    elif args.child == "genai":
        result = run_genai(args.tokens, args.repeats, args.threads, args.workdir)
    else:
        result = run_bundle(args.child, args.tokens, args.repeats, args.threads)
    print("RESULT " + json.dumps(result))


def in_process(name: str, args) -> dict:
    command = [sys.executable, __file__, "--child", name, "--tokens", str(args.tokens), "--repeats", str(args.repeats),
               "--workdir", str(args.workdir)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    run = subprocess.run(command, capture_output=True, text=True)
    line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{name} failed:\n{run.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


# ---- the report -------------------------------------------------------------------------------------------------------
FLOPS = {  # per clip, counted from the real shapes (multiply-adds x 2)
    "vision": 2 * 8 * 196 * 86e6 * 11 / 12 + 2 * 8 * 196 * 30e6,  # SigLIP to layer 11 + projector branches, ~0.3 TFLOP
    "audio": 2.0e12,  # Whisper-large-v3 encoder on a 30 s window (~2 TFLOP)
    # 358 M non-embedding decoder weights over the 1,041-position prompt, plus attention scores and sums (~0.8 TFLOP)
    "prefill": 2 * 358e6 * 1041 + 4 * 1041**2 * 896 * 24,
}


def floors(report: dict) -> dict:
    """Each stage's floor on this machine: FLOPs / the peak matmul rate of the stage's own arithmetic (int8 for int8
    and int4 bundles, whose encoders and prefill run int8 kernels; fp32 otherwise), and decoder bytes / read bandwidth.
    A decode faster than its floor would mean the floor is wrong: ``decode_gbs`` is the bandwidth decode achieved."""
    bandwidth = report["floors"]["memory_gbs"] * 1e9
    out = {}
    for name, row in report["configs"].items():
        int8 = row.get("precision") in ("int8", "int4")
        rate = (report["floors"]["int8_matmul_gops"] if int8 else report["floors"]["matmul_gflops"]) * 1e9
        ratios = {stage: round(row[stage] / (FLOPS[stage] / rate * 1e3), 2) for stage in FLOPS if stage in row}
        if "decoder_bytes" in row:
            ratios["decode"] = round(row["decode_per_token"] / (row["decoder_bytes"] / bandwidth * 1e3), 2)
            ratios["decode_gbs"] = round(row["decoder_bytes"] / (row["decode_per_token"] / 1e3) / 1e9, 2)
            if row.get("precision") == "int8" and report["floors"].get("int8_gemv_gbs"):  # the kernel's own ceiling
                ratios["decode_vs_gemv"] = round(row["decode_per_token"] / (
                    row["decoder_bytes"] / (report["floors"]["int8_gemv_gbs"] * 1e9) * 1e3), 2)
            if ratios["decode_gbs"] > report["floors"]["memory_gbs"]:
                print(f"warning: {name} decoded at {ratios['decode_gbs']} GB/s, above the measured read floor of "
                      f"{report['floors']['memory_gbs']} GB/s: the floor understates this machine", flush=True)
        out[name] = ratios
    return out


def goals(report: dict) -> list[tuple[str, str, bool]]:
    """Issue 13's goals, as measured in this run: (goal, what was measured, met)."""
    configs, ratios = report["configs"], report["vs_floor"]
    by_precision = {row.get("precision"): (name, row) for name, row in configs.items() if row.get("precision")}
    out = []
    genai = configs.get("onnxruntime-genai int4 (decoder only)")
    if genai and "int4" in by_precision:
        ours = by_precision["int4"][1]["decode_per_token"]
        out.append(("int4 decode at least 10% faster than onnxruntime-genai",
                    f"{ours:.1f} against {genai['decode_per_token']:.1f} ms/token "
                    f"({1 - ours / genai['decode_per_token']:+.0%} faster)", ours <= 0.9 * genai["decode_per_token"]))
    if "int8" in by_precision:
        name, _ = by_precision["int8"]
        out.append(("int8 decode within 1.3x of its bandwidth floor", f"{ratios[name]['decode']}x",
                    ratios[name]["decode"] <= 1.3))
    if "int8" in by_precision and "int4" in by_precision:
        int8, int4 = by_precision["int8"][1]["prefill"], by_precision["int4"][1]["prefill"]
        out.append(("int4 prefill at or under int8's", f"{int4:,.0f} against {int8:,.0f} ms", int4 <= int8))
    torch = configs.get("PyTorch eager fp32")
    if torch and "int8" in by_precision:
        speedup = torch["total"] / by_precision["int8"][1]["total"]
        out.append(("int8 clip (full) at least 3x faster than PyTorch eager fp32", f"{speedup:.2f}x", speedup >= 3))
    return out


def markdown(report: dict) -> str:
    lines = ["| configuration | preprocess | vision | audio | prefill | decode ms/token | clip, full | clip, label "
             "mode | peak RSS |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in report["configs"].items():
        cells = [row.get(s) for s in STAGES] + [row.get("total"), row.get("label_mode_total"), row.get("peak_rss_mb")]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:,.0f}" if c >= 100 else f"{c:.1f}"
                                               for c in cells) + " |")
    lines += ["", "Ratio to the floor (1.0 = at the physical limit measured in this run):", "",
              "| configuration | vision | audio | prefill | decode | decode GB/s | decode / int8 GEMV ceiling |",
              "|---|---|---|---|---|---|---|"]
    for name, ratios in report["vs_floor"].items():
        lines.append(f"| {name} | " + " | ".join(str(ratios.get(k, "-")) for k in (
            "vision", "audio", "prefill", "decode", "decode_gbs", "decode_vs_gemv")) + " |")
    floor = report["floors"]
    lines += ["", f"Floors ({floor['threads']} onnxruntime threads): read {floor['memory_gbs']} GB/s over "
              f"{floor['read_buffer_mb']} MB (last-level cache {floor['last_level_cache_mb']} MB); fp32 matmul "
              f"{floor['matmul_gflops']} GFLOP/s (fp32 configurations); int8 matmul {floor['int8_matmul_gops']} GOP/s "
              f"(int8 / int4 bundles); onnxruntime's int8 matrix-vector kernel read {floor.get('int8_gemv_gbs', '-')} "
              "GB/s (the ceiling of int8 decode with these kernels)."]
    lines += ["", "| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {goal} | {measured} | {'yes' if met else 'no'} |" for goal, measured, met in report["goals"]]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return

    names = list(report["configs"])
    stages = ("preprocess", "vision", "audio", "prefill", "decode")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    left = [0.0] * len(names)
    for stage in stages:
        rows = [report["configs"][n] for n in names]
        values = [(row.get(stage) if stage in row else row.get("decode_per_token", 0.0) * report["tokens"]
                   if stage == "decode" else 0.0) / 1e3 for row in rows]
        ax.barh(names, values, left=left, label=stage)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel(f"seconds per clip ({report['tokens']} generated tokens)")
    ax.set_title(f"R1-Omni-0.5B shapes, random weights, {report['machine'].get('cores')} CPU cores")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="*", default=[], help="exported bundles to time")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--genai", action="store_true", help="also build and time onnxruntime-genai's int4 decoder")
    parser.add_argument("--workdir", type=Path, default=Path("out/bench"), help="where peer models are built")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from OUT/latency.json only")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads((args.out / "latency.json").read_text()), args.out / "latency.png")
        return
    if args.child:
        child(args)
        return
    if args.genai:
        try:
            import onnxruntime_genai  # noqa: F401
        except ImportError:
            parser.error("--genai needs onnxruntime-genai: pip install -e '.[bench]'")
    info = machine_info()
    print_header("latency, R1-Omni-0.5B shapes", info)
    # The floors run in a process of their own too: Linux hands a parent's peak RSS down to every child it forks,
    # so the parent stays small.
    report = {"benchmark": "latency", "machine": info, "tokens": args.tokens, "floors": in_process("floors", args),
              "configs": {}}
    floor = report["floors"]
    print(f"floors ({floor['threads']} threads): read {floor['memory_gbs']} GB/s over {floor['read_buffer_mb']} MB "
          f"(last-level cache {floor['last_level_cache_mb']} MB), fp32 matmul {floor['matmul_gflops']} GFLOP/s, "
          f"int8 matmul {floor['int8_matmul_gops']} GOP/s, int8 GEMV {floor['int8_gemv_gbs']} GB/s", flush=True)
    names = ([] if args.skip_torch else ["torch"]) + ["generate"] + (["genai"] if args.genai else []) + list(args.bundles)
    for name in names:
        print(f"running {name} ...", flush=True)
        label = {"torch": "PyTorch eager fp32", "generate": "transformers generate fp32 (decoder only)",
                 "genai": "onnxruntime-genai int4 (decoder only)"}.get(name)
        result = in_process(name, args)
        report["configs"][label or f"runtime {result['precision']} ({Path(name).name})"] = result
    report["vs_floor"] = floors(report)
    report["goals"] = goals(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "latency.md").write_text(table + "\n")
    plot(report, args.out / "latency.png")
    print(table)
    print(f"wrote {args.out}/latency.json, latency.md, latency.png")


if __name__ == "__main__":
    main()
