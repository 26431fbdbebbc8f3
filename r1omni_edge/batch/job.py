"""The batch job on Ray Data: the clips not yet in the output become a dataset; an actor per worker loads the model
once and recognizes batches of clips, decoding the next clip on a thread while the current one runs; the driver
writes each batch of rows as it arrives. Without an address Ray starts embedded on this machine; with one
(``auto``, ``ray://host:port``) the same job joins a cluster. A clip that fails is a row with an ``error``."""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError, OutputError, R1OmniError
from ..files import sha256_file
from ..labels import label_set
from ..open import check_model
from ..recognition import RecognitionOptions
from .archive import ArchiveClip, list_archive
from .report import score_rows, write_report
from .store import ResultStore, plain_value


@dataclass
class BatchOptions:
    recognition: RecognitionOptions = RecognitionOptions()  # what each clip's recognition does, as given
    workers: int = 1
    ray_address: str | None = None  # None: Ray embedded on this machine
    batch_size: int = 4  # clips per actor call (and per write)
    backend: str = "cpu"  # for bundles
    threads: int | None = None  # a bundle's onnxruntime threads per worker; None: the cores Ray reserves for it
    labels: str | None = None  # a label set name: ground truth from the input's column or folder names
    data_root: str | None = None  # what a list's relative paths are relative to (default: the list's folder)
    model_options: dict = field(default_factory=dict)  # a checkpoint's: models_dir, siglip, whisper, bert, ...

    def __post_init__(self) -> None:
        if isinstance(self.recognition, dict):  # as it travels to the Ray actors (dataclasses.asdict)
            self.recognition = RecognitionOptions(**self.recognition)


@dataclass
class BatchSummary:
    clips: int  # in the archive
    skipped: int  # already in the output
    written: int  # rows this run wrote
    errors: int  # of those, failed clips
    seconds: float
    labels: tuple[str, ...] = ()  # the label set the model answers with
    report: dict | None = None
    report_files: list[str] = field(default_factory=list)


def file_digest(path: str) -> tuple[str, int]:
    return sha256_file(path), os.path.getsize(path)


class ClipWorker:
    """A Ray actor: the recognizer, loaded once; each call takes a batch of clips and returns their rows."""

    def __init__(self, model: str, options: dict, threads: int):
        from ..open import kind_of, open_recognizer

        self.options = BatchOptions(**options)
        if kind_of(model) == "bundle":
            extra = {"backend": self.options.backend, "threads": threads}
        else:
            extra = {"labels": self.options.labels, **self.options.model_options}
        # A model that does not load on this worker is raised by the first call, as the user's error: an actor that
        # dies while starting is restarted by Ray, over and over, each time with a traceback on the terminal.
        self.failure: R1OmniError | None = None
        try:
            self.recognizer = open_recognizer(model, **extra)
            self.recognizer.check(self.options.recognition)
        except R1OmniError as exc:
            self.failure = exc
        self.where = f"{socket.gethostname()}:{os.getpid()}"
        self.prefetch = ThreadPoolExecutor(1)  # PyAV decodes without the GIL: the next clip decodes meanwhile

    def _decode(self, path: str, use_audio: bool):
        """-> ((sha256, bytes) or None, the decoded clip or None, its decode time in ms, an error or None)."""
        try:
            digest = file_digest(path)
        except OSError as exc:
            return None, None, 0.0, f"cannot read the file ({exc.strerror or exc})"
        start = time.perf_counter()
        try:
            clip = self.recognizer.processor.decode(path, use_audio)
        except R1OmniError as exc:
            return digest, None, 0.0, str(exc)
        except Exception as exc:  # a decoder's own exception types: a clear row, never a crashed job
            return digest, None, 0.0, f"{type(exc).__name__}: {exc}"
        return digest, clip, round((time.perf_counter() - start) * 1e3, 3), None

    def __call__(self, batch: dict) -> dict:
        if self.failure is not None:
            raise self.failure
        clips = [ArchiveClip(path, truth or None, instruction or None, bool(use_audio)) for path, truth, instruction,
                 use_audio in zip(batch["path"], batch["truth"], batch["instruction"], batch["use_audio"])]
        rows = []
        pending = self.prefetch.submit(self._decode, clips[0].path, clips[0].use_audio) if clips else None
        for index, clip in enumerate(clips):
            decoded = pending.result()
            if index + 1 < len(clips):
                pending = self.prefetch.submit(self._decode, clips[index + 1].path, clips[index + 1].use_audio)
            rows.append(self._row(clip, *decoded))
        return {key: [row[key] for row in rows] for key in ROW_KEYS}

    def _row(self, clip: ArchiveClip, digest, media, decode_ms: float, error: str | None) -> dict:
        row = dict.fromkeys(ROW_KEYS)
        row.update(path=clip.path, truth=clip.truth, worker=self.where, audio_gated=False)
        if digest is not None:
            row["sha256"], row["bytes"] = digest
        if media is not None:
            try:
                if clip.instruction and self.recognizer.instruction_settable:
                    self.recognizer.instruction = clip.instruction
                # decoded ahead on the prefetch thread; counted and noted as recognize_file counts and notes it
                result = self.recognizer.recognize_decoded(media, decode_ms, use_audio=clip.use_audio,
                                                           options=self.options.recognition)
            except R1OmniError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - one clip's failure is its row, not the job's end
                error = f"{type(exc).__name__}: {exc}"
            else:
                row.update(label=result.label, answer=result.answer, probabilities=result.probabilities,
                           reasoning=result.reasoning, text=result.text, token_ids=list(result.token_ids),
                           audio=result.audio, audio_window=result.audio_window, audio_gated=result.audio_gated,
                           prompt_tokens=result.prompt_tokens, generated_tokens=result.generated_tokens,
                           timings_ms=result.timings_ms, notes=result.notes)
        row["error"] = error
        return row


# The output schema, one row per clip (docs/batch.md).
ROW_KEYS = ("path", "sha256", "bytes", "truth", "label", "answer", "probabilities", "reasoning", "text", "token_ids",
            "audio", "audio_window", "audio_gated", "prompt_tokens", "generated_tokens", "timings_ms", "notes", "error",
            "worker")


def cluster_address(asked: str | None) -> str | None:
    """The cluster the job joins: --ray-address, else RAY_ADDRESS (as `ray job submit` sets it), else None: Ray
    embedded on this machine, even where a cluster started by `ray start` runs here (ray.init() would join that)."""
    return asked or os.environ.get("RAY_ADDRESS") or None


def _start_ray(address: str | None) -> None:
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # its C++ warnings are for Ray's developers
        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        else:  # "local": a new instance, never the latest one `ray start` left on this machine
            ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                     logging_level=logging.ERROR, log_to_driver=False)
    context = DataContext.get_current()
    context.enable_progress_bars = False  # the job shows its own: clips, rate, errors
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # a failure is raised to the caller, once, in our words


def worker_failure(exc: BaseException) -> R1OmniError | None:
    """The error a Ray worker stopped with, as this project's error, or None when ``exc`` is not one. Ray wraps a
    worker's exception (its wrapper is an instance of the original class); a worker that died is known by the last
    exception line of its traceback's text."""
    chain = []
    while exc is not None and len(chain) < 8:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for link in chain:
        if isinstance(link, R1OmniError):
            message = link.args[0] if link.args and isinstance(link.args[0], str) else str(link)
            return InputError(f"on a Ray worker: {message.splitlines()[-1]}")
    lines = [line.strip() for link in chain for line in (getattr(link, "error_msg", None) or str(link)).splitlines()]
    ours = [line.split(": ", 1)[1] for line in lines if re.match(r"r1omni_edge(\.\w+)+: ", line)]
    if ours:  # the worker raised one of ours; Ray passed on its text
        return InputError(f"on a Ray worker: {ours[-1]}")
    if any("ActorDiedError" in line or "actor died" in line for line in lines):
        last = next((line for line in reversed(lines) if line.split(":", 1)[0].endswith(("Error", "Exception"))), "")
        return R1OmniError(f"a Ray worker died ({last or 'no cause given'}); on a cluster, the model and the clips "
                           "must be at the same paths on every node. The output holds every row written so far: "
                           "rerun to resume")
    return None


def run_batch(model: str | Path, source: str | Path | list[ArchiveClip], output: str | Path, options: BatchOptions,
              progress: Callable[[int, int, int], None] = lambda done, errors, total: None,
              report: bool = True) -> BatchSummary:
    """Recognize every clip of ``source`` (an archive, or its clips) not yet in ``output``; with ``report``, score
    the output when labels are known. ``progress(done, errors, total)`` follows the clips of this run."""
    start = time.perf_counter()
    if options.workers < 1 or options.batch_size < 1:
        raise InputError(f"--workers and --batch-size must be at least 1, got {options.workers} and "
                         f"{options.batch_size}")
    answers = check_model(model, options.labels, **options.model_options)
    labels = label_set(options.labels) if options.labels else None
    store = ResultStore(output)
    clips = source if isinstance(source, list) else list_archive(source, labels, options.data_root)
    paths = {clip.path for clip in clips}
    pending = list({clip.path: clip for clip in clips if clip.path not in store.done}.values())  # a path once
    written = errors = 0
    if pending:
        import ray.data

        address = cluster_address(options.ray_address)
        _start_ray(address)
        # Ray's reservation per worker: this machine's cores shared out (on a cluster, one core: nodes differ)
        cpus = max(1, (os.cpu_count() or 1) // options.workers) if not address else 1
        # a block per actor call, so that every worker gets clips from the start
        items = [{"path": c.path, "truth": c.truth or "", "instruction": c.instruction or "", "use_audio": c.use_audio}
                 for c in pending]
        dataset = ray.data.from_items(items, override_num_blocks=-(-len(pending) // options.batch_size))
        progress(0, 0, len(pending))
        rows = dataset.map_batches(ClipWorker, fn_constructor_kwargs={"model": str(model), "options": asdict(options),
                                                                      "threads": options.threads or cpus},
                                   batch_size=options.batch_size, concurrency=options.workers, num_cpus=cpus)
        try:
            for batch in rows.iter_batches(batch_size=None, batch_format="pandas"):
                records = [{k: plain_value(v) for k, v in record.items()} for record in batch.to_dict("records")]
                store.append(records)
                written += len(records)
                errors += sum(bool(r["error"]) for r in records)
                progress(written, errors, len(pending))
        except OutputError:  # the driver's own writing, not a worker's
            raise
        except Exception as exc:
            failure = worker_failure(exc)
            if failure is None:
                raise
            raise failure from None
    summary = BatchSummary(len(paths), len(paths) - len(pending), written, errors,
                           round(time.perf_counter() - start, 3), answers)
    if labels is not None and report:
        summary.report = score_rows(store.read(), labels)
        if summary.report is not None:
            summary.report_files = [str(p) for p in write_report(summary.report, Path(output))]
    return summary
