"""Training's pure parts: GRPO maths, rewards, dataset validation and configs, without a model."""

import json

import pytest
import torch

from r1omni_edge.errors import InputError
from r1omni_edge.datasets import DatasetError, load_dataset
from r1omni_edge.train.grpo_math import advantages, aggregate, completion_mask, k3_kl, token_loss, truncated
from r1omni_edge.train.rewards import accuracy_exact, accuracy_synonyms, compute_rewards, format_reward


def test_advantages_by_group_batch_and_none():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    scaled, zero = advantages(rewards, 4, "group")
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()  # unbiased, as specified
    assert torch.allclose(scaled[:4], (torch.tensor([1.0, 0, 0, 1]) - 0.5) / (std + 1e-4))
    assert torch.all(scaled[4:] == 0) and zero == 0.5  # the second group carries no signal
    plain, _ = advantages(rewards, 4, "none")
    assert plain[:4].tolist() == [0.5, -0.5, -0.5, 0.5]
    batch, _ = advantages(rewards, 4, "batch")
    assert torch.allclose(batch[:4], plain[:4] / (rewards.std() + 1e-4))
    with pytest.raises(ValueError):
        advantages(rewards, 4, "other")


def test_k3_is_non_negative_and_zero_at_equality():
    logp = torch.randn(50)
    assert torch.all(k3_kl(logp, logp + torch.randn(50)) >= 0)
    assert torch.allclose(k3_kl(logp, logp), torch.zeros(50))


def test_token_loss_sign_and_clipping():
    logp = torch.log(torch.tensor([[0.5, 0.5]]))
    old = logp.clone()
    loss, clipped = token_loss(logp, old, torch.tensor([2.0]))
    assert torch.allclose(loss, torch.tensor([[-2.0, -2.0]]))  # ratio 1: loss = -A, rising A lowers the loss
    assert clipped.sum() == 0
    far = logp + 1.0  # ratio e > 1 + eps: the positive advantage is clipped at 1.2
    loss, clipped = token_loss(far, old, torch.tensor([1.0]), eps_low=0.2, eps_high=0.28)
    assert torch.allclose(loss, torch.full((1, 2), -1.28)) and clipped.sum() == 2
    with pytest.raises(ValueError, match="beta"):
        token_loss(logp, old, torch.tensor([1.0]), beta=0.1)
    # gradient direction: a positive advantage raises the token's log-probability
    param = torch.zeros(1, 2, requires_grad=True)
    value, _ = token_loss(param, param.detach(), torch.tensor([1.0]))
    value.sum().backward()
    assert torch.all(param.grad < 0)


def test_aggregations_by_hand():
    loss = torch.tensor([[1.0, 1.0, 0.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert aggregate(loss, mask, "grpo") == pytest.approx((1.0 + 4.0) / 2)
    assert aggregate(loss, mask, "bnpo") == pytest.approx(6.0 / 3)
    assert aggregate(loss, mask, "dapo", global_tokens=12.0) == pytest.approx(6.0 / 12)
    assert aggregate(loss, mask, "dr_grpo", max_length=5) == pytest.approx(6.0 / (2 * 5))
    with pytest.raises(ValueError):
        aggregate(loss, mask, "mean")


def test_completion_mask_includes_the_first_end_and_nothing_after():
    ids = torch.tensor([[5, 6, 9, 7, 9], [5, 5, 5, 5, 5]])
    assert completion_mask(ids, {9}).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert truncated(ids, {9}).tolist() == [False, True]


def test_rewards_and_registry():
    texts = ["<think>a</think>\n<answer>happy</answer>", "<answer>Happiness</answer>", "<think>x</think>"]
    labels = ["happy", "happy", "sad"]
    assert accuracy_exact(texts, labels) == [1.0, 0.0, 0.0]
    assert accuracy_synonyms(texts, labels) == [1.0, 1.0, 0.0]
    assert format_reward(texts, labels) == [1.0, 0.0, 0.0]
    total, parts = compute_rewards({"accuracy": 1.0, "format": 0.5}, texts, labels)
    assert total == [1.5, 0.0, 0.0] and set(parts) == {"accuracy", "format"}
    with pytest.raises(ValueError, match="unknown reward"):
        compute_rewards({"vibes": 1.0}, texts, labels)
    with pytest.raises(ValueError, match="3 completions but 2 labels"):
        compute_rewards({"format": 1.0}, texts, labels[:2])


def test_wrong_length_reward_is_an_error(monkeypatch):
    from r1omni_edge.train import rewards

    monkeypatch.setitem(rewards.REWARDS, "short", lambda completions, labels: [1.0])
    with pytest.raises(ValueError, match="returned 1 values for 2 completions"):
        compute_rewards({"short": 1.0}, ["a", "b"], ["x", "y"])


def test_dataset_validation_reports_every_bad_row(tmp_path):
    (tmp_path / "ok.mp4").write_bytes(b"x")
    rows = [
        {"video": "ok.mp4", "conversations": [{"from": "human", "value": "<video>\n<audio>\nWhich?"},
                                              {"from": "gpt", "value": "<think>.</think><answer>happy</answer>"}]},
        {"video": "missing.mp4", "conversations": [{"from": "human", "value": "<video>\nWhich?"},
                                                   {"from": "gpt", "value": "<think>.</think>"}]},
        {"conversations": [{"from": "human", "value": "<video><depth>\nWhich?"}], "label": "joyous"},
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DatasetError) as info:
        load_dataset(path, labels=("happy", "sad"))
    message = str(info.value)
    assert "5 problem(s) in 3 rows" in message and "label 'joyous' is not in the label set" in message
    assert "row 1: video file" in message and "row 1: no answer" in message
    assert "row 2: no 'video' path" in message and "row 2: unknown placeholder <depth>" in message
    rows = rows[:1]
    path.write_text(json.dumps(rows))
    (sample,) = load_dataset(path, labels=("happy", "sad"))
    assert sample.label == "happy" and sample.uses_audio and sample.video == tmp_path / "ok.mp4"


def test_configs_map_files_and_presets(tmp_path):
    from r1omni_edge.train.grpo import GRPOConfig
    from r1omni_edge.train.sft import SFTConfig

    path = tmp_path / "grpo.yaml"
    path.write_text("preset: r1omni\nmodel: m\ntrain_data: d.json\nmax_completion: 64\n")
    config = GRPOConfig.from_file(path)
    assert config.beta == 0.04 and config.group_size == 8 and config.max_completion == 64
    assert config.learning_rate == 1e-6 and config.schedule == "linear"
    modern = GRPOConfig.from_dict({"preset": "modern", "model": "m", "train_data": "d"})
    assert modern.beta == 0.0 and modern.eps_high == 0.28 and modern.dynamic_sampling
    path.write_text(json.dumps({"model": "m", "train_data": "d", "learning_rat": 1}))
    with pytest.raises(InputError, match="unknown field\\(s\\) learning_rat"):
        SFTConfig.from_file(path.with_suffix(".json") if path.rename(path.with_suffix(".json")) else path)
    with pytest.raises(InputError, match="unknown preset"):
        SFTConfig.from_dict({"preset": "nope", "model": "m", "train_data": "d"})
    emer = SFTConfig.from_dict({"preset": "emer-sft", "model": "m", "train_data": "d"})
    assert emer.epochs == 5 and emer.warmup_ratio == 0.03 and emer.batch_size == 16


def test_a_reward_that_does_not_apply_leaves_the_completion_out_of_its_group(monkeypatch):
    """None from every reward function: the completion is out of its group's mean and std, its advantage 0; None
    from some functions: the sum of those that apply."""
    from r1omni_edge.train import rewards

    monkeypatch.setitem(rewards.REWARDS, "picky", lambda completions, labels: [None, 1.0, None, 0.0])
    total, _ = compute_rewards({"picky": 1.0}, ["a", "b", "c", "d"], ["x"] * 4)
    assert total[1] == 1.0 and total[3] == 0.0 and all(t != t for t in (total[0], total[2]))  # NaN
    scaled, zero = advantages(torch.tensor(total + [0.0, 1.0, 2.0, float("nan")]), 4, "group")
    applied = torch.tensor([1.0, 0.0])
    assert scaled[0] == 0 and scaled[2] == 0 and scaled[7] == 0
    assert torch.allclose(scaled[[1, 3]], (applied - 0.5) / (applied.std() + 1e-4))
    second = torch.tensor([0.0, 1.0, 2.0])
    assert torch.allclose(scaled[4:7], (second - 1.0) / (second.std() + 1e-4)) and zero == 0.0
    total, _ = compute_rewards({"picky": 1.0, "format": 0.5}, ["a", "b", "c", "d"], ["x"] * 4)
    assert total == [0.0, 1.0, 0.0, 0.0]  # format applies to every completion (and is 0 here)


def test_batch_scale_takes_the_std_of_every_rank_s_rewards():
    from r1omni_edge.train.grpo_math import batch_reward_std, reward_moments

    first, second = torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([2.0, 0.0, 5.0, 1.0])
    summed = [a + b for a, b in zip(reward_moments(first), reward_moments(second))]  # what all_reduce gives
    assert batch_reward_std(*summed) == pytest.approx(float(torch.cat([first, second]).std()))
    scaled, _ = advantages(first, 4, "batch", batch_std=batch_reward_std(*summed))
    whole, _ = advantages(torch.cat([first, second]), 4, "batch")
    assert torch.allclose(scaled, whole[:4])  # rank 0's advantages as if it held the whole batch


def test_grad_accum_is_refused_in_grpo_not_ignored():
    from r1omni_edge.train.config import GRPOConfig

    with pytest.raises(InputError, match="grad_accum applies to SFT"):
        GRPOConfig.from_dict({"model": "m", "train_data": "d", "grad_accum": 4})


def test_gspo_takes_the_sequence_ratio_and_reduces_to_grpo_on_one_token_completions():
    from r1omni_edge.train.grpo_math import importance_log_ratio

    old = torch.zeros(2, 3)
    logp = torch.tensor([[0.1, 0.3, 9.0], [0.5, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # the 9.0 is padding: it must not count
    sequence = importance_log_ratio(logp, old, mask, "sequence")
    assert torch.allclose(sequence, torch.tensor([[0.2] * 3, [0.5] * 3]))
    loss, clipped = token_loss(logp, old, torch.tensor([1.0, -1.0]), 0.2, 0.28, mask=mask, level="sequence")
    ratio = torch.exp(torch.tensor(0.2))
    assert torch.allclose(loss[0, :2], -ratio.expand(2)) and clipped[0].sum() == 0  # e^0.2 = 1.22, inside 1.28
    assert loss[1, 0] == pytest.approx(float(torch.exp(torch.tensor(0.5))))  # A < 0: the larger ratio counts
    one_token = torch.tensor([[0.3], [-0.4]]), torch.zeros(2, 1)
    for advantage in (torch.tensor([1.0, -2.0]), torch.tensor([-0.5, 0.7])):
        token_level, _ = token_loss(*one_token, advantage, 0.2, 0.28)
        sequence_level, _ = token_loss(*one_token, advantage, 0.2, 0.28, mask=torch.ones(2, 1), level="sequence")
        assert torch.allclose(token_level, sequence_level)


def test_cispo_clips_a_detached_weight_and_keeps_every_gradient():
    logp = torch.tensor([[1.0, -1.0]], requires_grad=True)  # ratios e and 1/e against old log-probs of 0
    loss, clipped = token_loss(logp, torch.zeros(1, 2), torch.tensor([2.0]), eps_high=0.28, objective="cispo")
    weights = torch.tensor([1.28, float(torch.exp(torch.tensor(-1.0)))])  # e clipped to 1.28; 1/e kept (no floor)
    assert torch.allclose(loss, -weights * 2.0 * torch.tensor([1.0, -1.0]))
    assert clipped.tolist() == [[1.0, 0.0]]
    loss.sum().backward()
    assert torch.allclose(logp.grad, -weights * 2.0)  # the weight is a constant: d/dlogp = -w A, clipped or not
    plain = torch.tensor([[1.0, -1.0]], requires_grad=True)
    value, _ = token_loss(plain, torch.zeros(1, 2), torch.tensor([2.0]), eps_high=0.28)
    value.sum().backward()
    assert plain.grad[0, 0] == 0  # PPO's clip leaves the first token without gradient; CISPO does not


def test_delta_caps_the_unclipped_ratio_of_a_negative_advantage():
    logp, old = torch.log(torch.tensor([[3.0]])), torch.zeros(1, 1)  # ratio 3
    plain, _ = token_loss(logp, old, torch.tensor([-1.0]), 0.2, 0.2)
    capped, _ = token_loss(logp, old, torch.tensor([-1.0]), 0.2, 0.2, delta=2.0)
    assert plain.item() == pytest.approx(3.0) and capped.item() == pytest.approx(2.0)
    positive, _ = token_loss(logp, old, torch.tensor([1.0]), 0.2, 0.2, delta=2.0)
    assert positive.item() == pytest.approx(-1.2)  # a positive advantage is clipped at 1 + eps as before


def test_the_kl_correction_and_the_entropy_bonus_by_hand():
    logp, old, ref = torch.tensor([[-1.0]]), torch.tensor([[-1.5]]), torch.tensor([[-2.0]])
    kl = float(k3_kl(logp, ref))
    ratio = float(torch.exp(torch.tensor(0.5)))
    base, _ = token_loss(logp, old, torch.tensor([0.0]), beta=0.1, ref_logp=ref)
    corrected, _ = token_loss(logp, old, torch.tensor([0.0]), beta=0.1, ref_logp=ref, kl_correction=True)
    assert base.item() == pytest.approx(0.1 * kl) and corrected.item() == pytest.approx(0.1 * kl * ratio)
    bonus, _ = token_loss(logp, old, torch.tensor([0.0]), entropy=torch.tensor([[2.5]]), entropy_coef=0.01)
    assert bonus.item() == pytest.approx(-0.025)
    with pytest.raises(ValueError, match="entropies"):
        token_loss(logp, old, torch.tensor([0.0]), entropy_coef=0.01)


def test_objective_presets_and_their_checks():
    from r1omni_edge.train.config import GRPOConfig

    gspo = GRPOConfig.from_dict({"model": "m", "train_data": "d", "preset": "gspo"})
    assert (gspo.importance_sampling_level, gspo.eps_low, gspo.eps_high, gspo.beta) == ("sequence", 3e-4, 4e-4, 0.0)
    cispo = GRPOConfig.from_dict({"model": "m", "train_data": "d", "preset": "cispo"})
    assert (cispo.objective, cispo.aggregation) == ("cispo", "dapo")
    with pytest.raises(InputError, match="delta 1.1 must exceed 1 \\+ eps_high"):
        GRPOConfig.from_dict({"model": "m", "train_data": "d", "delta": 1.1})
    with pytest.raises(InputError, match="objective"):
        GRPOConfig.from_dict({"model": "m", "train_data": "d", "objective": "ppo2"})


USER_REWARDS = '''
seen = []

def with_metadata(completions, labels, metadata):
    seen.append(metadata)
    return [1.0 if m.get("video", "").endswith(".mp4") else None for m in metadata]

def plain(completions, labels):
    return [0.5 for _ in completions]

def one_argument(completions):
    return [0.0 for _ in completions]

not_a_function = 3
'''


def test_user_rewards_by_import_path_are_checked_when_the_config_is(tmp_path, monkeypatch):
    from r1omni_edge.train.config import GRPOConfig
    from r1omni_edge.train.rewards import resolve_reward

    (tmp_path / "my_rewards.py").write_text(USER_REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = GRPOConfig.from_dict({"model": "m", "train_data": "d",
                                   "rewards": {"format": 1.0, "my_rewards:with_metadata": 0.5, "my_rewards:plain": 1}})
    assert set(config.rewards) == {"format", "my_rewards:with_metadata", "my_rewards:plain"}
    assert resolve_reward("my_rewards:with_metadata")[1] and not resolve_reward("my_rewards:plain")[1]
    for name, message in (("nowhere_module:f", "cannot import nowhere_module"),
                          ("my_rewards:missing", "has no function 'missing'"),
                          ("my_rewards:not_a_function", "has no function 'not_a_function'"),
                          ("my_rewards:one_argument", "must take \\(completions, labels\\)"),
                          ("vibes", "unknown reward")):
        with pytest.raises(InputError, match=message):
            GRPOConfig.from_dict({"model": "m", "train_data": "d", "rewards": {name: 1.0}})
    metadata = [{"video": "a.mp4"}, {"video": "b.txt"}]
    total, parts = compute_rewards({"my_rewards:with_metadata": 2.0, "my_rewards:plain": 1.0}, ["x", "y"],
                                   ["happy", "sad"], metadata)
    assert total == [2.5, 0.5] and parts["my_rewards:with_metadata"] == [1.0, None]
    import my_rewards

    assert my_rewards.seen[-1] == metadata  # the function got each completion's clip metadata
