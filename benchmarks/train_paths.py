"""Encode-once and shared-prefix against the naive path (towers re-run for each completion, full sequences), side
by side on the same prompt: what one GRPO prompt costs on each path.

    .venv/bin/python benchmarks/train_paths.py [--real]      # --real: R1-Omni-0.5B shapes, random weights
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, print_header  # noqa: E402


def median_seconds(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--completion", type=int, default=32)
    args = parser.parse_args()
    import torch

    from r1omni_edge.synthetic.clips import write_clip
    from r1omni_edge.datasets import Sample
    from r1omni_edge.train.features import FeatureCache
    from r1omni_edge.train.policy import Policy

    print_header("GRPO paths, one prompt", machine_info())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.real:
            from common import build_real_recognizer

            reference = build_real_recognizer(tmp)
            policy = Policy(reference.model, reference.tokenizer, reference.bert_tokenizer)
        else:
            from r1omni_edge.model.checkpoint import load_model
            from r1omni_edge.model.towers import load_bert_tokenizer
            from r1omni_edge.prompt import PromptTokenizer
            from r1omni_edge.synthetic.checkpoint import write_tiny_checkpoint

            paths = write_tiny_checkpoint(tmp / "models")
            model, _ = load_model(paths.checkpoint, models_dir=paths.root)
            policy = Policy(model, PromptTokenizer(paths.checkpoint), load_bert_tokenizer(paths.bert))
        from r1omni_edge.prompt import user_content

        clip = write_clip(tmp / "clip.mp4", seconds=2.0)
        sample = Sample(0, clip, user_content(), "", "happy")
        cache = FeatureCache(tmp / "cache", policy.model, "pad")
        encode = median_seconds(lambda: cache.encode(clip), repeats=1 if args.real else 3)
        prompt = policy.prompt(sample, cache.get(clip))
        completions = torch.randint(0, 400, (args.group, args.completion))
        shared = median_seconds(lambda: policy.completion_logprobs(prompt, completions).sum().backward(),
                                repeats=1 if args.real else 3)
        naive = median_seconds(lambda: policy.completion_logprobs(prompt, completions, shared_prefix=False
                                                                  ).sum().backward(), repeats=1 if args.real else 3)
    towers_naive = (1 + 2 * args.group) * encode  # R1-Omni's trainer: 1 + 2G tower passes per prompt per step
    report = {"model": "real" if args.real else "tiny", "group": args.group, "completion_tokens": args.completion,
              "tower_encode_s": round(encode, 3), "towers_per_prompt_naive_s": round(towers_naive, 3),
              "towers_per_prompt_encode_once_s": 0.0, "logprobs_fwd_bwd_shared_prefix_s": round(shared, 3),
              "logprobs_fwd_bwd_naive_s": round(naive, 3)}
    print(json.dumps(report, indent=2))
    out = Path(__file__).parent / "results" / f"train_paths_{report['model']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
