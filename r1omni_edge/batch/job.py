"""The batch job on Ray Data: the clips not yet in the output become a dataset; an actor per worker loads the model
once and recognizes batches of clips, decoding the next clip on a thread while the current one runs; the driver
writes each batch of rows as it arrives. Without an address Ray starts embedded on this machine; with one
(``auto``, ``ray://host:port``) the same job joins a cluster. A clip that fails is a row with an ``error``."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError, R1OmniError
from ..labels import label_set
from ..pipeline.recognizer import MODES
from .archive import list_archive
from .report import score, write_report
from .store import ResultStore, plain_value


@dataclass
class BatchOptions:
    mode: str = "full"  # or "label"
    audio_window: str | int = "full"
    audio_gate: str = "off"
    max_new_tokens: int | None = None  # None: the model's own default
    workers: int = 1
    ray_address: str | None = None  # None: Ray embedded on this machine
    batch_size: int = 4  # clips per actor call (and per write)
    backend: str = "cpu"  # for bundles
    labels: str | None = None  # a label set name: ground truth from the input's column or folder names


@dataclass
class BatchSummary:
    clips: int  # in the archive
    skipped: int  # already in the output
    written: int  # rows this run wrote
    errors: int  # of those, failed clips
    seconds: float
    report: dict | None = None
    report_files: list[str] = field(default_factory=list)


def file_digest(path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class ClipWorker:
    """A Ray actor: the recognizer, loaded once; each call takes a batch of clips and returns their rows."""

    def __init__(self, model: str, options: dict, threads: int):
        from ..pipeline.open import open_recognizer, kind_of

        self.options = BatchOptions(**options)
        bundle = kind_of(model) == "bundle"
        extra = {"backend": self.options.backend, "threads": threads} if bundle else {}
        self.recognizer = open_recognizer(model, **extra)
        self.recognizer.audio_window = self.options.audio_window
        self.recognizer.audio_gate = self.options.audio_gate
        self.where = f"{socket.gethostname()}:{os.getpid()}"
        self.prefetch = ThreadPoolExecutor(1)  # PyAV decodes without the GIL: the next clip decodes meanwhile

    def _decode(self, path: str):
        """-> ((sha256, bytes) or None, the decoded clip or None, its decode time in ms, an error or None)."""
        try:
            digest = file_digest(path)
        except OSError as exc:
            return None, None, 0.0, f"cannot read the file ({exc.strerror or exc})"
        start = time.perf_counter()
        try:
            clip = self.recognizer.processor.decode(path)
        except R1OmniError as exc:
            return digest, None, 0.0, str(exc)
        except Exception as exc:  # a decoder's own exception types: a clear row, never a crashed job
            return digest, None, 0.0, f"{type(exc).__name__}: {exc}"
        return digest, clip, round((time.perf_counter() - start) * 1e3, 3), None

    def __call__(self, batch: dict) -> dict:
        paths, truths = list(batch["path"]), list(batch["truth"])
        rows = []
        pending = self.prefetch.submit(self._decode, paths[0]) if paths else None
        for index, (path, truth) in enumerate(zip(paths, truths)):
            decoded = pending.result()
            if index + 1 < len(paths):
                pending = self.prefetch.submit(self._decode, paths[index + 1])
            rows.append(self._row(path, truth or None, *decoded))
        return {key: [row[key] for row in rows] for key in ROW_KEYS}

    def _row(self, path: str, truth: str | None, digest, clip, decode_ms: float, error: str | None) -> dict:
        row = dict.fromkeys(ROW_KEYS)
        row.update(path=path, truth=truth, worker=self.where, audio_gated=False)
        if digest is not None:
            row["sha256"], row["bytes"] = digest
        if clip is not None:
            start = time.perf_counter()
            try:
                kwargs = {"mode": self.options.mode}
                if self.options.max_new_tokens:
                    kwargs["max_new_tokens"] = self.options.max_new_tokens
                result = self.recognizer.recognize(clip.frames, clip.audio, clip.sample_rate,
                                                   timings={"decode_media": decode_ms}, **kwargs)
            except R1OmniError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - one clip's failure is its row, not the job's end
                error = f"{type(exc).__name__}: {exc}"
            else:
                # as recognize_file counts it: decoding (done ahead, on the prefetch thread) and recognition
                result.timings_ms["total"] = round(decode_ms + (time.perf_counter() - start) * 1e3, 3)
                row.update(label=result.label, answer=result.answer, probabilities=result.probabilities,
                           reasoning=result.reasoning, text=result.text, audio=result.audio,
                           audio_window=result.audio_window, audio_gated=result.audio_gated,
                           timings_ms=result.timings_ms)
        row["error"] = error
        return row


# The output schema, one row per clip (README "Batch recognition").
ROW_KEYS = ("path", "sha256", "bytes", "truth", "label", "answer", "probabilities", "reasoning", "text", "audio",
            "audio_window", "audio_gated", "timings_ms", "error", "worker")


def _start_ray(address: str | None) -> None:
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=False)
    context = DataContext.get_current()
    context.enable_progress_bars = False  # the job shows its own: clips, rate, errors
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def run_batch(model: str | Path, source: str | Path, output: str | Path, options: BatchOptions,
              progress: Callable[[int, int, int], None] = lambda done, errors, total: None) -> BatchSummary:
    """Recognize every clip of ``source`` not yet in ``output``; score the output when labels are known.
    ``progress(done, errors, total)`` follows the clips of this run."""
    start = time.perf_counter()
    if options.mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, not {options.mode!r}")
    if options.workers < 1 or options.batch_size < 1:
        raise InputError(f"--workers and --batch-size must be at least 1, got {options.workers} and "
                         f"{options.batch_size}")
    labels = label_set(options.labels) if options.labels else None
    store = ResultStore(output)
    clips = list_archive(source, labels)
    pending = [clip for clip in clips if clip.path not in store.done]
    written = errors = 0
    if pending:
        import ray.data

        _start_ray(options.ray_address)
        cpus = max(1, (os.cpu_count() or 1) // options.workers) if not options.ray_address else 1
        # a block per actor call, so that every worker gets clips from the start
        dataset = ray.data.from_items([{"path": c.path, "truth": c.truth or ""} for c in pending],
                                      override_num_blocks=-(-len(pending) // options.batch_size))
        progress(0, 0, len(pending))
        rows = dataset.map_batches(ClipWorker, fn_constructor_kwargs={"model": str(model), "options": asdict(options),
                                                                      "threads": cpus},
                                   batch_size=options.batch_size, concurrency=options.workers, num_cpus=cpus)
        for batch in rows.iter_batches(batch_size=None, batch_format="pandas"):
            records = [{k: plain_value(v) for k, v in record.items()} for record in batch.to_dict("records")]
            store.append(records)
            written += len(records)
            errors += sum(bool(r["error"]) for r in records)
            progress(written, errors, len(pending))
    summary = BatchSummary(len(clips), len(clips) - len(pending), written, errors,
                           round(time.perf_counter() - start, 3))
    if labels is not None:
        summary.report = score(store.read(), labels)
        if summary.report is not None:
            summary.report_files = [str(p) for p in write_report(summary.report, Path(output))]
    return summary

