"""The audio window: one bundle's audio part takes any window from 1 s to 30 s and equals the PyTorch encoder on it;
the policy (full, fit, seconds) is checked against what the part accepts, and the Result says which window ran."""

import numpy as np
import pytest
import torch

from r1omni_edge.cli import main
from r1omni_edge.errors import InputError
from r1omni_edge.media.processor import FIT_BUCKETS, FIT_SLACK_SECONDS, Processor, fit_seconds, parse_audio_window


@pytest.mark.parametrize("seconds", [1, 4, 15, 30])
def test_dynamic_audio_part_equals_the_pytorch_encoder(bundles, recognizer, seconds):
    import onnxruntime as ort

    manifest, path = bundles["fp32"]
    assert manifest.preprocess.audio_range == (1, 30)
    part = manifest.parts["audio"]
    assert part.inputs[0].shape == [1, 128, "mel_frames"] and part.outputs[0].shape[0] == "audio_positions"
    session = ort.InferenceSession(str(path / part.file), providers=["CPUExecutionProvider"])
    mel = np.random.default_rng(seconds).uniform(-1, 1, (1, 128, 100 * seconds)).astype(np.float32)
    (got,) = session.run(None, {part.inputs[0].name: mel})
    with torch.no_grad():
        expected = recognizer.model.encode_audio(torch.from_numpy(mel[0])).numpy()
    assert got.shape == expected.shape == (seconds * 100 // 6, manifest.model.hidden_size)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_policy_values():
    assert parse_audio_window("full") == "full" and parse_audio_window("fit") == "fit"
    assert parse_audio_window("4") == 4 and parse_audio_window(30) == 30
    for bad in ("0", "31", "4.5", "four", "", "-2"):
        with pytest.raises(InputError, match="full, fit or a whole number of seconds from 1 to 30"):
            parse_audio_window(bad)


@pytest.mark.parametrize("seconds", [0.3, 1.0, 1.05, 1.2, 2.5, 4.0, 4.02, 7.9, 12.0, 29.0, 45.0])
def test_fit_never_pads_past_its_bucket(seconds):
    samples = int(seconds * 16000)
    bucket = fit_seconds(samples)
    assert bucket in FIT_BUCKETS
    smaller = [b for b in FIT_BUCKETS if b < bucket]
    slack = FIT_SLACK_SECONDS * 16000  # a codec's few extra ms are cut rather than doubling the window
    assert bucket * 16000 >= samples - slack or bucket == 30  # holds the audio (past 30 s is cut, as published)
    assert not smaller or smaller[-1] * 16000 < samples - slack  # and no smaller bucket would
    processor = Processor(audio_window="fit")
    inputs = processor(np.zeros((2, 32, 32, 3), np.uint8), np.full(samples, 0.1, np.float32))
    assert inputs.input_features.shape == (1, 128, bucket * 100) and inputs.audio_seconds == bucket


def test_full_is_the_published_window_and_seconds_are_exact():
    frames, audio = np.zeros((2, 32, 32, 3), np.uint8), np.zeros(16000 * 3, np.float32)
    assert Processor()(frames, audio).input_features.shape == (1, 128, 3000)
    assert Processor(audio_window=8)(frames, audio).input_features.shape == (1, 128, 800)
    assert Processor(audio_window="fit")(frames, audio, use_audio=False).audio_seconds is None


def test_runtime_and_pytorch_agree_on_a_fitted_window(bundles, recognizer, clips):
    from r1omni_edge.engines import BundleRecognizer

    runtime = BundleRecognizer.from_bundle(bundles["fp32"][1], backend="cpu")
    runtime.audio_window = recognizer.audio_window = "fit"
    try:
        expected = recognizer.recognize_file(clips["av"], max_new_tokens=16)
        got = runtime.recognize_file(clips["av"], max_new_tokens=16, constrain=False)
        fitted = runtime.recognize_file(clips["av"], mode="label", audio_layout="compact")
        kept = runtime.recognize_file(clips["av"], mode="label")  # auto: the published prompt's layout (tail)
    finally:
        recognizer.audio_window = "full"
    assert expected.audio_window == got.audio_window == fitted.audio_window == 2  # a 2 s clip
    assert got.token_ids == expected.token_ids
    assert got.prompt_tokens == expected.prompt_tokens
    runtime.audio_window = "full"
    full = runtime.recognize_file(clips["av"], mode="label")
    assert full.audio_window == 30 and full.prompt_tokens - fitted.prompt_tokens == 500 - 33
    assert (kept.audio_layout, kept.prompt_tokens, fitted.audio_layout) == ("tail", full.prompt_tokens, "compact")


def test_a_bundle_with_a_fixed_window_refuses_other_windows(recognizer, tmp_path):
    from r1omni_edge.export.exporter import ExportOptions, export_bundle
    from r1omni_edge.engines import BundleRecognizer

    manifest = export_bundle(recognizer, tmp_path / "a4", ExportOptions(audio_seconds=4))
    assert manifest.preprocess.audio_range == (4, 4) and manifest.parts["audio"].inputs[0].shape == [1, 128, 400]
    runtime = BundleRecognizer.from_bundle(tmp_path / "a4", backend="cpu")
    runtime.audio_window = 4  # its own window is fine, and so is "full" (which means it)
    for policy in ("fit", 8):
        with pytest.raises(InputError, match="takes only 4 s windows"):
            runtime.audio_window = policy


def test_cli_checks_the_window_at_parse_time(capsys):
    code = main(["predict", "clip.mp4", "--bundle", "B", "--audio-window", "45"])
    assert code == 2 and "--audio-window" in capsys.readouterr().err


def test_fast_profile_sets_the_front_end_and_events_say_whether_windows_kept_up(bundles, tmp_path, capsys):
    import json

    from r1omni_edge.synthetic.clips import write_clip

    clip = write_clip(tmp_path / "six.mp4", seconds=6.0, audio=True)
    for extra, mode in (([], "label"), (["--mode", "full", "--max-new-tokens", "8"], "full")):
        jsonl = tmp_path / f"{mode}.jsonl"
        code = main(["stream", str(clip), "--bundle", str(bundles["fp32"][1]), "--fast", "--fast-profile", "--quiet",
                     "--jsonl", str(jsonl), *extra])
        assert code == 0, capsys.readouterr().err
        events = [json.loads(line) for line in jsonl.read_text().splitlines()]
        (started,) = [e for e in events if e["type"] == "started"]
        assert (started["mode"], started["audio_window"], started["audio_gate"]) == (mode, "fit", "energy")
        results = [e for e in events if e["type"] == "result"]
        assert len(results) == 2 and all(r["audio_window"] == 4 for r in results)  # 4 s windows at 2 s stride
        assert all(r["kept_up"] == (r["latency_ms"]["total"] <= 2000) for r in results)
        assert all(isinstance(r["generated_tokens"], int) and r["dropped_windows"] == 0 for r in results)
    code = main(["stream", str(clip), "--bundle", str(bundles["fp32"][1]), "--fast", "--quiet", "--jsonl",
                 str(tmp_path / "plain.jsonl")])
    (started,) = [e for e in map(json.loads, (tmp_path / "plain.jsonl").read_text().splitlines())
                  if e["type"] == "started"]
    assert code == 0 and (started["mode"], started["audio_window"], started["audio_gate"]) == ("full", "full", "off")


def test_eval_measures_a_fast_front_end_against_the_published_one(bundles, tmp_path, capsys):
    import json

    from r1omni_edge.synthetic.task import write_task

    data = write_task(tmp_path, train=1, held_out=4)["eval"]
    bundle = str(bundles["fp32"][1])
    assert main(["eval", "--bundle", bundle, "--data", str(data), "--max-new-tokens", "12", "--free-answer",
                 "--json"]) == 0
    published = json.loads(capsys.readouterr().out)
    assert "agreement_with_published" not in published  # the published front end has nothing to compare with
    assert main(["eval", "--bundle", bundle, "--data", str(data), "--max-new-tokens", "12", "--free-answer",
                 "--audio-window", "1", "--json"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert fast["published"] == {k: published[k] for k in ("war", "uar", "format", "answered")}
    same = fast["agreement_with_published"]
    assert same["samples"] == 4 and 0 <= same["token_prefix"] <= 1 and fast["audio_window"] == 1
    assert same["identical_tokens"] <= same["token_prefix"] and 0 <= same["label"] <= 1
    assert main(["eval", "--bundle", bundle, "--data", str(data), "--max-new-tokens", "12", "--free-answer",
                 "--audio-window", "1"]) == 0
    text = capsys.readouterr().out
    assert "published audio front end" in text and "agreement with the published front end on 4 clips" in text
    # --original: the model before adaptation, under the published front end (here the same bundle: all equal)
    assert main(["eval", "--bundle", bundle, "--data", str(data), "--max-new-tokens", "12", "--free-answer",
                 "--audio-window", "1", "--original", bundle, "--json"]) == 0
    against = json.loads(capsys.readouterr().out)
    assert against["original"] == fast["published"]
    assert against["agreement_with_original"]["identical_tokens"] == 1.0
    assert main(["eval", "--bundle", bundle, "--data", str(data), "--original", str(tmp_path)]) == 2
    assert "--original" in capsys.readouterr().err


def test_verify_reports_the_fast_front_ends_against_the_published_one(bundles, recognizer):
    from r1omni_edge.export.verify import verify_bundle

    report = verify_bundle(recognizer, bundles["fp32"][1], synthetic=3, max_new_tokens=8, original=recognizer)
    assert not report.failures  # the comparison is reported, never a failure
    measured = {(f.audio_window, f.audio_gate, f.audio_layout, f.resolved_layout): f.agreement
                for f in report.front_ends}
    assert set(measured) == {("fit", "off", "compact", "compact"), ("fit", "off", "tail", "tail"),
                             ("fit", "off", "auto", "tail"), ("fit", "energy", "auto", "tail"),
                             ("fit", "vad", "auto", "tail")}
    # the original model (here the reference itself) under the published front end: the bundle's published tokens
    assert report.original["samples"] == 3 and report.original["identical_tokens"] == 1.0
    assert "against the original model" in report.table()
    assert all(a["samples"] == 3 and 0 <= a["identical_tokens"] <= a["token_prefix"] <= 1 for a in measured.values())
    assert "faster audio front ends" in report.table() and report.to_dict()["front_ends"][0]["audio_window"] == "fit"
