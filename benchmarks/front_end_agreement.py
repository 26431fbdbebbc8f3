"""How far each fast audio front end keeps the published model's answers: held-out clips (settings and seeds the
toy's training never used) through the published front end of a REFERENCE model and through every front end of the
model under test, in label and full mode, one run; per front end the label agreement with the reference, identical
answers (full mode), accuracy against the clips' truth (WAR) and the well-formed share.

    .venv/bin/python benchmarks/front_end_agreement.py                         # the shipped toy against itself
    .venv/bin/python benchmarks/front_end_agreement.py --model ADAPTED --reference ORIGINAL

Paths are bundles or checkpoints (a checkpoint's towers beside it). Only the toy's labels mean something: the clips
are the toy's task. No latency here: benchmarks/live_latency.py times the same front ends.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, print_header  # noqa: E402

# name -> (audio window, audio layout): the published front end and the fitted window under each prompt layout.
FRONT_ENDS = {"published": ("full", "compact"), "fit": ("fit", "compact"), "fit-positions": ("fit", "positions"),
              "fit-tail": ("fit", "tail")}
MODES = ("label", "full")


def run(recognizer, clips: list, mode: str, window: str, layout: str, max_new_tokens: int) -> list:
    return [recognizer.recognize(clip.frames, clip.audio, clip.sample_rate, mode=mode, audio_window=window,
                                 audio_layout=layout, max_new_tokens=max_new_tokens, constrain=True)
            for clip in clips]


def score(results: list, reference: list, truths: list[str], mode: str) -> dict:
    from r1omni_edge.prompt import parse_answer

    n = len(results)
    return {"label_agreement": round(sum(a.label == b.label for a, b in zip(results, reference)) / n, 3),
            "identical_answer": round(sum(a.token_ids == b.token_ids for a, b in zip(results, reference)) / n, 3),
            "war": round(sum(r.label == t for r, t in zip(results, truths)) / n, 3),
            "well_formed": round(sum(parse_answer(r.text).well_formed for r in results) / n, 3) if mode == "full"
            else None}


def load(path: Path, args):
    from r1omni_edge.open import kind_of, open_recognizer

    if kind_of(path) == "bundle":
        return open_recognizer(path)
    return open_recognizer(path, models_dir=args.models_dir, resize_mode=args.resize)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="the model under test (default: the shipped toy)")
    parser.add_argument("--reference", type=Path, help="the model whose published answers count (default: --model)")
    parser.add_argument("--models-dir", type=Path, help="the towers of a checkpoint (default: beside it)")
    parser.add_argument("--resize", default="pad", help="a checkpoint's frame resize (the toy trains with pad)")
    parser.add_argument("--clips", type=int, default=120, help="held-out clips (default 120)")
    parser.add_argument("--seed", type=int, default=20261205, help="the held-out clips' seed")
    parser.add_argument("--data", type=Path, help="keep the held-out clips here (default: a temporary folder)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--front-ends", nargs="+", choices=list(FRONT_ENDS), default=list(FRONT_ENDS))
    parser.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/front_end_agreement_NAME)")
    args = parser.parse_args()

    from r1omni_edge.media.decode import decode_clip
    from r1omni_edge.synthetic import TOY_DIR
    from r1omni_edge.synthetic.task import write_held_out

    model = args.model or TOY_DIR / "R1-Omni-toy"
    reference_path = args.reference or model
    info = machine_info()
    print_header(f"front-end agreement: {model} against the published answers of {reference_path}", info)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp)
        rows = json.loads(write_held_out(root, args.clips, args.seed).read_text())
        under_test = load(model, args)
        clips = [decode_clip(root / row["video"], under_test.info.num_frames) for row in rows]
    truths = [row["label"] for row in rows]
    reference_model = under_test if reference_path == model else load(reference_path, args)
    table = {}
    for mode in MODES:
        reference = run(reference_model, clips, mode, "full", "compact", args.max_new_tokens)
        table[f"reference-{mode}"] = {"mode": mode, **score(reference, reference, truths, mode)}
        for name in args.front_ends:
            if name == "published" and reference_model is under_test:
                continue
            results = run(under_test, clips, mode, *FRONT_ENDS[name], args.max_new_tokens)
            table[f"{name}-{mode}"] = {"mode": mode, "audio_window": FRONT_ENDS[name][0],
                                       "audio_layout": FRONT_ENDS[name][1], **score(results, reference, truths, mode)}
            print(f"{name}-{mode}: {table[f'{name}-{mode}']}", flush=True)
    report = {"benchmark": "front_end_agreement", "machine": info, "model": str(model),
              "reference": str(reference_path), "clips": len(clips), "seed": args.seed,
              "max_new_tokens": args.max_new_tokens, "front_ends": table}
    print("| front end | mode | label agreement | identical answer | WAR | well formed |")
    print("|---|---|---|---|---|---|")
    for name, entry in table.items():
        print(f"| {name.rsplit('-', 1)[0]} | {entry['mode']} | {entry['label_agreement']} | "
              f"{entry['identical_answer']} | {entry['war']} | {entry['well_formed']} |")
    out = args.out or Path(__file__).parent / "results" / f"front_end_agreement_{Path(model).name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
