"""Window adaptation: teach a model the fast audio front end without labels. The published front end's own answers
on the user's clips are the teacher (computed once, by the model as loaded, before any step): its label
distribution in label mode and its greedy answer in full mode. The same model under the fast front end is the
student: KL(teacher || student) on the label distribution plus cross-entropy on the teacher's tokens, and the same
two losses under the published front end so that it keeps answering the published way. Encode-once, one or many
ranks, resume, checkpoints in the published layout, as SFT and GRPO; the checkpoint's config records the front end.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ADAPTED_FRONT_END
from ..label_choice import label_sequences
from ..prompt import LABEL_ONLY_SUFFIX
from .config import AdaptConfig
from .features import ClipFeatures, FeatureCache
from .policy import Policy, Prompt
from .run import prepare_run
from .sft import step_micro_batches

__all__ = ["AdaptConfig", "train_adapt"]


@dataclass
class Teacher:
    """What the published front end answered for one clip."""

    label_probs: torch.Tensor  # (labels,) the label distribution after ``<answer>`` in label mode
    tokens: list[int]  # its greedy answer in full mode (reasoning, answer, end of turn)


@dataclass
class Views:
    """One clip as the student sees it (fast front end) and as published, each in full and in label mode."""

    fast: Prompt
    fast_label: Prompt
    published: Prompt
    published_label: Prompt


def label_log_distribution(policy: Policy, prompt: Prompt, sequences: dict[str, list[int]]) -> torch.Tensor:
    """log p(label) after the prompt (which ends in ``<answer>``), as the runtime's label choice computes it: a
    softmax over the labels' tokens at each branching of their token tree, multiplied down each label's path.
    (labels,), differentiable."""
    rows = list(sequences.values())
    longest = max(map(len, rows))
    padded = torch.tensor([row + [row[-1]] * (longest - len(row)) for row in rows])
    logits = policy.completion_logits(prompt, padded)  # (labels, longest, vocab)
    scores = []
    for index, row in enumerate(rows):
        score = logits.new_zeros(())
        for depth, token in enumerate(row):
            siblings = sorted({other[depth] for other in rows if len(other) > depth and other[:depth] == row[:depth]})
            if len(siblings) > 1:
                score = score + torch.log_softmax(logits[index, depth, siblings], -1)[siblings.index(token)]
        scores.append(score)
    return torch.stack(scores)


def distill_loss(policy: Policy, views: list[Views], teachers: list[Teacher], sequences: dict[str, list[int]],
                 kl_weight: float, ce_weight: float, keep_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch's mean loss and its parts (KL and CE under the fast front end, and their sum under the published
    one), with the share of clips whose student label is the teacher's."""
    total = policy.model.llm.get_input_embeddings().weight.new_zeros((), dtype=torch.float32)
    parts = {"kl": 0.0, "ce": 0.0, "keep": 0.0, "agreement": 0.0}
    for view, teacher in zip(views, teachers):
        target = teacher.label_probs.to(policy.device)
        tokens = torch.tensor([teacher.tokens])

        def losses(prompt: Prompt, label_prompt: Prompt) -> tuple[torch.Tensor, torch.Tensor, bool]:
            log_q = label_log_distribution(policy, label_prompt, sequences)
            kl = (target * (torch.log(target.clamp_min(1e-12)) - log_q)).sum()
            ce = -policy.completion_logprobs(prompt, tokens).mean()
            return kl, ce, int(log_q.argmax()) == int(target.argmax())

        kl, ce, same = losses(view.fast, view.fast_label)
        loss = kl_weight * kl + ce_weight * ce
        parts["kl"] += float(kl.detach())
        parts["ce"] += float(ce.detach())
        parts["agreement"] += same
        if keep_weight:
            kept_kl, kept_ce, _ = losses(view.published, view.published_label)
            keep = kl_weight * kept_kl + ce_weight * kept_ce
            loss = loss + keep_weight * keep
            parts["keep"] += float(keep.detach())
        total = total + loss
    count = max(len(views), 1)
    return total / count, {name: value / count for name, value in parts.items()}


def fast_features(cache: FeatureCache, published: ClipFeatures, path, layout: str, silence: torch.Tensor
                  ) -> ClipFeatures:
    """The clip's features under the fast front end; ``tail``: the window's own, then the encoder's output for 30 s
    of silence at the positions it lacks (the audio projector works per vector, so this equals the runtime's tail
    of projected vectors)."""
    features = cache.get(path)
    if layout == "tail":
        features = dataclasses.replace(features, audio=torch.cat([features.audio, silence[features.audio.shape[0]:]]))
    return dataclasses.replace(features, vision=published.vision)  # the same frames: one vision encoding


@torch.no_grad()
def silence_features(policy: Policy) -> torch.Tensor:
    """The audio tower's pooled output for the published 30 s of silence: (500, whisper width)."""
    from ..media import log_mel
    from ..model.projector import audio_pool

    mel = torch.from_numpy(log_mel(np.zeros(0, np.float32)))  # padded to the published 30 s
    return audio_pool(policy.model.audio_states(mel))[0].float().cpu()


def up_to_answer(text: str) -> str:
    """A generated answer cut right after ``<answer>``, or closed as the runtime closes it (``</think>`` and
    ``<answer>`` forced) where the model wrote none."""
    if "<answer>" in text:
        return text[:text.index("<answer>") + len("<answer>")]
    if "</think>" in text:
        return text[:text.index("</think>") + len("</think>")] + "\n<answer>"
    return text + "</think>\n<answer>"


@torch.no_grad()
def teach(policy: Policy, views: list[Views], sequences: dict[str, list[int]], max_tokens: int,
          mode: str = "label") -> list[Teacher]:
    """The published front end's answers, by the model as loaded (before any step or resumed state). ``mode``:
    where the label distribution is read: label mode, or after the greedy reasoning (full)."""
    policy.eval()
    teachers = []
    for view in views:
        ids = policy.rollout(view.published, 1, max_tokens, greedy=True)[0].tolist()
        stop = next((i for i, token in enumerate(ids) if token in policy.stop_ids), None)
        ids = ids if stop is None else ids[:stop + 1]
        prompt = view.published_label
        if mode == "full":
            reasoned = policy.tokenizer.encode_text(up_to_answer(policy.tokenizer.decode(ids)))
            prompt = dataclasses.replace(view.published, ids=view.published.ids + reasoned)
        probs = label_log_distribution(policy, prompt, sequences).exp().float().cpu()
        teachers.append(Teacher(probs, ids))
    return teachers


@torch.no_grad()
def agreement(policy: Policy, views: list[Views], teachers: list[Teacher], sequences: dict[str, list[int]],
              published: bool = False) -> dict[str, float]:
    """Over every clip: the share whose label-mode answer under the fast front end (or the published one) is the
    teacher's, and the mean KL(teacher || student) of the label distributions."""
    policy.eval()
    same = kl = 0.0
    for view, teacher in zip(views, teachers):
        log_q = label_log_distribution(policy, view.published_label if published else view.fast_label, sequences)
        target = teacher.label_probs.to(log_q.device)
        same += int(log_q.argmax()) == int(target.argmax())
        kl += float((target * (torch.log(target.clamp_min(1e-12)) - log_q)).sum())
    count = max(len(views), 1)
    return {"agreement": round(same / count, 4), "kl": round(kl / count, 6)}


def train_adapt(config: AdaptConfig) -> dict:
    run = prepare_run(config, unlabelled=True)
    policy, samples = run.policy, run.samples
    encode = policy.tokenizer.encode_text
    sequences = label_sequences(encode, run.labels)
    suffix = encode(LABEL_ONLY_SUFFIX)
    started = time.perf_counter()
    fast_cache = FeatureCache(run.cache.directory, policy.model, config.resize_mode, config.audio_window)
    silence = silence_features(policy) if config.audio_layout == "tail" else None
    views = []
    for sample, prompt in zip(samples, run.prompts):
        fast = dataclasses.replace(prompt, features=fast_features(fast_cache, prompt.features, sample.video,
                                                                  config.audio_layout, silence))
        views.append(Views(fast, dataclasses.replace(fast, ids=fast.ids + suffix), prompt,
                           dataclasses.replace(prompt, ids=prompt.ids + suffix)))
    # before run.start resumes any state: the model as loaded is the teacher
    teachers = teach(policy, views, sequences, config.teacher_max_tokens, config.teacher_mode)
    run.encode_seconds += time.perf_counter() - started
    before = agreement(policy, views, teachers, sequences)  # on every rank: FSDP's forwards gather collectively
    steps_per_epoch = math.ceil(len(samples) / config.batch_size)
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    run.start(total)
    policy.train()
    for step in run.steps(total):
        began = time.perf_counter()
        micro, weights, size = step_micro_batches(len(samples), step, config, run.dist)  # as SFT
        sums = {"loss": 0.0, "kl": 0.0, "ce": 0.0, "keep": 0.0, "agreement": 0.0}
        for chunk, weight in zip(micro, weights):
            loss, parts = run.module("distill", views=[views[i] for i in chunk], teachers=[teachers[i] for i in chunk],
                                     sequences=sequences, kl_weight=config.kl_weight, ce_weight=config.ce_weight,
                                     keep_weight=config.keep_weight)
            (weight * loss * len(chunk) / max(size, 1) / config.grad_accum).backward()
            for name, value in {"loss": float(loss.detach()), **parts}.items():
                sums[name] += weight * value * len(chunk)
        grad_norm = run.optimizer_step(step)
        metrics = {name: value / max(size, 1) for name, value in sums.items()}
        metrics.update(lr=run.scheduler.get_last_lr()[0], grad_norm=grad_norm,
                       step_seconds=time.perf_counter() - began)
        if step % config.log_every == 0:
            run.logger.log(step + 1, metrics)
        if config.save_every and (step + 1) % config.save_every == 0:
            save(run, step + 1)
    result = {"front_end": front_end(config), "clips": len(samples)}
    after = agreement(policy, views, teachers, sequences)
    published_after = agreement(policy, views, teachers, sequences, published=True)
    if run.dist.main:
        result.update(before=before, after=after, published_after=published_after)
    checkpoint = save(run, total)
    if run.dist.main:
        result["checkpoint"] = str(checkpoint)
    run.logger.close(config.output_dir)
    result.update(steps=total, encode_seconds=run.encode_seconds, cache=run.cache.describe(),
                  config=dataclasses.asdict(config))
    return result


def front_end(config: AdaptConfig) -> dict | None:
    """The front end adapted to; None for the published window (label mode taught alone)."""
    if config.audio_window in ("full", 30):
        return None
    return {"audio_window": config.audio_window, "audio_layout": config.audio_layout}


def save(run, step: int):
    """A checkpoint whose config.json records the front end it was adapted to (exported into the manifest)."""
    extra = run.policy.model.config.extra
    if front_end(run.config) is None:
        extra.pop(ADAPTED_FRONT_END, None)
    else:
        extra[ADAPTED_FRONT_END] = front_end(run.config)
    return run.save(step)
