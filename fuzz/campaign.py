"""The entry points the fuzzer drives, and a campaign: Hypothesis draws mutation plans for one entry point, each
mutant is written and run through the worker (a deadline, a memory bound), and every outcome is tallied. A mutant
whose outcome is not an answer or the project's one-line error is kept, with its plan, under ``failures/``."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from r1omni_edge.batch.archive import VIDEO_SUFFIXES

from . import mutators
from .runner import GOOD, Runner
from .seeds import Workdir

MEDIA_ENTRIES = ("predict --bundle", "predict --model", "stream --fast", "batch")
FILE_ENTRIES = ("manifest", "config", "dataset", "archive list", "http")
ENTRIES = MEDIA_ENTRIES + FILE_ENTRIES


@dataclass
class Tally:
    entry: str
    outcomes: Counter = field(default_factory=Counter)
    slowest: float = 0.0
    slowest_what: str = ""
    failures: list[dict] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # the error lines, their file paths left out

    @property
    def tried(self) -> int:
        return sum(self.outcomes.values())

    def add(self, outcome: dict, what: str, plan: Any) -> None:
        self.outcomes[outcome["outcome"]] += 1
        if outcome.get("seconds", 0) > self.slowest:
            self.slowest, self.slowest_what = outcome["seconds"], what
        if outcome["outcome"] == "error":
            detail = outcome.get("detail", "")
            self.errors[detail.split(": ", 2)[-1][:80] if ": " in detail else detail[:80]] += 1
        if outcome["outcome"] not in GOOD:
            self.failures.append({"what": what, "plan": repr(plan)[:2000], **outcome})

    def to_dict(self) -> dict:
        return {"entry": self.entry, "tried": self.tried, "outcomes": dict(self.outcomes),
                "slowest_seconds": self.slowest, "slowest": self.slowest_what, "failures": self.failures,
                "common_errors": self.errors.most_common(8)}


def _settings(count: int):
    return settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False)


class Campaign:
    def __init__(self, work: Workdir, runner: Runner, scratch: Path):
        self.work = work
        self.runner = runner
        self.scratch = Path(scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)
        (self.scratch / "failures").mkdir(exist_ok=True)
        self.media_seeds = work.media

    # ---- one mutant ---------------------------------------------------------------------------------------------
    def _keep(self, tally: Tally, path: Path, outcome: dict, plan: Any) -> None:
        if outcome["outcome"] in GOOD or not path.exists():
            return
        target = self.scratch / "failures" / f"{tally.entry.replace(' ', '_').replace('-', '')}-{tally.tried:05d}"
        target.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if path.is_dir() else shutil.copy)(path, target / path.name)
        (target / "outcome.json").write_text(json.dumps({"plan": repr(plan), **outcome}, indent=1))

    def media_request(self, entry: str, path: Path, variant: int) -> dict:
        work = self.work
        bundle = work.bundles["int8" if variant % 3 == 2 else "fp32"]
        if entry == "predict --bundle":
            mode = ("label", "full")[variant % 2]
            return {"entry": "cli", "argv": ["predict", path, "--bundle", bundle, "--json", "--mode", mode,
                                             "--max-new-tokens", "6", "--backend", "cpu"]}
        if entry == "predict --model":
            return {"entry": "cli", "argv": ["predict", path, "--model", work.checkpoint, "--models-dir",
                                             work.models_dir, "--json", "--max-new-tokens", "4"]}
        if entry == "stream --fast":
            extra = ["--fast-profile"] if variant % 2 else ["--mode", "label"]
            return {"entry": "cli", "argv": ["stream", path, "--bundle", bundle, "--fast", "--quiet", "--window", "1",
                                             "--stride", "0.5", *extra]}
        raise ValueError(entry)

    def run_media(self, entry: str, count: int, seed_value: int, tally: Tally) -> None:
        directory = self.scratch / "media"

        @_settings(count)
        @seed(seed_value)
        @given(plan=mutators.media_plans(self.media_seeds), variant=st.integers(0, 5))
        def one(plan, variant):
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            path = directory / f"mutant{Path(plan[0]).suffix}"
            path.write_bytes(mutators.apply_media_plan(self.media_seeds, plan))
            request = {k: [str(a) for a in v] if k == "argv" else v
                       for k, v in self.media_request(entry, path, variant).items()}
            outcome = self.runner.run(request)
            tally.add(outcome, plan[0], plan)
            self._keep(tally, path, outcome, plan)

        one()

    def run_batch(self, count: int, seed_value: int, tally: Tally, chunk: int = 25) -> None:
        """Mutants in folders of ``chunk``, one batch job per folder: every mutant must be a row."""
        plans: list = []

        @_settings(count)
        @seed(seed_value)
        @given(plan=mutators.media_plans(self.media_seeds))
        def collect(plan):
            plans.append(plan)

        collect()
        for start in range(0, len(plans), chunk):
            directory = self.scratch / "batch" / f"chunk{start:05d}"
            shutil.rmtree(directory.parent, ignore_errors=True)
            directory.mkdir(parents=True)
            names = {}
            for index, plan in enumerate(plans[start:start + chunk]):
                suffix = Path(plan[0]).suffix if Path(plan[0]).suffix in VIDEO_SUFFIXES else ".mp4"  # all listed
                path = directory / f"m{index:03d}{suffix}"
                path.write_bytes(mutators.apply_media_plan(self.media_seeds, plan))
                names[str(path.resolve())] = plan
            output = directory.parent / "rows.jsonl"
            argv = ["batch", "--bundle", str(self.work.bundles["fp32"]), "--input", str(directory), "--output",
                    str(output), "--mode", "label", "--workers", "1"]
            reply = self.runner.run({"entry": "batch", "directory": str(directory), "argv": argv},
                                    deadline=self.runner.deadline * chunk)
            rows = reply.get("rows", {})
            for path, plan in names.items():
                if reply["outcome"] not in GOOD:
                    outcome = {"outcome": reply["outcome"], "detail": reply.get("detail", ""), "seconds": 0.0}
                elif path in rows:
                    outcome = dict(rows[path], seconds=reply.get("seconds", 0) / max(len(rows), 1))
                else:  # not a clip the job lists (a .png or .gif in a folder of videos): not an input of batch
                    continue
                tally.add(outcome, plan[0], plan)
                self._keep(tally, Path(path), outcome, plan)

    def run_json(self, entry: str, count: int, seed_value: int, tally: Tally) -> None:
        work = self.work
        documents = {"manifest": work.manifests, "config": work.configs, "dataset": work.datasets}[entry]
        directory = self.scratch / "json"

        @_settings(count)
        @seed(seed_value)
        @given(plan=mutators.json_plans(documents), flag=st.booleans())
        def one(plan, flag):
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            data = mutators.apply_json_plan(documents, plan)
            if entry == "manifest":
                path = directory / "bundle"
                path.mkdir()
                source = work.bundles[plan[0]]
                for item in source.iterdir():
                    if item.name != "manifest.json":
                        os.symlink(item.resolve(), path / item.name)
                if flag:  # as a tool that rewrites the manifest would: its checksum made to match
                    data = _rechecksum(data)
                (path / "manifest.json").write_bytes(data)
                request = {"entry": "cli", "argv": [str(a) for a in ("predict", work.clip, "--bundle", path, "--json",
                                                                     "--mode", "label", "--backend", "cpu")]}
            elif entry == "config":
                path = directory / f"{plan[0]}.{'yaml' if flag else 'json'}"
                path.write_bytes(_as_yaml(data) if flag else data)
                request = {"entry": "loader", "kind": f"config-{plan[0]}", "path": str(path)}
            else:
                path = directory / "dataset.json"
                path.write_bytes(data)
                request = {"entry": "loader", "kind": "dataset", "path": str(path),
                           "data_root": str(work.root / "task")}
            outcome = self.runner.run(request)
            tally.add(outcome, plan[0], plan)
            self._keep(tally, path, outcome, plan)

        one()

    def run_lists(self, count: int, seed_value: int, tally: Tally) -> None:
        directory = self.scratch / "lists"
        lists = self.work.lists

        @_settings(count)
        @seed(seed_value)
        @given(name=st.sampled_from(sorted(lists)), ops=st.lists(mutators.byte_ops(64), min_size=1, max_size=5))
        def one(name, ops):
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            data = lists[name]
            for op in ops:
                data = mutators.apply_byte_op(data, op)
            path = directory / name
            path.write_bytes(data)
            outcome = self.runner.run({"entry": "loader", "kind": "archive-list", "path": str(path)})
            tally.add(outcome, name, (name, ops))
            self._keep(tally, path, outcome, (name, ops))

        one()

    def run_http(self, count: int, seed_value: int, tally: Tally) -> None:
        directory = self.scratch / "http"

        @_settings(count)
        @seed(seed_value)
        @given(plan=mutators.http_plans())
        def one(plan):
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / "request.bin"
            path.write_bytes(mutators.apply_http_plan(plan))
            outcome = self.runner.run({"entry": "http", "path": str(path)})
            tally.add(outcome, plan[0], plan)
            self._keep(tally, path, outcome, plan)

        one()

    # ---- the seeds themselves ------------------------------------------------------------------------------------
    def baseline(self) -> dict[str, dict]:
        """Each valid seed, unmutated, through its entry points: all must be answered (a WAV has no video, and is
        the one seed that must be refused). A fuzzer whose seeds are all refused would find nothing, and would not
        say so: this is how a broken entry point shows up even when every mutant ends in a clean error."""
        outcomes = {}
        directory = self.scratch / "baseline"
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in sorted(self.media_seeds.items()):
            path = directory / name
            path.write_bytes(data)
            for entry in ("predict --bundle", "predict --model", "stream --fast"):
                request = self.media_request(entry, path, variant=0)
                outcomes[f"{entry} {name}"] = self.runner.run({**request, "argv": [str(a) for a in request["argv"]]})
        for name, document in self.work.configs.items():
            path = directory / f"{name}.json"
            path.write_text(json.dumps(document))
            outcomes[f"config {name}"] = self.runner.run({"entry": "loader", "kind": f"config-{name}",
                                                          "path": str(path)})
        path = directory / "dataset.json"
        path.write_text(json.dumps(self.work.datasets["train"]))
        outcomes["dataset"] = self.runner.run({"entry": "loader", "kind": "dataset", "path": str(path),
                                               "data_root": str(self.work.root / "task")})
        for name, data in self.work.lists.items():
            (directory / name).write_bytes(data)
            outcomes[f"archive list {name}"] = self.runner.run({"entry": "loader", "kind": "archive-list",
                                                                "path": str(directory / name)})
        for precision, bundle in self.work.bundles.items():
            outcomes[f"manifest {precision}"] = self.runner.run({"entry": "cli", "argv": [
                "predict", str(self.work.clip), "--bundle", str(bundle), "--json", "--mode", "label"]})
        return outcomes

    # ---- an entry point ----------------------------------------------------------------------------------------
    def run(self, entry: str, count: int, seed_value: int = 0,
            progress: Callable[[Tally], None] = lambda tally: None) -> Tally:
        tally = Tally(entry)
        start = time.perf_counter()
        if entry in ("predict --bundle", "predict --model", "stream --fast"):
            self.run_media(entry, count, seed_value, tally)
        elif entry == "batch":
            self.run_batch(count, seed_value, tally)
        elif entry in ("manifest", "config", "dataset"):
            self.run_json(entry, count, seed_value, tally)
        elif entry == "archive list":
            self.run_lists(count, seed_value, tally)
        elif entry == "http":
            self.run_http(count, seed_value, tally)
        else:
            raise ValueError(entry)
        tally.seconds = round(time.perf_counter() - start, 1)
        progress(tally)
        return tally


def _rechecksum(data: bytes) -> bytes:
    from r1omni_edge.bundle import CHECKSUM_FIELD, _checksum

    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return data
    if not isinstance(document, dict):
        return data
    document.pop(CHECKSUM_FIELD, None)
    try:
        document[CHECKSUM_FIELD] = _checksum(document)
        return json.dumps(document).encode()
    except (ValueError, TypeError, RecursionError):
        return data


def _as_yaml(data: bytes) -> bytes:
    """The config document as YAML where it parses as JSON (and is not too deep to dump); else the bytes (JSON text
    is YAML too)."""
    import yaml

    try:
        return yaml.safe_dump(json.loads(data)).encode()
    except (ValueError, RecursionError, yaml.YAMLError):
        return data
