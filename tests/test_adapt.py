"""Window adaptation (`train adapt`) on the tiny model: the distillation loss falls and the fast front end's labels
move toward the published front end's; the checkpoint records its front end, the bundle's manifest carries it, the
runtime picks its layout and warns under another front end; a resumed run equals the uninterrupted one."""

import json
import logging

import pytest
import torch

from r1omni_edge.config import ADAPTED_FRONT_END
from r1omni_edge.synthetic.task import ADAPT_SETTINGS, write_clip_set

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def adapt_task(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    return {"root": root, "clips": write_clip_set(root, 8, 11, ADAPT_SETTINGS, "adapt")}


def adapt_config(tiny, adapt_task, output: str, **changes):
    from r1omni_edge.train.adapt import AdaptConfig

    values = dict(model=str(tiny.checkpoint), models_dir=str(tiny.root), train_data=str(adapt_task["clips"]),
                  output_dir=str(adapt_task["root"] / output), cache_dir=str(adapt_task["root"] / "cache"),
                  max_steps=12, batch_size=4, micro_batch=4, learning_rate=1e-2, teacher_max_tokens=12,
                  labels="dfew", tensorboard=False)
    values.update(changes)
    return AdaptConfig.from_dict(values)


def test_adaptation_lowers_the_distillation_loss_and_records_its_front_end(tiny, adapt_task, tmp_path, caplog):
    from r1omni_edge.engines import BundleRecognizer
    from r1omni_edge.export.exporter import ExportOptions, export_bundle
    from r1omni_edge.model import TorchRecognizer
    from r1omni_edge.recognition import RecognitionOptions
    from r1omni_edge.train.adapt import train_adapt

    result = train_adapt(adapt_config(tiny, adapt_task, "run"))
    before, after = result["before"], result["after"]
    assert before["kl"] > 0.01  # the fast front end answers otherwise at first: something to learn
    assert after["kl"] < 0.5 * before["kl"] and after["agreement"] >= before["agreement"]
    assert result["published_after"]["agreement"] >= 0.75  # the keep term: the published answers stay
    curve = [json.loads(line) for line in (adapt_task["root"] / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(curve) == 12 and sum(m["train/kl"] for m in curve[-3:]) < sum(m["train/kl"] for m in curve[:3])

    checkpoint = result["checkpoint"]
    config = json.loads((tmp_path.parent / checkpoint / "config.json").read_text())
    assert config[ADAPTED_FRONT_END] == {"audio_window": "fit", "audio_layout": "compact"}
    torch_model = TorchRecognizer.from_checkpoint(checkpoint, models_dir=tiny.root)
    assert torch_model.info.adapted_front_end == {"audio_window": "fit", "audio_layout": "compact"}
    manifest = export_bundle(torch_model, tmp_path / "bundle", ExportOptions())
    assert manifest.preprocess.adapted_front_end == {"audio_window": "fit", "audio_layout": "compact"}
    runtime = BundleRecognizer.from_bundle(tmp_path / "bundle", backend="cpu")
    fit = RecognitionOptions(audio_window="fit")
    assert runtime.audio_layout_for(fit) == "compact"  # auto: the adapted layout
    with caplog.at_level(logging.WARNING):
        runtime.check(fit)
        assert not caplog.records
        runtime.check(RecognitionOptions())  # the published window on a model adapted to fit: warned
    assert "adapted to the audio front end --audio-window fit --audio-layout compact" in caplog.text


def test_resume_equals_the_uninterrupted_run(tiny, adapt_task):
    from r1omni_edge.train.adapt import train_adapt

    common = dict(max_steps=4)
    train_adapt(adapt_config(tiny, adapt_task, "a", save_every=2, **common))
    train_adapt(adapt_config(tiny, adapt_task, "b", **common))
    resumed = train_adapt(adapt_config(tiny, adapt_task, "a", resume_from=str(adapt_task["root"] / "a" /
                                                                              "checkpoint-2"), **common))
    assert resumed["checkpoint"].endswith("checkpoint-4")
    full = torch.load(adapt_task["root"] / "a" / "checkpoint-4" / "trainer_state.pt", weights_only=False)["trainable"]
    plain = torch.load(adapt_task["root"] / "b" / "checkpoint-4" / "trainer_state.pt", weights_only=False)["trainable"]
    assert full.keys() == plain.keys() and any("lora" in key for key in full)
    for name, value in plain.items():
        assert torch.equal(full[name], value), name


def test_config_refuses_the_published_window_and_a_labelless_folder_works(tiny, adapt_task, tmp_path):
    from r1omni_edge.datasets import unlabelled_clips
    from r1omni_edge.errors import InputError

    with pytest.raises(InputError, match="published front end: there is nothing to adapt"):
        adapt_config(tiny, adapt_task, "x", audio_window="full")
    with pytest.raises(InputError, match="audio_layout"):
        adapt_config(tiny, adapt_task, "x", audio_layout="positions")
    samples = unlabelled_clips(adapt_task["root"] / "clips")
    assert len(samples) == 8 and all(s.label == "" and "<audio>" in s.prompt for s in samples)
    (tmp_path / "list.txt").write_text("\n".join(str(s.video) for s in samples[:3]) + "\nmissing.mp4\n")
    with pytest.raises(InputError, match="1 listed clip"):
        unlabelled_clips(tmp_path / "list.txt")


def test_cli_takes_adapt_without_a_config_and_refuses_its_flags_elsewhere(capsys, tmp_path):
    from r1omni_edge.cli import main

    assert main(["train", "sft", "--model", "m", "--clips", "c"]) == 2
    assert "--model, --clips: for train adapt" in capsys.readouterr().err
    assert main(["train", "grpo"]) == 2
    assert "train grpo needs --config FILE" in capsys.readouterr().err
    assert main(["train", "adapt", "--model", str(tmp_path / "none"), "--clips", str(tmp_path), "--audio-window",
                 "full", "--output-dir", str(tmp_path / "out")]) == 2
    assert "nothing to adapt to" in capsys.readouterr().err


@pytest.mark.slow
def test_two_ranks_adapt_the_weights_one_process_adapts_on_the_same_batch(tiny, adapt_task, tmp_path):
    """Two gloo ranks (DDP) taking two clips each end the step with the weights one process gets from all four."""
    import os
    import subprocess
    import sys

    from tests.test_train import launch_two_processes

    cfg = {"model": str(tiny.checkpoint), "models_dir": str(tiny.root), "train_data": str(adapt_task["clips"]),
           "cache_dir": str(adapt_task["root"] / "cache"), "max_steps": 2, "batch_size": 4, "micro_batch": 2,
           "learning_rate": 1e-3, "teacher_max_tokens": 8, "labels": "dfew", "tensorboard": False}
    # 1e-3: at 1e-2, AdamW's second step turned the ranks' different summation order into a 2.4e-5 difference on
    # one weight of 512 in one run of seven; a gradient of the wrong scale still moves the weights by about 1e-3
    two = launch_two_processes({**cfg, "output_dir": str(tmp_path / "two")}, tmp_path, "two", 29576, "adapt")
    assert two.returncode == 0, two.stderr[-3000:]
    (tmp_path / "one.json").write_text(json.dumps({**cfg, "output_dir": str(tmp_path / "one")}))
    one = subprocess.run([sys.executable, "-m", "r1omni_edge.cli", "train", "adapt", "--config",
                          str(tmp_path / "one.json")], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert one.returncode == 0, one.stderr[-3000:]
    weights = {name: torch.load(tmp_path / name / "checkpoint-2" / "trainer_state.pt", weights_only=False)["trainable"]
               for name in ("one", "two")}
    moved = 0
    for key, value in weights["one"].items():
        torch.testing.assert_close(weights["two"][key], value, atol=2e-5, rtol=1e-4)
        moved += "lora_B" in key and bool(value.abs().sum() > 0)  # LoRA's B starts at zero: moved means trained
    assert moved > 0
