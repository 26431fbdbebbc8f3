"""What a new user met (issue 10), each case as the user meets it: the command, its exit code, the first line of
its message, and nothing deleted or lost."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1omni_edge.cli import main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str, command: str) -> str:
    """The one error line a command printed (notes and progress lines may come before it)."""
    lines = [line for line in err.splitlines() if line.startswith(f"r1omni-edge {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def writable(directory: str) -> bool:
    """Really try: root passes os.access checks that the kernel then refuses (/sys)."""
    try:
        with open(Path(directory) / ".r1omni-probe", "w"):
            pass
    except OSError:
        return False
    os.unlink(Path(directory) / ".r1omni-probe")
    return True


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def models(tiny, tmp_path):
    """A private copy of the tiny checkpoint and its towers: these tests point outputs at it on purpose."""
    root = tmp_path / "models"
    shutil.copytree(tiny.root, root)
    return root


def export_args(models, out, *extra):
    return ("export", "--model", models / "R1-Omni-tiny", "--models-dir", models, "--out", out, *extra)


# ---- 1. export --out never deletes what the command did not write ------------------------------------------------
@pytest.mark.parametrize("case", ["non_empty", "models_dir", "model_itself", "inside_model"])
def test_export_refuses_an_out_that_would_destroy_inputs(case, models, tmp_path, capsys):
    before = tree(models)
    out = {"non_empty": tmp_path / "mine", "models_dir": models, "model_itself": models / "R1-Omni-tiny",
           "inside_model": models / "R1-Omni-tiny" / "bundle"}[case]
    if case == "non_empty":
        out.mkdir()
        (out / "notes.txt").write_text("my notes")
    code, out_text, err = run_cli(capsys, *export_args(models, out))
    line = error_line(err, "export")
    assert code == 2 and out_text == ""
    expected = {"non_empty": "not empty and holds no earlier output", "models_dir": "holds --model",
                "model_itself": "is --model", "inside_model": "is inside --model"}[case]
    assert expected in line, line
    assert tree(models) == before  # nothing of the checkpoint or the towers was touched
    if case == "non_empty":
        assert (out / "notes.txt").read_text() == "my notes" and len(list(out.iterdir())) == 1


def test_export_replaces_an_earlier_bundle_only_with_overwrite(models, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert run_cli(capsys, *export_args(models, out))[0] == 0
    manifest = (out / "manifest.json").read_bytes()
    code, _, err = run_cli(capsys, *export_args(models, out))
    assert code == 2 and "holds an earlier output; pass --overwrite" in error_line(err, "export")
    assert (out / "manifest.json").read_bytes() == manifest
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, *export_args(models, out, "--overwrite"))
    assert code == 2 and "holds files that are not part of the earlier output (notes.txt)" in err
    (out / "notes.txt").unlink()
    code, _, err = run_cli(capsys, *export_args(models, out, "--overwrite", "--precision", "int8"))
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["precision"] == "int8"


# ---- 2. verify passes an fp32 bundle of the shipped toy model -----------------------------------------------------
@pytest.mark.slow
def test_verify_passes_the_fp32_bundle_of_the_trained_toy(tmp_path, capsys):
    from r1omni_edge.synthetic import TOY_DIR
    from r1omni_edge.synthetic.task import write_scene_clip

    toy = ("--model", TOY_DIR / "R1-Omni-toy", "--models-dir", TOY_DIR)
    assert run_cli(capsys, "export", *toy, "--out", tmp_path / "toy", "--labels", "dfew", "--resize", "pad")[0] == 0
    clip, _ = write_scene_clip(tmp_path / "scenes.mp4", seconds_each=1.0)
    code, out, err = run_cli(capsys, "verify", tmp_path / "toy", *toy, "--clips", "1", "--clip", clip,
                             "--max-new-tokens", "64")
    assert code == 0, out + err
    assert "identical greedy tokens: 100% of 2 clips" in out and out.rstrip().endswith("PASS")
    report = json.loads(run_cli(capsys, "verify", tmp_path / "toy", *toy, "--clips", "0", "--clip", clip,
                                "--json")[1])
    (check,) = report["clips"]
    assert check["identical"] and check["bundle_label"] == check["torch_label"] is not None  # a whole answer


# ---- 3. stream --fast answers every window it counts ----------------------------------------------------------------
@pytest.fixture(scope="module")
def minutes_clip(tmp_path_factory):
    from r1omni_edge.synthetic.clips import write_clip

    return write_clip(tmp_path_factory.mktemp("long") / "five_minutes.mp4", seconds=300, fps=10, size=(32, 32))


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_stream_fast_answers_every_window_of_a_long_clip(bundles, minutes_clip, tmp_path, capsys):
    jsonl = tmp_path / "events.jsonl"
    code, _, err = run_cli(capsys, "stream", minutes_clip, "--bundle", bundles["fp32"][1], "--fast", "--mode", "label",
                           "--window", "2", "--stride", "2", "--jsonl", jsonl, "--quiet")
    assert code == 0, err
    stopped = read_events(jsonl)[-1]
    assert stopped["type"] == "stopped" and stopped["windows"] == 150 == stopped["results"]
    assert stopped["dropped_windows"] == stopped["skipped_windows"] == stopped["failed_windows"] == 0
    assert "windows 150, results 150, dropped 0, skipped 0, failed 0" in err


class InstantRecognizer:
    backend_name = "instant"

    def recognize(self, frames, audio, use_audio=True, **kwargs):
        from r1omni_edge.result import Result

        return Result("happy", "happy", "", "", [1], "present", {"vision": 0.0}, {"happy": 1.0})


@pytest.mark.slow
def test_stream_fast_on_a_twenty_minute_clip_answers_all_599_windows(tmp_path):
    from r1omni_edge.live.run import run_stream
    from r1omni_edge.live.session import LiveConfig
    from r1omni_edge.synthetic.clips import write_clip

    clip = write_clip(tmp_path / "twenty_minutes.mp4", seconds=1200, fps=10, size=(16, 16), sample_rate=16000)
    events = []
    session = run_stream(InstantRecognizer(), clip, LiveConfig(), realtime=False, on_event=events.append, view=False)
    assert session.windows == session.results == 599  # windows ending at 4, 6, ..., 1200 s
    assert not [e for e in events if e["type"] == "notice"]


# ---- 4. a broken file ends the stream with its error, after the windows it could answer -------------------------------
@pytest.fixture(scope="module")
def damaged_clip(tmp_path_factory):
    from r1omni_edge.synthetic.clips import write_clip

    root = tmp_path_factory.mktemp("damaged")
    data = bytearray(write_clip(root / "good.mp4", seconds=8, fps=10, size=(64, 64)).read_bytes())
    for i in range(len(data) * 5 // 10, len(data) * 6 // 10):  # garbage in the middle of the media data
        data[i] = (data[i] * 7 + 13) & 0xFF
    (root / "damaged.mp4").write_bytes(bytes(data))
    truncated = root / "truncated.mp4"
    truncated.write_bytes(bytes(data[: len(data) * 6 // 10]))
    return root


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "real_time"])
def test_stream_of_a_damaged_clip_ends_with_its_error(fast, bundles, damaged_clip, tmp_path, capsys):
    jsonl = tmp_path / "events.jsonl"
    started = time.monotonic()
    code, _, err = run_cli(capsys, "stream", damaged_clip / "damaged.mp4", "--bundle", bundles["fp32"][1],
                           "--window", "2", "--stride", "1", "--mode", "label", "--jsonl", jsonl, "--quiet",
                           *(["--fast"] if fast else []))
    line = error_line(err, "stream")
    assert code == 2 and "damaged.mp4: cannot be decoded after" in line and "the file is damaged" in line
    events = read_events(jsonl)
    results = [e for e in events if e["type"] == "result"]
    assert results and f"{len(results)} window(s) were answered before it" in line
    assert [e["status"] for e in events if e["type"] == "source"][-1] == "failed"
    assert events[-1]["type"] == "stopped" and time.monotonic() - started < 30  # it ended, it did not retry


def test_stream_of_a_truncated_clip_fails_at_once(bundles, damaged_clip, capsys):
    code, _, err = run_cli(capsys, "stream", damaged_clip / "truncated.mp4", "--bundle", bundles["fp32"][1], "--quiet")
    assert code == 2 and "cannot read this file as a video" in error_line(err, "stream")


# ---- 5. a short clip, and the window that ends at the clip's end, in real time --------------------------------------
def test_real_time_stream_runs_the_window_that_ends_at_the_clip_end(bundles, tmp_path, capsys):
    from r1omni_edge.synthetic.clips import write_clip

    clip = write_clip(tmp_path / "six.mp4", seconds=6.0, fps=10, size=(64, 64))
    windows = {}
    for mode in ("fast", "real_time"):
        jsonl = tmp_path / f"{mode}.jsonl"
        code, _, err = run_cli(capsys, "stream", clip, "--bundle", bundles["fp32"][1], "--window", "2", "--stride",
                               "1", "--mode", "label", "--jsonl", jsonl, "--quiet",
                               *(["--fast"] if mode == "fast" else []))
        assert code == 0, err
        windows[mode] = [e["window"] for e in read_events(jsonl) if e["type"] == "result"]
    assert windows["fast"] == windows["real_time"] == [[0, 2], [1, 3], [2, 4], [3, 5], [4, 6]]


@pytest.mark.parametrize("seconds", [2.0, 4.0])
def test_a_clip_shorter_than_the_window_gets_one_window_and_a_notice(seconds, bundles, tmp_path, capsys):
    """A 2 s clip and a 4 s window: one window over all of it, with a notice. A 4.0 s clip fits the window: one
    ordinary window [0, 4], and no word of it being shorter (it was called shorter)."""
    from r1omni_edge.synthetic.clips import write_clip

    clip = write_clip(tmp_path / "clip.mp4", seconds=seconds, fps=10, size=(64, 64))
    for extra in ((), ("--fast",)):
        jsonl = tmp_path / f"clip{len(extra)}.jsonl"
        code, _, err = run_cli(capsys, "stream", clip, "--bundle", bundles["fp32"][1], "--mode", "label", "--jsonl",
                               jsonl, *extra)
        (result,) = [e for e in read_events(jsonl) if e["type"] == "result"]
        assert code == 0 and result["window"] == pytest.approx([0, seconds], abs=0.05)  # (+ AAC padding)
        assert ("shorter than the 4 s window: one window over all of it" in err) == (seconds < 4)


# ---- 6. an output that cannot be written is one line, and stops the run -----------------------------------------------
@pytest.mark.parametrize("case", ["directory", "no_permission", "read_only"])
def test_unwritable_jsonl_is_one_line(case, bundles, clips, tmp_path, capsys, monkeypatch):
    target = {"directory": tmp_path, "no_permission": Path("/sys/events.jsonl"),
              "read_only": tmp_path / "ro" / "events.jsonl"}[case]
    if case == "no_permission" and writable("/sys"):
        pytest.skip("/sys is writable here")
    if case == "read_only":
        import r1omni_edge.live.sinks as live

        def read_only(handler):  # where the JSONL sink opens its file (logging's rotating handler)
            raise OSError(errno.EROFS, "Read-only file system", handler.baseFilename)

        monkeypatch.setattr(live._RotatingJsonl, "_open", read_only)
    code, out, err = run_cli(capsys, "stream", clips["av"], "--bundle", bundles["fp32"][1], "--fast", "--quiet",
                             "--jsonl", target)
    line = error_line(err, "stream")
    assert code == 2 and f"{target}: --jsonl: cannot open" in line and len(err.strip().splitlines()) == 1
    reason = {"directory": "Is a directory", "no_permission": "ermission denied", "read_only": "read-only"}[case]
    assert reason in line


def test_a_full_disk_stops_the_stream_with_one_line(bundles, clips, capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    code, _, err = run_cli(capsys, "stream", clips["av"], "--bundle", bundles["fp32"][1], "--fast", "--window", "1",
                           "--stride", "0.5", "--mode", "label", "--jsonl", "/dev/full")
    line = error_line(err, "stream")
    assert code == 2 and "/dev/full: --jsonl: cannot write after 0 events (No space left on device)" in line
    assert "Traceback" not in err and "stopped (output failed)" in err  # the terminal view got the stop


def test_export_to_an_unwritable_place_is_one_line(models, capsys, monkeypatch, tmp_path):
    if not writable("/sys"):
        code, _, err = run_cli(capsys, *export_args(models, "/sys/bundle"))
        assert code == 2 and "/sys/bundle" in error_line(err, "export") and "ermission denied" in err
    import r1omni_edge.files as files

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.tempfile, "mkdtemp", read_only)
    code, _, err = run_cli(capsys, *export_args(models, tmp_path / "bundle"))
    line = error_line(err, "export")
    assert code == 2 and "bundle: cannot write (Read-only file system); the file system is read-only" in line


# ---- 7. a manifest edited below its top level -----------------------------------------------------------------------------
def edit(manifest: dict, case: str):
    if case == "no_vision":
        del manifest["parts"]["vision"]
    elif case == "no_stop_ids":
        del manifest["tokens"]["stop_ids"]
    elif case == "no_prompt":
        del manifest["prompt"]["video_audio"]
    elif case == "no_labels":
        manifest["labels"] = []
    elif case == "string_number":
        manifest["model"]["hidden_size"] = "64"
    elif case == "four_frames":
        manifest["preprocess"]["num_frames"] = 4
    elif case == "list":
        return [manifest]
    elif case == "version_string":
        manifest["format_version"] = "2"
    elif case == "tokens_edited":
        manifest["generation"]["max_new_tokens"] = 12
    return manifest


MANIFEST_CASES = {
    "no_vision": "parts: must be vision, audio, decoder (and optionally prefill), found audio, decoder",
    "no_stop_ids": "tokens.stop_ids: missing",
    "no_prompt": "prompt.video_audio: missing",
    "no_labels": "labels: empty",
    "string_number": "model.hidden_size: expected an integer, got '64' (a string)",
    "four_frames": "preprocess.num_frames: 4 differs from model.num_frames 8",
    "list": "the manifest must be a JSON object, not list",
    "version_string": "format_version must be an integer, got '2'",
    "tokens_edited": "its checksum does not match; the manifest was edited or damaged after export",
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_an_edited_manifest_is_named_by_its_key(case, bundles, clips, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["fp32"][1], bundle)
    path = bundle / "manifest.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()), case)))
    code, out, err = run_cli(capsys, "predict", clips["av"], "--bundle", bundle, "--backend", "cpu")
    line = error_line(err, "predict")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert str(path) in line and MANIFEST_CASES[case] in line, line


# ---- 8. training configs and --resume ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [("five", "max_steps: expected an integer, got 'five' (a string)"),
                                             ("-3", "max_steps: must be at least 0, got -3")])
def test_a_bad_max_steps_fails_before_training(value, expected, tmp_path, capsys):
    config = tmp_path / "grpo.yaml"
    config.write_text(f"model: m\ntrain_data: d.json\noutput_dir: {tmp_path / 'run'}\nmax_steps: {value}\n")
    code, _, err = run_cli(capsys, "train", "grpo", "--config", config)
    assert code == 2 and expected in error_line(err, "train")
    assert not (tmp_path / "run").exists()


def test_resume_latest_takes_the_newest_complete_checkpoint(tmp_path, caplog):
    from r1omni_edge.errors import InputError
    from r1omni_edge.train.checkpoints import STATE_FILE, find_resume
    from r1omni_edge.train.sft import SFTConfig

    config = SFTConfig(model="m", train_data="d", output_dir=str(tmp_path), resume_from="latest")
    with pytest.raises(InputError, match="holds no checkpoint-N with trainer_state.pt to resume from; drop --resume"):
        find_resume(config)
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-best", "checkpoint-12"):
        (tmp_path / name).mkdir()
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-best"):
        (tmp_path / name / STATE_FILE).write_bytes(b"state")
    assert find_resume(config) == tmp_path / "checkpoint-10"  # not -best (not ours), not -12 (no trainer state)
    assert "skipping" in caplog.text and "checkpoint-12" in caplog.text


def test_train_resume_latest_without_a_checkpoint_says_so(tiny, tmp_path, capsys):
    config = tmp_path / "sft.json"
    config.write_text(json.dumps({"model": str(tiny.checkpoint), "models_dir": str(tiny.root), "train_data": "d.json",
                                  "output_dir": str(tmp_path / "run")}))
    code, _, err = run_cli(capsys, "train", "sft", "--config", config, "--resume", "latest")
    assert code == 2 and "--resume latest:" in error_line(err, "train") and "drop --resume" in err


# ---- 9, 10, 12: options ----------------------------------------------------------------------------------------------------------
def test_eval_with_an_unknown_label_set_is_one_line(tiny, capsys):
    code, out, err = run_cli(capsys, "eval", "--model", tiny.checkpoint, "--data", "d.json", "--labels", "bogus")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("r1omni-edge eval: error: argument --labels: invalid choice: 'bogus'")


@pytest.mark.parametrize("option, expected", [
    (("--labels", "dfew"), "--labels dfew applies to --model (PyTorch), not to a bundle; a bundle fixed the model's "
                           "settings at export (see its manifest): export it again with --labels dfew"),
    (("--instruction", "Which emotion?"), "--instruction Which emotion? applies to --model"),
    (("--device", "cuda"), "--device cuda applies to --model (PyTorch), not to a bundle; a bundle picks its device "
                           "with --backend (cuda, tensorrt, engine)"),
    (("--resize", "pad"), "--resize pad applies to --model"),
])
def test_predict_with_a_bundle_refuses_what_only_pytorch_honours(option, expected, bundles, clips, capsys):
    code, out, err = run_cli(capsys, "predict", clips["av"], "--bundle", bundles["fp32"][1], *option)
    line = error_line(err, "predict")
    assert code == 2 and out == "" and expected in line
    assert ("--backend" in line) == (option[0] == "--device")  # a GPU is no answer to --labels


@pytest.mark.parametrize("args, expected", [
    (("predict", "CLIP", "--bundle", "B", "--threads", "-2"), "--threads must be at least 1, got -2"),
    (("predict", "CLIP", "--bundle", "B", "--max-think-tokens", "-1"), "--max-think-tokens must be at least 0, got -1"),
    (("stream", "CLIP", "--bundle", "B", "--max-new-tokens", "0"), "--max-new-tokens must be at least 1, got 0"),
    (("stream", "CLIP", "--bundle", "B", "--stride", "0"), "--stride must be greater than 0, got 0"),
    (("stream", "CLIP", "--bundle", "B", "--window", "nan"), "--window must be a finite number, got nan"),
    (("live", "--bundle", "B", "--duration", "-1"), "--duration must be greater than 0, got -1"),
    (("verify", "B", "--model", "M", "--clips", "-1"), "--clips must be at least 0, got -1"),
    (("export", "--model", "M", "--out", "O", "--audio-seconds", "0"), "--audio-seconds must be between 1 and 30"),
    (("train", "sft", "--config", "C", "--max-steps", "x"), "argument --max-steps: invalid integer value: 'x'"),
])
def test_numbers_are_checked_when_the_command_is_parsed(args, expected, capsys):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    command = args[0] if args[0] != "train" else "train"
    assert err.startswith(f"r1omni-edge {command}: error: {expected}"), err


def test_a_still_image_is_accepted_with_a_note(bundles, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "face.png"
    Image.new("RGB", (64, 48), (200, 120, 90)).save(image)
    code, out, err = run_cli(capsys, "predict", image, "--bundle", bundles["fp32"][1], "--mode", "label", "--json")
    result = json.loads(out)
    assert code == 0 and result["audio"] == "missing"
    assert "face.png: 1 frame(s) decoded (a still image, not a video)" in err and err.startswith("r1omni-edge: note:")
    assert result["notes"] == [err.strip().removeprefix("r1omni-edge: note: ")]


def test_inspect_refuses_a_truncated_safetensors_file(tiny, tmp_path, capsys):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny.checkpoint, checkpoint)
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, out, err = run_cli(capsys, "inspect", checkpoint)
    assert code == 2 and out == "" and "model.safetensors: truncated" in error_line(err, "inspect")


@pytest.mark.slow
def test_sigterm_ends_a_stream_with_its_stopped_event(bundles, tmp_path, spawn):
    from r1omni_edge.synthetic.clips import write_clip

    clip = write_clip(tmp_path / "long.mp4", seconds=20.0, fps=10, size=(64, 64))
    jsonl = tmp_path / "events.jsonl"
    process = spawn([sys.executable, "-m", "r1omni_edge.cli", "stream", str(clip), "--bundle",
                     str(bundles["fp32"][1]), "--window", "1", "--stride", "0.5", "--mode", "label",
                     "--jsonl", str(jsonl), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (jsonl.exists() and '"type": "result"' in jsonl.read_text()):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    events = read_events(jsonl)
    assert events[-1]["type"] == "stopped" and events[-1]["reason"] == "terminated"


# ---- 11. live sources that never open -----------------------------------------------------------------------------------------
def test_live_with_a_camera_that_does_not_exist_fails_in_bounded_time(bundles, tmp_path, capsys):
    jsonl = tmp_path / "events.jsonl"
    started = time.monotonic()
    code, _, err = run_cli(capsys, "live", "--bundle", bundles["fp32"][1], "--camera", "99", "--no-mic",
                           "--open-timeout", "1", "--jsonl", jsonl, "--quiet")
    line = error_line(err, "live")
    assert code == 2 and "camera '99': did not open within 1 s (cannot open camera 99)" in line
    assert time.monotonic() - started < 15


def test_live_with_a_microphone_that_does_not_exist_fails(bundles, clips, capsys):
    code, _, err = run_cli(capsys, "live", "--bundle", bundles["fp32"][1], "--camera", clips["av"], "--mic",
                           "nonexistent", "--open-timeout", "1", "--quiet")
    assert code == 2 and "microphone 'nonexistent': did not open within 1 s" in error_line(err, "live")
    assert "--no-mic" in err


def test_live_times_are_seconds_of_the_session(bundles, clips, tmp_path, capsys):
    """A file played as a camera, looped: windows and event times count from the session's start."""
    from dataclasses import replace

    from r1omni_edge.engines import BundleRecognizer
    from r1omni_edge.live.run import run_live
    from r1omni_edge.live.session import LIVE_RECOGNITION, LiveConfig

    recognizer = BundleRecognizer.from_bundle(bundles["fp32"][1], backend="cpu")
    events = []
    config = LiveConfig(window=1.0, stride=1.0, recognition=replace(LIVE_RECOGNITION, mode="label"))
    session = run_live(recognizer, str(clips["av"]), use_microphone=False, loop=True, view=False, duration=3.5,
                       config=config, on_event=events.append)
    results = [e for e in events if e["type"] == "result"]
    assert session.results == len(results) >= 2
    assert all(0 <= e["time"] < 10 for e in events)
    assert [r["window"][1] for r in results][:2] == [1.0, 2.0]


def test_toy_data_writes_a_task_and_configs_that_train_loads(capsys, tmp_path):
    from r1omni_edge.synthetic.task import TOY_GRPO, TOY_SFT
    from r1omni_edge.train.config import AdaptConfig, GRPOConfig, SFTConfig

    out = tmp_path / "toy"
    code, stdout, err = run_cli(capsys, "toy-data", "--out", out, "--train", "4", "--held-out", "4",
                                "--adapt-clips", "4")
    assert code == 0, err
    assert f"r1omni-edge train sft --config {out / 'sft.yaml'}" in stdout
    assert f"r1omni-edge train adapt --config {out / 'adapt.yaml'}" in stdout
    label, adapt = AdaptConfig.from_file(out / "label.yaml"), AdaptConfig.from_file(out / "adapt.yaml")
    assert (label.audio_window, label.teacher_mode, adapt.audio_window) == ("full", "full", "fit")
    assert adapt.model == str(Path(label.output_dir) / f"checkpoint-{label.max_steps}")
    sft, grpo = SFTConfig.from_file(out / "sft.yaml"), GRPOConfig.from_file(out / "grpo.yaml")
    assert sft.max_steps == TOY_SFT["max_steps"] and grpo.updates_per_batch == TOY_GRPO["updates_per_batch"]
    assert Path(sft.model, "config.json").is_file() and Path(sft.train_data).is_file()
    assert grpo.model == str(Path(sft.output_dir) / f"checkpoint-{sft.max_steps}")
    assert len(list((out / "task" / "clips").glob("*.mp4"))) == 12
    # a second run into the same directory is refused, and nothing it holds is touched
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    code, _, err = run_cli(capsys, "toy-data", "--out", out)
    assert code == 2 and error_line(err, "toy-data")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.parametrize("video_only", [False, True])
def test_a_clip_without_audio_gets_the_same_answer_from_predict_and_stream(video_only, bundles, clips, tmp_path,
                                                                          capsys):
    """No audio track: silence through the audio path in both commands (the published model's rule), or a prompt
    without audio in both with --video-only (stream used to take the video-only prompt on its own)."""
    extra = ("--video-only",) if video_only else ()
    code, out, _ = run_cli(capsys, "predict", clips["video_only"], "--bundle", bundles["fp32"][1], "--mode", "label",
                           "--json", *extra)
    predicted = json.loads(out)
    jsonl = tmp_path / "events.jsonl"
    code2, _, err = run_cli(capsys, "stream", clips["video_only"], "--bundle", bundles["fp32"][1], "--mode", "label",
                            "--window", "2", "--fast", "--jsonl", jsonl, *extra)
    (result,) = [e for e in read_events(jsonl) if e["type"] == "result"]
    assert code == code2 == 0
    assert predicted["audio"] == result["audio"] == ("not used" if video_only else "missing")
    assert result["label"] == predicted["label"]
    assert result["probabilities"] == pytest.approx(predicted["probabilities"], abs=1e-5)
    assert ("10 s of silence go through the audio path" in err) != video_only
