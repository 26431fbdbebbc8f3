"""``r1omni-edge batch`` and ``eval``: a whole archive of clips on Ray, and the scores of a labelled set."""

from __future__ import annotations

import argparse
import json
import sys

from ..engines import BACKENDS
from ..errors import InputError
from ..media.frames import RESIZE_MODES
from ..prompt import MODES
from .common import refuse
from .options import (LABEL_SET_NAMES, MAX_NEW_TOKENS_HELP, POSITIVE_INT, add_audio_front_end, add_backend_args,
                      add_job_args, add_model_args, recognition_options)


def register(sub) -> None:
    batch = sub.add_parser("batch", help="recognize a whole archive of clips on Ray (one machine or a cluster), "
                                         "resumable, one row per clip")
    source = batch.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", help="an exported bundle")
    source.add_argument("--model", help="a checkpoint directory (PyTorch, on the CPU)")
    batch.add_argument("--input", required=True, metavar="DIR|FILE.csv|FILE.jsonl|FILE.json",
                       help="a folder of clips (searched recursively), a list with a 'path' and an optional "
                            "'label' column, or a dataset in the published JSON format")
    batch.add_argument("--output", required=True, metavar="OUT.jsonl|OUT.parquet",
                       help="the rows; rerunning the same command skips the clips it already holds")
    batch.add_argument("--labels", choices=LABEL_SET_NAMES,
                       help="score the run: ground truth from the list's 'label' column or the clips' folder names")
    batch.add_argument("--mode", choices=MODES, default="full")
    add_audio_front_end(batch)
    batch.add_argument("--max-new-tokens", type=POSITIVE_INT, help=MAX_NEW_TOKENS_HELP)
    batch.add_argument("--data-root", metavar="DIR", help="what a list's relative paths are relative to (default: "
                                                          "the list's folder)")
    add_job_args(batch)
    batch.add_argument("--backend", choices=BACKENDS, default="cpu", help="a bundle's backend on the workers")
    batch.set_defaults(func=cmd_batch)

    evaluate = sub.add_parser("eval", help="WAR / UAR and a confusion matrix of a checkpoint or a bundle on a "
                              "labelled set: the batch job, decoded as predict decodes")
    add_model_args(evaluate, required=False)
    evaluate.add_argument("--bundle", metavar="DIR", help="evaluate an exported bundle with the runtime instead")
    add_backend_args(evaluate, "CPU threads per worker for onnxruntime (with --bundle)")
    evaluate.add_argument("--free-answer", action="store_true",
                          help="with --bundle: plain greedy, token for token what --model scores (default: the "
                               "answer chosen among the labels, as predict --bundle does)")
    evaluate.add_argument("--data", required=True, metavar="FILE|DIR",
                          help="the labelled set: a dataset JSON (published format), a CSV / JSONL list with 'path' "
                               "and 'label', or a folder of clips in folders named by label")
    evaluate.add_argument("--data-root", help="directory the dataset's video paths are relative to")
    evaluate.add_argument("--labels", choices=LABEL_SET_NAMES,
                          help="label set (default mafw; a bundle's is fixed at export)")
    evaluate.add_argument("--max-new-tokens", type=POSITIVE_INT, default=512, help=MAX_NEW_TOKENS_HELP)
    evaluate.add_argument("--synonyms", action="store_true", help="score synonyms as their label (default: exact)")
    evaluate.add_argument("--original", metavar="DIR",
                          help="the model before window adaptation (train adapt), the same kind as --model / "
                               "--bundle: run under the published front end and compared with this one clip by clip")
    add_audio_front_end(evaluate)
    evaluate.add_argument("--resize", choices=RESIZE_MODES, help="with --model: default stretch")
    evaluate.add_argument("--output", metavar="OUT.jsonl|OUT.parquet",
                          help="keep the rows (the batch schema) and write the scores beside them; rerunning resumes "
                               "(default: rows in a temporary folder, removed at the end)")
    add_job_args(evaluate)
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_eval)


def _job():
    """The batch job's entry points, or a clear line when the batch extra is not installed."""
    try:
        import pandas  # noqa: F401 - the rows travel as pandas batches
        import ray.data  # noqa: F401
        import tqdm  # noqa: F401

        from ..batch import job
    except ImportError as exc:
        raise InputError(f"this runs on Ray Data ({exc.name} is missing): pip install 'r1omni-edge[batch]'") from None
    return job


def _job_progress(what: str = ""):
    """A progress bar (clips done, the rate, the errors) for run_batch, and the function that closes it."""
    from tqdm import tqdm

    bar = None

    def progress(done: int, errors: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="clip", file=sys.stderr, dynamic_ncols=True, desc=what or None)
        bar.n = done
        bar.set_postfix(errors=errors, refresh=False)
        bar.refresh()

    return progress, lambda: bar.close() if bar is not None else None


def cmd_batch(args: argparse.Namespace) -> int:
    job = _job()
    from ..batch.report import summary_line

    options = job.BatchOptions(recognition=recognition_options(args), workers=args.workers,
                               ray_address=args.ray_address, batch_size=args.batch_size, backend=args.backend,
                               labels=args.labels, data_root=args.data_root)
    progress, close = _job_progress()
    try:
        summary = job.run_batch(args.bundle or args.model, args.input, args.output, options, progress)
    finally:
        close()
    print(f"{summary.clips} clips: {summary.skipped} already in {args.output}, {summary.written} written "
          f"({summary.errors} failed) in {summary.seconds:.1f} s")
    if summary.report is not None:
        print(summary_line(summary.report))
        for path in summary.report_files:
            print(f"  {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..labels import DEFAULT_LABEL_SET, label_set
    from ..open import bundle_label_set, kind_options, misplaced

    job = _job()
    from ..batch.evaluate import labelled_clips, run_eval

    if (args.model is None) == (args.bundle is None):
        raise InputError("give either --model DIR (PyTorch) or --bundle DIR (runtime), not both or neither")
    instruction, model_options = None, {}
    if args.bundle is not None:
        from ..bundle import read_manifest

        refuse([option.flag for option in misplaced(vars(args), "bundle") if option.name != "labels"],
               "to --model; a bundle fixed them at export")  # eval's --labels is checked against the bundle's
        manifest = read_manifest(args.bundle)
        names, instruction = bundle_label_set(manifest, args.labels), manifest.instruction
    else:
        refuse([option.flag for option in misplaced(vars(args), "checkpoint")]
               + (["--free-answer"] if args.free_answer else []), "to --bundle (the runtime), not to --model")
        names = args.labels or DEFAULT_LABEL_SET
        model_options = {name: value for name, value in kind_options(vars(args), "checkpoint").items()
                         if name != "labels"}  # the label set travels as the job's own option
    labels = label_set(names)
    clips = labelled_clips(args.data, labels, args.data_root, instruction)
    options = job.BatchOptions(recognition=recognition_options(args), workers=args.workers,
                               ray_address=args.ray_address, batch_size=args.batch_size,
                               backend=args.backend if args.bundle else "cpu", threads=args.threads, labels=names,
                               model_options=model_options)
    if args.original is not None:
        from ..open import kind_of

        try:
            kind = kind_of(args.original)
        except InputError as exc:
            raise InputError(f"--original {exc}") from None
        if kind != ("bundle" if args.bundle else "checkpoint"):
            raise InputError(f"--original {args.original}: give the model before adaptation as the same kind as "
                             f"{'--bundle' if args.bundle else '--model'} (a {'bundle' if args.bundle else 'checkpoint'})")
    report = run_eval(args.bundle or args.model, clips, labels, options, args.output, exact=not args.synonyms,
                      progress=_job_progress, original=args.original)
    result, published, same = report.result, report.published, report.agreement
    front_end = (options.recognition.audio_window, options.recognition.audio_gate)
    for path, error in result.errors.items():
        print(f"r1omni-edge eval: {path}: {error} (counted as wrong)", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(front_end)))
    elif published is None:
        print(result.table())
    else:
        print(f"published audio front end (window full, gate off):\n{published.table()}\n")
        print(f"audio window {front_end[0]}, gate {front_end[1]}:\n{result.table()}\n")
        print(f"agreement with the published front end on {same['samples']} clips: label {100 * same['label']:.1f}%, "
              f"identical tokens {100 * same['identical_tokens']:.1f}%, token prefix {100 * same['token_prefix']:.1f}%")
    if report.original is not None and not args.json:
        same = report.original_agreement
        print(f"\nthe original model (--original) under the published front end:\n{report.original.table()}\n")
        print(f"agreement of this model under the published front end with the original on {same['samples']} clips: "
              f"label {100 * same['label']:.1f}%, identical tokens {100 * same['identical_tokens']:.1f}%")
    if report.files and not args.json:
        print("\n".join(f"  {path}" for path in report.files))
    return 0
