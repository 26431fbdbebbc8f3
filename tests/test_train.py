"""Training on the tiny model: the fast paths equal the naive one, runs repeat exactly, resume is exact, checkpoints
load and export. The learning tests (SFT on labels independent of the clip, then GRPO, with controls) are in
test_learning.py."""

import json

import pytest
import torch
from safetensors.torch import load_file


@pytest.fixture(scope="session")
def task(tmp_path_factory):
    from r1omni_edge.synthetic.checkpoint import TRAINABLE_STD, write_tiny_checkpoint
    from r1omni_edge.synthetic.task import write_task

    root = tmp_path_factory.mktemp("train")
    models = write_tiny_checkpoint(root / "models", decoder_std=TRAINABLE_STD)
    files = write_task(root / "task", train=8, held_out=4, permute_train_labels=False)
    return {"root": root, "models": models, "files": files}


def config(task, cls, **overrides):
    base = dict(model=str(task["models"].checkpoint), models_dir=str(task["models"].root),
                train_data=str(task["files"]["train"]), eval_data=str(task["files"]["eval"]),
                data_root=str(task["root"] / "task"), labels="dfew", cache_dir=str(task["root"] / "cache"),
                output_dir=str(task["root"] / "run"), tensorboard=False)
    base.update(overrides)
    return cls(**base)


def test_encode_once_and_shared_prefix_match_the_naive_path(task):
    """Log-probs and gradients of G completions: cached tower features + one prefill shared by the group, against
    towers re-run for each completion and each completion's full sequence (what R1-Omni's trainer does)."""
    from r1omni_edge.train.run import build_policy
    from r1omni_edge.datasets import load_dataset
    from r1omni_edge.train.features import FeatureCache
    from r1omni_edge.train.sft import SFTConfig

    policy, _ = build_policy(config(task, SFTConfig))
    cache = FeatureCache(task["root"] / "cache-parity", policy.model, "pad")
    sample = load_dataset(task["files"]["train"], task["root"] / "task")[0]
    prompt = policy.prompt(sample, cache.get(sample.video))
    completions = policy.rollout(prompt, 4, 12, temperature=1.0, generator=torch.Generator().manual_seed(0))
    weights = torch.randn(completions.shape)
    trainable = [p for p in policy.parameters() if p.requires_grad]

    fast = policy.completion_logprobs(prompt, completions, temperature=0.7, shared_prefix=True)
    fast_grads = torch.autograd.grad((fast * weights).sum(), trainable)
    naive_rows = []
    for row in range(completions.shape[0]):
        fresh = policy.prompt(sample, cache.encode(sample.video))  # the towers run again, per completion
        naive_rows.append(policy.completion_logprobs(fresh, completions[row:row + 1], temperature=0.7,
                                                     shared_prefix=False))
    naive = torch.cat(naive_rows)
    naive_grads = torch.autograd.grad((naive * weights).sum(), trainable)
    torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
    for a, b in zip(fast_grads, naive_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert cache.hits >= 0 and cache.misses == 1  # the clip was encoded once for the fast path


def test_gradient_checkpointing_gives_the_same_logprobs_and_gradients(task):
    """transformers drops the KV cache under gradient checkpointing; the shared-prefix path must notice, not return
    log-probs of completions that never saw their prompt."""
    from r1omni_edge.train.run import build_policy
    from r1omni_edge.datasets import load_dataset
    from r1omni_edge.train.features import FeatureCache
    from r1omni_edge.train.sft import SFTConfig

    results = []
    for checkpointing in (False, True):
        policy, _ = build_policy(config(task, SFTConfig, gradient_checkpointing=checkpointing))
        cache = FeatureCache(task["root"] / "cache-parity", policy.model, "pad")
        sample = load_dataset(task["files"]["train"], task["root"] / "task")[0]
        prompt = policy.prompt(sample, cache.get(sample.video))
        completions = policy.rollout(prompt, 3, 10, generator=torch.Generator().manual_seed(1))
        policy.train()
        logp = policy.completion_logprobs(prompt, completions, shared_prefix=True)
        grads = torch.autograd.grad(logp.sum(), [p for p in policy.parameters() if p.requires_grad])
        results.append((completions, logp.detach(), grads))
    (c0, l0, g0), (c1, l1, g1) = results
    assert torch.equal(c0, c1)
    torch.testing.assert_close(l1, l0, atol=1e-5, rtol=0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_feature_cache_is_keyed_by_content_and_towers(task):
    from r1omni_edge.train.run import build_policy
    from r1omni_edge.train.features import FeatureCache
    from r1omni_edge.train.sft import SFTConfig

    policy, _ = build_policy(config(task, SFTConfig))
    directory = task["root"] / "cache-keys"
    first = FeatureCache(directory, policy.model, "pad")
    clip = task["root"] / "task" / "clips" / "train_0000.mp4"
    a = first.get(clip)
    again = FeatureCache(directory, policy.model, "pad")
    b = again.get(clip)
    assert again.hits == 1 and again.misses == 0 and torch.equal(a.vision, b.vision)
    with torch.no_grad():
        policy.model.vision_tower.embeddings.patch_embedding.weight.mul_(1.5)
    changed = FeatureCache(directory, policy.model, "pad")
    assert changed.towers != first.towers
    changed.get(clip)
    assert changed.misses == 1  # other tower weights: encoded again, never a stale hit


@pytest.fixture(scope="session")
def formatted(task):
    """A short SFT, so that sampled completions are often well formed: GRPO then has rewards that vary."""
    from r1omni_edge.train.sft import SFTConfig, train_sft

    result = train_sft(config(task, SFTConfig, output_dir=str(task["root"] / "warm"), max_steps=60, batch_size=8,
                              micro_batch=8, learning_rate=1e-2, warmup_ratio=0.1, eval_data=None))
    return result["checkpoint"]


def test_same_seed_same_curve_and_resume_equals_uninterrupted(task, formatted):
    from r1omni_edge.train.grpo import GRPOConfig, train_grpo

    common = dict(model=formatted, group_size=4, prompts_per_step=2, max_completion=40, learning_rate=1e-3,
                  beta=0.04, schedule="linear", eval_data=None)
    first = train_grpo(config(task, GRPOConfig, output_dir=str(task["root"] / "a"), max_steps=4, save_every=2,
                              **common))
    second = train_grpo(config(task, GRPOConfig, output_dir=str(task["root"] / "b"), max_steps=4, **common))
    strip = lambda curve: [{k: v for k, v in m.items() if not k.startswith("seconds")} for m in curve]  # noqa: E731
    assert strip(first["curve"]) == strip(second["curve"])
    assert any(m["reward_std"] > 0 for m in first["curve"])  # a curve with signal, so equality means something
    resumed = train_grpo(config(task, GRPOConfig, output_dir=str(task["root"] / "a"), max_steps=4,
                                resume_from=str(task["root"] / "a" / "checkpoint-2"), **common))
    assert strip(resumed["curve"]) == strip(first["curve"])[2:]
    full = torch.load(task["root"] / "a" / "checkpoint-4" / "trainer_state.pt", weights_only=False)["trainable"]
    uninterrupted = torch.load(task["root"] / "b" / "checkpoint-4" / "trainer_state.pt", weights_only=False)
    for name, value in uninterrupted["trainable"].items():
        assert torch.equal(full[name], value), name


def test_checkpoints_are_the_published_layout_and_export(task, tmp_path):
    from r1omni_edge.export.exporter import ExportOptions, export_bundle
    from r1omni_edge.model import TorchRecognizer
    from r1omni_edge.engines import BundleRecognizer
    from r1omni_edge.train.sft import SFTConfig, train_sft

    result = train_sft(config(task, SFTConfig, output_dir=str(tmp_path / "sft"), max_steps=2, batch_size=4,
                              micro_batch=2, learning_rate=1e-3))
    checkpoint = result["checkpoint"]
    names = load_file(f"{checkpoint}/model.safetensors").keys()
    assert "model.mm_projector.s1_video.b1.conv1.conv.weight" in names and "lm_head.weight" not in names
    assert json.loads(open(f"{checkpoint}/config.json").read())["model_type"] == "HumanOmni_qwen2"
    reference = TorchRecognizer.from_checkpoint(checkpoint, models_dir=task["models"].root)
    export_bundle(reference, tmp_path / "bundle", ExportOptions(labels="dfew"))
    runtime = BundleRecognizer.from_bundle(tmp_path / "bundle", backend="cpu")
    clip = task["root"] / "task" / "clips" / "eval_0000.mp4"
    assert runtime.recognize_file(clip, max_new_tokens=8, constrain=False).token_ids == \
        reference.recognize_file(clip, max_new_tokens=8).token_ids
    assert result["eval"]["war"] >= 0.0 and "confusion" in result


def test_sft_masks_everything_but_the_assistant_tokens(task):
    from r1omni_edge.train.run import build_policy
    from r1omni_edge.datasets import load_dataset
    from r1omni_edge.train.features import FeatureCache
    from r1omni_edge.train.sft import SFTConfig

    policy, _ = build_policy(config(task, SFTConfig))
    cache = FeatureCache(task["root"] / "cache", policy.model, "pad")
    sample = load_dataset(task["files"]["train"], task["root"] / "task")[0]
    prompt = policy.prompt(sample, cache.get(sample.video))
    target = policy.target_ids(sample)
    loss = policy.sft_loss([prompt], [target])
    with torch.no_grad():
        embeds = torch.cat([policy.prompt_embeds(prompt)[0], policy.token_embeds(torch.tensor(target))])
        logits = policy.model.llm(inputs_embeds=embeds[None]).logits[0].float()
        start = embeds.shape[0] - len(target)
        manual = torch.nn.functional.cross_entropy(logits[start - 1:-1], torch.tensor(target))
    torch.testing.assert_close(loss.detach(), manual, atol=1e-5, rtol=1e-5)
    assert target[-1] == policy.tokenizer.eos_id


def launch_two_processes(cfg: dict, tmp_path, name: str, port: int, stage: str = "grpo"):
    """torchrun with 2 CPU processes (gloo) on a config file; returns the completed process."""
    import os
    import subprocess
    import sys

    config_file = tmp_path / f"{name}.json"
    config_file.write_text(json.dumps(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(port), "-m", "r1omni_edge.cli", "train", stage, "--config",
                           str(config_file)], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_two_process_runs_ddp_and_fsdp_train_alike_save_loadable_checkpoints_and_resume(task, formatted, tmp_path):
    """2 CPU processes (gloo): each rank takes whole groups. DDP averages the gradients; FSDP2 shards weights,
    gradients and optimizer state (and the KL reference), gathers for evaluation and saving, and must train the same
    weights; an FSDP resume equals the uninterrupted FSDP run."""
    from r1omni_edge.model import load_model

    cfg = {"model": formatted, "models_dir": str(task["models"].root), "train_data": str(task["files"]["train"]),
           "eval_data": str(task["files"]["eval"]), "data_root": str(task["root"] / "task"), "labels": "dfew",
           "cache_dir": str(task["root"] / "cache"), "max_steps": 2, "group_size": 4, "prompts_per_step": 4,
           "max_completion": 24, "learning_rate": 1e-3, "beta": 0.04, "eval_max_tokens": 24, "tensorboard": False}
    ddp = launch_two_processes({**cfg, "output_dir": str(tmp_path / "ddp")}, tmp_path, "ddp", 29571)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    fsdp = launch_two_processes({**cfg, "output_dir": str(tmp_path / "fsdp"), "fsdp": True, "save_every": 1},
                                tmp_path, "fsdp", 29572)
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    states = {}
    for name in ("ddp", "fsdp"):
        checkpoint = tmp_path / name / "checkpoint-2"
        assert f"checkpoint: {checkpoint}" in (ddp if name == "ddp" else fsdp).stdout
        model, _ = load_model(checkpoint, models_dir=task["models"].root)
        states[name] = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
        assert states[name]["step"] == 2 and model.config.hidden_size == 64
    start = torch.load(f"{formatted}/trainer_state.pt", weights_only=False)["trainable"]  # the SFT's weights
    assert states["ddp"]["trainable"].keys() == states["fsdp"]["trainable"].keys() == start.keys()
    moved = 0
    for key, value in states["ddp"]["trainable"].items():
        torch.testing.assert_close(states["fsdp"]["trainable"][key], value, atol=2e-5, rtol=1e-4)
        moved += int(not torch.allclose(value, start[key], atol=1e-6))
    assert moved > 10  # the runs trained, so their agreement means something
    resumed = launch_two_processes({**cfg, "output_dir": str(tmp_path / "resumed"), "fsdp": True,
                                    "resume_from": str(tmp_path / "fsdp" / "checkpoint-1")}, tmp_path, "resumed",
                                   29573)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = torch.load(tmp_path / "resumed" / "checkpoint-2" / "trainer_state.pt", weights_only=False)
    for key, value in states["fsdp"]["trainable"].items():
        assert torch.equal(again["trainable"][key], value), key


@pytest.mark.slow
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_ranks_train_the_weights_one_process_trains_on_the_same_global_batch(task, formatted, tmp_path, fsdp):
    """dapo (normalised by the global batch's active tokens) and batch-scaled advantages (the std of every rank's
    rewards): two gloo ranks taking two prompts each must end the step with the weights that one process gets from
    all four. Rollouts derive from (seed, step, prompt), so both see the same completions."""
    import os
    import subprocess
    import sys

    cfg = {"model": formatted, "models_dir": str(task["models"].root), "train_data": str(task["files"]["train"]),
           "data_root": str(task["root"] / "task"), "labels": "dfew", "cache_dir": str(task["root"] / "cache"),
           "max_steps": 1, "group_size": 8, "prompts_per_step": 8, "max_completion": 32, "learning_rate": 1e-3,
           "temperature": 1.3, "schedule": "constant", "beta": 0.0, "tensorboard": False, "aggregation": "dapo",
           "advantage_scale": "batch", "updates_per_batch": 3}  # AdamW's first update is the gradient's sign: the
    # later updates on the same rollouts are where the gradient's size (and so the normalisers) show
    two = launch_two_processes({**cfg, "output_dir": str(tmp_path / "two"), "fsdp": fsdp}, tmp_path, "two",
                               29575 if fsdp else 29574)
    assert two.returncode == 0, two.stderr[-3000:]
    one_file = tmp_path / "one.json"
    one_file.write_text(json.dumps({**cfg, "output_dir": str(tmp_path / "one")}))
    one = subprocess.run([sys.executable, "-m", "r1omni_edge.cli", "train", "grpo", "--config", str(one_file)],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert one.returncode == 0, one.stderr[-3000:]
    # both ranks hold groups whose rewards vary (rank 0 logs its own 4 groups), or the test could not fail
    signal = {name: (1 - json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0])
                     ["train/zero_std_groups"]) * groups for name, groups in (("one", 8), ("two", 4))}
    assert signal["two"] >= 1 and signal["one"] - signal["two"] >= 1, signal
    weights = {name: torch.load(tmp_path / name / "checkpoint-1" / "trainer_state.pt", weights_only=False)["trainable"]
               for name in ("one", "two")}
    start = torch.load(f"{formatted}/trainer_state.pt", weights_only=False)["trainable"]
    moved = 0
    for key, value in weights["one"].items():
        # the DDP / FSDP test's tolerance: AdamW turns near-zero gradients' float noise into updates of ~1e-6
        torch.testing.assert_close(weights["two"][key], value, atol=2e-5, rtol=1e-4, msg=lambda m, k=key: f"{k}: {m}")
        moved += int(not torch.allclose(value, start[key], atol=1e-7))
    assert moved > 10  # the step changed the weights, so their agreement means something


def test_truncation_masking_still_logs_what_was_generated(task, formatted):
    """Completions cut at max_completion carry no loss with mask_truncated, but their length is still logged."""
    from r1omni_edge.train.grpo import GRPOConfig, train_grpo

    result = train_grpo(config(task, GRPOConfig, output_dir=str(task["root"] / "cut"), model=formatted, group_size=2,
                               prompts_per_step=1, max_completion=3, max_steps=1, mask_truncated=True, beta=0.0,
                               eval_data=None))
    assert result["curve"][0]["completion_length"] == 3.0  # every completion was cut at 3 tokens


@pytest.mark.parametrize("options", [
    {"preset": "gspo", "entropy_coef": 0.01},
    {"preset": "cispo", "beta": 0.04, "kl_importance_correction": True},
    {"delta": 4.0, "updates_per_batch": 2},
], ids=["gspo+entropy", "cispo+corrected-kl", "delta"])
def test_each_objective_trains_a_step(task, formatted, options, tmp_path):
    from r1omni_edge.train.grpo import GRPOConfig

    config = GRPOConfig.from_dict({"model": formatted, "models_dir": str(task["models"].root),
                                   "train_data": str(task["files"]["train"]), "data_root": str(task["root"] / "task"),
                                   "labels": "dfew", "cache_dir": str(task["root"] / "cache"),
                                   "output_dir": str(tmp_path / "run"), "max_steps": 1, "group_size": 4,
                                   "prompts_per_step": 2, "max_completion": 24, "tensorboard": False, **options})
    from r1omni_edge.train.grpo import train_grpo

    metrics = train_grpo(config)["curve"][0]
    assert metrics["loss"] == metrics["loss"] and metrics["groups_trained"] == 2  # a finite loss over both groups
    if config.entropy_coef:
        assert metrics["entropy"] > 0


def test_a_user_reward_by_import_path_sees_each_completion_s_clip(task, formatted, tmp_path, monkeypatch):
    from r1omni_edge.train.grpo import GRPOConfig, train_grpo

    (tmp_path / "clip_rewards.py").write_text(
        "calls = []\n"
        "def by_clip(completions, labels, metadata):\n"
        "    calls.append(metadata)\n"
        "    return [1.0 if m['label'] == label else 0.0 for m, label in zip(metadata, labels)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = GRPOConfig.from_dict({"model": formatted, "models_dir": str(task["models"].root),
                                   "train_data": str(task["files"]["train"]), "data_root": str(task["root"] / "task"),
                                   "labels": "dfew", "cache_dir": str(task["root"] / "cache"),
                                   "output_dir": str(tmp_path / "run"), "max_steps": 1, "group_size": 3,
                                   "prompts_per_step": 2, "max_completion": 16, "tensorboard": False, "beta": 0.0,
                                   "rewards": {"format": 1.0, "clip_rewards:by_clip": 0.5}})
    metrics = train_grpo(config)["curve"][0]
    import clip_rewards

    (metadata,) = clip_rewards.calls
    assert len(metadata) == 6 and [m["sample"] for m in metadata] == [0, 1, 2, 0, 1, 2]
    assert all(m["video"].endswith(".mp4") and m["label"] for m in metadata)
    assert metrics["reward_clip_rewards:by_clip"] == 1.0  # the truth labels are the clips' own


@pytest.mark.parametrize("aggregation, micros", [("grpo", (4, 2, None)), ("dapo", (4, 2))])
def test_micro_batches_give_the_gradients_of_the_whole_batch(task, formatted, tmp_path, monkeypatch, aggregation,
                                                             micros):
    """The first update's gradients (captured where they are clipped): micro-batches of the whole group (G = 4), of
    2 completions, and every group in one forward (the default) agree within 1e-5."""
    from r1omni_edge.train import grpo
    from r1omni_edge.train.grpo import GRPOConfig, train_grpo

    captured = []
    real_clip = grpo.clip_gradients

    def capture(policy, max_norm):
        captured.append({n: p.grad.detach().clone() for n, p in policy.named_parameters() if p.grad is not None})
        return real_clip(policy, max_norm)

    monkeypatch.setattr(grpo, "clip_gradients", capture)
    (tmp_path / "varied_rewards.py").write_text(  # rewards that vary within every group, so there is a gradient
        "def by_text(completions, labels):\n    return [float(sum(map(ord, c)) % 7) for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    grads = {}
    for micro in micros:
        config = GRPOConfig.from_dict({"model": formatted, "models_dir": str(task["models"].root),
                                       "train_data": str(task["files"]["train"]),
                                       "data_root": str(task["root"] / "task"), "labels": "dfew",
                                       "cache_dir": str(task["root"] / "cache"), "output_dir": str(tmp_path / f"m{micro}"),
                                       "max_steps": 1, "group_size": 4, "prompts_per_step": 2, "max_completion": 24,
                                       "beta": 0.04, "aggregation": aggregation, "micro_batch": micro,
                                       "tensorboard": False, "rewards": {"varied_rewards:by_text": 1.0}})
        captured.clear()
        train_grpo(config)
        grads[micro] = captured[0]
    whole = grads[micros[0]]
    assert sum(float(g.abs().sum()) for g in whole.values()) > 0  # there was a gradient to compare
    for micro in micros[1:]:
        assert grads[micro].keys() == whole.keys()
        for name, value in whole.items():
            torch.testing.assert_close(grads[micro][name], value, atol=1e-5, rtol=1e-4,
                                       msg=lambda m, n=name, k=micro: f"micro_batch {k}, {n}: {m}")
