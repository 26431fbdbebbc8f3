"""Does training really learn? On the synthetic audio-visual task (4 classes, label recoverable from the frames and
the tone), with the tiny model: SFT on labels independent of the clip teaches the format and to name the cues, and
nothing of the task; GRPO then lifts held-out accuracy well above chance and keeps the format; the controls (rewards
against random labels, blanked inputs) must not improve. Asserting direction and controls, not merely that
parameters changed. The seeds and CPUs this was measured on are in docs/training.md."""

import pytest

CHANCE = 0.25


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from r1omni_edge.synthetic.checkpoint import TRAINABLE_STD, write_tiny_checkpoint
    from r1omni_edge.synthetic.task import write_task

    root = tmp_path_factory.mktemp("learning")
    models = write_tiny_checkpoint(root / "models", decoder_std=TRAINABLE_STD)
    files = write_task(root / "task", train=48, held_out=24, permute_train_labels=True)
    return {"root": root, "models": models, "files": files}


def common(toy, output: str) -> dict:
    return dict(models_dir=str(toy["models"].root), train_data=str(toy["files"]["train"]),
                eval_data=str(toy["files"]["eval"]), data_root=str(toy["root"] / "task"),
                cache_dir=str(toy["root"] / "cache"), output_dir=str(toy["root"] / output))


@pytest.fixture(scope="module")
def cold_start(toy):
    from r1omni_edge.synthetic.task import TOY_SFT
    from r1omni_edge.train.sft import SFTConfig, train_sft

    return train_sft(SFTConfig(model=str(toy["models"].checkpoint), **TOY_SFT, **common(toy, "sft")))


def grpo(toy, cold_start, output: str, **overrides):
    from r1omni_edge.synthetic.task import TOY_GRPO
    from r1omni_edge.train.grpo import GRPOConfig, train_grpo

    settings = dict(TOY_GRPO, model=cold_start["checkpoint"], **common(toy, output))
    settings.update(overrides)
    return train_grpo(GRPOConfig(**settings))


@pytest.mark.slow
def test_sft_on_labels_independent_of_the_clip_teaches_the_format_only(cold_start):
    assert cold_start["eval"]["format"] >= 0.9
    # The accuracy the policy expects under its own sampling (8 answers per held-out clip). Its greedy answer names
    # one label per class by whim, so greedy WAR landed on 0, 25 or 50 % by seed and even by run (measured).
    assert abs(cold_start["eval"]["sampled_war"] - CHANCE) <= 0.1


@pytest.mark.slow
def test_grpo_lifts_held_out_accuracy_and_keeps_the_format(toy, cold_start):
    result = grpo(toy, cold_start, "grpo")
    assert result["eval"]["war"] >= CHANCE + 0.3, result["confusion"]
    assert result["eval"]["format"] >= 0.9


@pytest.mark.slow
def test_control_rewards_against_random_labels_do_not_improve(toy, cold_start):
    result = grpo(toy, cold_start, "grpo-random", reward_labels="random")
    assert result["eval"]["war"] <= CHANCE + 0.15, result["confusion"]
    assert result["eval"]["format"] >= 0.9


@pytest.mark.slow
def test_control_blanked_inputs_do_not_improve(toy, cold_start):
    result = grpo(toy, cold_start, "grpo-blank", blank_inputs=True)
    assert result["eval"]["war"] <= CHANCE + 0.15, result["confusion"]
    assert result["eval"]["format"] >= 0.9  # it still answers: chance is not a broken model
