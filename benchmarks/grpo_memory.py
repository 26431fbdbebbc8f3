"""Peak memory of one real-size GRPO policy step (R1-Omni-0.5B shapes, random weights, LoRA on the LLM as
`train/run.py` applies it, on this CPU) with and without micro-batching, each in its own process, side by side.

    .venv/bin/pip install -e ".[train]"        # peft, for LoRA
    .venv/bin/python benchmarks/grpo_memory.py [--group 8] [--completion 128] [--micro 2]

The step is `train/grpo.py`'s `grpo_step` itself; only the sampling is replaced by random completions of exactly
`--completion` tokens (random weights rarely stop, and the peak of interest is the update's). Peak memory is the
process's peak resident set during the step (Linux: reset through /proc/self/clear_refs first, read from VmHWM).
Results: benchmarks/results/grpo_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, print_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def child(args) -> dict:
    import torch

    from common import build_real_recognizer
    from r1omni_edge.prompt import user_content
    from r1omni_edge.synthetic.clips import write_clip
    from r1omni_edge.train.config import GRPOConfig
    from r1omni_edge.datasets import Sample
    from r1omni_edge.train.distributed import Dist
    from r1omni_edge.train.features import FeatureCache
    from r1omni_edge.train.grpo import grpo_step
    from r1omni_edge.train.policy import Policy
    from r1omni_edge.train.run import apply_lora

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reference = build_real_recognizer(tmp)
        model = reference.model
        model.requires_grad_(False)
        model.llm = apply_lora(model.llm, {"r": 16, "alpha": 32})
        if args.checkpointing:  # as train/run.py enables it
            model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        policy = Policy(model, reference.tokenizer, reference.bert_tokenizer)
        clip = write_clip(tmp / "clip.mp4", seconds=2.0)
        cache = FeatureCache(tmp / "cache", policy.model, "pad")
        prompt = policy.prompt(Sample(0, clip, user_content(), "", "happy"), cache.get(clip))
        vocab = min(policy.tokenizer.tokenizer.get_vocab_size(), 400)
        generator = torch.Generator().manual_seed(1)
        completions = torch.randint(5, vocab, (args.group, args.completion), generator=generator)
        policy.rollout = lambda **kwargs: completions  # the update's memory is measured, not sampling's
        config = GRPOConfig(model="real", train_data="-", group_size=args.group, prompts_per_step=1,
                            max_completion=args.completion, beta=0.0, micro_batch=args.micro or None,
                            rewards={"format": 1.0}, learning_rate=1e-5)
        params = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        before = status_mb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # the peak resident set starts again from here
        start = time.perf_counter()
        grpo_step(policy, policy, None, [prompt], config, 0, optimizer, scheduler, Dist(), ("happy", "sad"))
        seconds = time.perf_counter() - start
        peak = status_mb("VmHWM")
    return {"micro_batch": args.micro or None, "checkpointing": args.checkpointing, "group": args.group, "completion_tokens": args.completion,
            "rss_before_step_mb": round(before, 1), "peak_during_step_mb": round(peak, 1),
            "step_peak_above_before_mb": round(peak - before, 1), "step_seconds": round(seconds, 1),
            "trainable_parameters": sum(p.numel() for p in params)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--completion", type=int, default=128)
    parser.add_argument("--micro", type=int, default=2)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on (as a config's "
                        "gradient_checkpointing: true)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    info = machine_info()
    print_header(f"GRPO step peak memory, real size, G={args.group}, {args.completion} tokens", info)
    rows = []
    for micro in (0, args.micro):
        done = subprocess.run([sys.executable, __file__, "--child", "--group", str(args.group), "--completion",
                               str(args.completion), "--micro", str(micro)]
                              + (["--checkpointing"] if args.checkpointing else []), capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    report = {"machine": info, "runs": rows}
    RESULTS.mkdir(exist_ok=True)
    name = "grpo_memory" + ("_checkpointing" if args.checkpointing else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    table = [f"gradient checkpointing: {'on' if args.checkpointing else 'off'}", "",
             "| micro_batch | G | completion tokens | RSS before the step, MB | peak during the step, MB | step's peak "
             "above before, MB | step, s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['micro_batch'] or 'none (all G at once)'} | {r['group']} | {r['completion_tokens']} | "
                     f"{r['rss_before_step_mb']:,.0f} | {r['peak_during_step_mb']:,.0f} | "
                     f"{r['step_peak_above_before_mb']:,.0f} | {r['step_seconds']} |")
    (RESULTS / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
