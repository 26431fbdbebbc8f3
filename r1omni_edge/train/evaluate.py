"""Evaluation during training: greedy answers of the policy on held-out clips' cached features, scored by
``evaluation.score`` as ``r1omni-edge eval`` scores (WAR, UAR, the format rate, a confusion matrix)."""

from __future__ import annotations

import torch

from ..evaluation import Evaluation, score


@torch.no_grad()
def evaluate(policy, prompts, labels: tuple[str, ...], max_tokens: int = 512, exact: bool = True) -> Evaluation:
    texts = []
    was_training = policy.training
    policy.eval()
    for prompt in prompts:
        ids = policy("rollout", prompt=prompt, groups=1, max_tokens=max_tokens, greedy=True)
        texts.append(policy.decode(ids)[0])
    policy.train(was_training)
    return score([p.sample.label for p in prompts], texts, labels, exact)
