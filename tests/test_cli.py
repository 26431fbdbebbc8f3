import json
import os
import shutil
import subprocess
import sys

import pytest

from r1omni_edge.cli import main

JSON_FIELDS = {"label", "answer", "reasoning", "text", "token_ids", "audio", "timings_ms"}


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def predict_args(tiny, clip, *extra):
    return ("predict", clip, "--model", tiny.checkpoint, "--models-dir", tiny.root, "--max-new-tokens", 6, *extra)


def test_predict_json_with_audio(tiny, clips, capsys):
    code, out, err = run_cli(capsys, *predict_args(tiny, clips["av"], "--json"))
    assert code == 0, err
    result = json.loads(out)
    assert JSON_FIELDS <= result.keys()
    assert result["audio"] == "present"
    assert 1 <= len(result["token_ids"]) <= 6
    for stage in ("decode_media", "preprocess", "gate", "vision", "audio", "prefill", "decode", "total"):
        assert result["timings_ms"][stage] >= 0, stage
    # 2 + 392 visual + 500 audio positions and the text around them
    assert result["prompt_tokens"] > 892


def test_predict_is_deterministic_and_matches_the_python_api(tiny, clips, capsys, recognizer):
    _, out, _ = run_cli(capsys, *predict_args(tiny, clips["av"], "--json"))
    api = recognizer.recognize_file(clips["av"], max_new_tokens=6)
    assert json.loads(out)["token_ids"] == api.token_ids


def test_predict_without_audio_track_and_video_only(tiny, clips, capsys):
    code, out, _ = run_cli(capsys, *predict_args(tiny, clips["video_only"], "--json"))
    missing = json.loads(out)
    assert code == 0 and missing["audio"] == "missing" and "audio" in missing["timings_ms"]
    code, out, _ = run_cli(capsys, *predict_args(tiny, clips["av"], "--json", "--video-only"))
    video_only = json.loads(out)
    assert code == 0 and video_only["audio"] == "not used" and "audio" not in video_only["timings_ms"]
    assert video_only["prompt_tokens"] < missing["prompt_tokens"] - 490


def test_predict_human_output(tiny, clips, capsys):
    code, out, _ = run_cli(capsys, *predict_args(tiny, clips["av"], "--resize", "pad"))
    assert code == 0 and out.startswith("label:") and "timings (ms):" in out


def test_predict_label_mode_with_the_pytorch_model(tiny, clips, capsys, recognizer):
    code, out, err = run_cli(capsys, *predict_args(tiny, clips["av"], "--json", "--mode", "label"))
    result = json.loads(out)
    assert code == 0, err
    assert result["reasoning"] == "" and result["label"] == result["answer"] in recognizer.labels
    assert result["probabilities"][result["label"]] == max(result["probabilities"].values())
    code, _, err = run_cli(capsys, *predict_args(tiny, clips["av"], "--free-answer", "--threads", "2"))
    assert code == 2 and "--threads, --free-answer apply to --bundle" in err
    code, _, err = run_cli(capsys, *predict_args(tiny, clips["av"], "--compile"))
    assert code == 2 and "--compile applies to --device cuda" in err


def make_bin_checkpoint(tiny, tmp_path):
    import torch
    from safetensors.torch import load_file

    root = tmp_path / "models"
    shutil.copytree(tiny.root, root)
    checkpoint = root / tiny.checkpoint.name
    torch.save(load_file(checkpoint / "model.safetensors"), checkpoint / "pytorch_model.bin")
    (checkpoint / "model.safetensors").unlink()
    return root, checkpoint


def make_wide_tower(tiny, tmp_path):
    root = tmp_path / "wide"
    shutil.copytree(tiny.root, root)
    path = root / "whisper-large-v3" / "config.json"
    config = json.loads(path.read_text())
    config["d_model"] = 48
    path.write_text(json.dumps(config))
    return root


@pytest.mark.parametrize("case", ["missing", "text", "empty", "no_config", "wide_tower", "bin", "bad_tokens"])
def test_bad_input_gets_one_line_and_exit_2(case, tiny, clips, tmp_path, capsys):
    model, models_dir, clip, extra = tiny.checkpoint, tiny.root, clips["av"], ()
    if case == "missing":
        clip, expected = tmp_path / "nope.mp4", "no such file"
    elif case == "text":
        clip = tmp_path / "notes.mp4"
        clip.write_text("not a video\n" * 10)
        expected = "cannot read this file as a video"
    elif case == "empty":
        clip = tmp_path / "empty.mp4"
        clip.write_bytes(b"")
        expected = "empty (0 bytes)"
    elif case == "no_config":
        model = tmp_path / "ckpt"
        shutil.copytree(tiny.checkpoint, model)
        (model / "config.json").unlink()
        expected = "no config.json"
    elif case == "wide_tower":
        models_dir, expected = make_wide_tower(tiny, tmp_path), "d_model 48, but the checkpoint needs 32"
    elif case == "bin":
        models_dir, model = make_bin_checkpoint(tiny, tmp_path)
        expected = "pickled"
    else:
        extra, expected = ("--max-new-tokens", "0"), "--max-new-tokens must be at least 1"
    code, out, err = run_cli(capsys, "predict", clip, "--model", model, "--models-dir", models_dir, *extra)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("r1omni-edge predict: error: ") and expected in err


def test_bin_checkpoint_runs_with_allow_pickle(tiny, clips, tmp_path, capsys):
    models_dir, model = make_bin_checkpoint(tiny, tmp_path)
    code, out, _ = run_cli(capsys, "predict", clips["av"], "--model", model, "--models-dir", models_dir,
                           "--max-new-tokens", "2", "--allow-pickle", "--json")
    assert code == 0 and json.loads(out)["audio"] == "present"


def test_inspect(tiny, capsys):
    code, out, _ = run_cli(capsys, "inspect", tiny.checkpoint)
    assert code == 0
    assert "mm_projector" in out and "towers inside the checkpoint: siglip: no, whisper: no, bert: yes" in out
    assert "<|im_end|>=" in out and "plain text" in out
    code, out, _ = run_cli(capsys, "inspect", tiny.checkpoint, "--json")
    report = json.loads(out)
    assert report["parts"]["bert_gate"]["dtypes"] == ["BF16"] and not report["lm_head_stored"]
    assert report["total_parameters"] == sum(p["parameters"] for p in report["parts"].values())


@pytest.mark.slow
def test_console_script_in_a_subprocess(tiny, clips, tmp_path):
    """The installed entry point: exit codes and output as a shell user sees them."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    ok = subprocess.run([sys.executable, "-m", "r1omni_edge.cli", *map(str, predict_args(tiny, clips["av"], "--json"))],
                        capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["audio"] == "present"
    bad = subprocess.run([sys.executable, "-m", "r1omni_edge.cli", "predict", str(tmp_path / "x.mp4"), "--model",
                          str(tiny.checkpoint)], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no such file" in bad.stderr


def test_predict_in_bf16_on_cpu(tiny, clips, capsys):
    code, out, err = run_cli(capsys, *predict_args(tiny, clips["av"], "--json", "--dtype", "bf16"))
    assert code == 0, err
    assert json.loads(out)["audio"] == "present"
