"""Evaluation during training: greedy answers of the policy on held-out clips' cached features, scored by
``evaluation.score`` as ``r1omni-edge eval`` scores (WAR, UAR, the format rate, a confusion matrix); and the
accuracy the policy expects under its own sampling, which says whether it learned the task when greedy answers
cannot (a policy whose answer per class is an arbitrary pick scores 0, 25, 50 % or more greedily by luck)."""

from __future__ import annotations

import torch

from ..evaluation import Evaluation, score


@torch.no_grad()
def _answers(policy, prompts, groups: int, max_tokens: int, **sampling) -> tuple[list[str], list[str]]:
    """``groups`` completions per prompt in eval mode (texts, and each one's true label)."""
    texts, truths = [], []
    was_training = policy.training
    policy.eval()
    for prompt in prompts:
        texts += policy.decode(policy("rollout", prompt=prompt, groups=groups, max_tokens=max_tokens, **sampling))
        truths += [prompt.sample.label] * groups
    policy.train(was_training)
    return texts, truths


def evaluate(policy, prompts, labels: tuple[str, ...], max_tokens: int = 512, exact: bool = True) -> Evaluation:
    texts, truths = _answers(policy, prompts, 1, max_tokens, greedy=True)
    return score(truths, texts, labels, exact)


def sampled_accuracy(policy, prompts, labels: tuple[str, ...], samples: int = 8, max_tokens: int = 512,
                     seed: int = 0, exact: bool = True) -> float:
    """The share of ``samples`` sampled answers per held-out clip (temperature 1, top-k 50, a fixed seed) that name
    the clip's label: the policy's expected accuracy, with far less luck in it than one greedy answer per clip."""
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    texts, truths = _answers(policy, prompts, samples, max_tokens, generator=generator)
    return score(truths, texts, labels, exact).war
