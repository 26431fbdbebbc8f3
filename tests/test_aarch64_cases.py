"""tools/aarch64_cases.py's comparison (the x86 run against the aarch64 one): it passes equal runs, and it fails an
fp32 case whose tokens differ and an int8 case whose label or probabilities move. The runs themselves are
tools/aarch64_run.sh's (in .ci/run), not repeated here."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("aarch64_cases", ROOT / "tools" / "aarch64_cases.py")
cases = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cases)

CLIPS = ["a.mp4", "b.mp4"]


def write_run(path: Path, answers: dict, arrays: dict) -> Path:
    path.write_text(json.dumps({"versions": {"machine": path.stem}, "clips": CLIPS, "seconds": {},
                                "answers": answers}))
    np.savez(path.with_suffix(".npz"), **arrays)
    return path


def a_run() -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    answers, arrays = {}, {}
    for case, (bundle, mode) in cases.CASES.items():
        answers[case] = {clip: {"label": "happy", "tokens": [1, 2, 3], "text": "happy</answer>",
                                "probabilities": None if mode == "full" else {"happy": 0.9, "sad": 0.1},
                                "audio_gated": False} for clip in CLIPS}
        for clip in CLIPS:
            for stage in cases.STAGES:
                arrays[f"{bundle}|{clip}|{stage}"] = rng.normal(size=(2, 8)).astype(np.float32)
    for case in cases.LIVE:
        answers[case] = {f"{end - 2:.2f}-{end:.2f}": {"label": "sad", "probabilities": {"happy": 0.3, "sad": 0.7}}
                         for end in (2, 3, 4)}
    return answers, arrays


def test_equal_runs_pass_and_report_every_case(tmp_path):
    answers, arrays = a_run()
    report = cases.compare(write_run(tmp_path / "x86.json", answers, arrays),
                           write_run(tmp_path / "arm.json", answers, arrays))
    assert set(report["cases"]) == set(cases.CASES) | set(cases.LIVE)
    for row in report["cases"].values():
        assert row["passed"]
    for case in cases.CASES:
        row = report["cases"][case]
        assert row["tokens identical"] == 2 and row["min cos(vision)"] > 0.999999
    assert report["cases"]["int8 label"]["max |dp|"] == 0.0
    assert report["cases"]["live fast int8"]["labels equal"] == 3
    assert "| fast int8 |" in cases.table(report) and "3/3 windows" in cases.table(report)


def test_a_changed_token_fails_fp32_and_a_moved_probability_fails_int8(tmp_path):
    answers, arrays = a_run()
    other = copy.deepcopy(answers)
    other["fp32 full"]["b.mp4"]["tokens"] = [1, 2, 4]
    other["int8 full"]["b.mp4"]["tokens"] = [1, 2, 4]  # int8: other tokens with the same label pass
    other["int8 label"]["a.mp4"]["probabilities"] = {"happy": 0.8, "sad": 0.2}
    other["fast int8"]["a.mp4"]["label"] = "sad"
    del other["live fast int8"]["1.00-3.00"]  # a window the other run did not answer
    shifted = dict(arrays, **{key: value + 1.0 for key, value in arrays.items() if key.endswith("pixel_values")})
    report = cases.compare(write_run(tmp_path / "x86.json", answers, arrays),
                           write_run(tmp_path / "arm.json", other, shifted))
    rows = report["cases"]
    assert not rows["fp32 full"]["passed"] and rows["fp32 full"]["tokens identical"] == 1
    assert rows["int8 full"]["passed"] and rows["int8 full"]["tokens identical"] == 1
    assert not rows["int8 label"]["passed"] and abs(rows["int8 label"]["max |dp|"] - 0.1) < 1e-9
    assert not rows["fast int8"]["passed"] and rows["fast int8"]["labels equal"] == 1
    assert not rows["live fast int8"]["passed"] and rows["live fast int8"]["windows in both"] == 2
    assert rows["fp32 label"]["passed"] and rows["fp32 label"]["max |d pixel| (of 255)"] == round(255 / 2, 2)
