"""The trainable R1-Omni on cached tower features. Everything that needs gradients runs inside ``forward`` (through
transformers' own Qwen2 forward and cache), so DDP / FSDP can wrap this module unchanged.

Shared prefix: the ~1,000-position multimodal prompt is identical for a prompt's G completions. It is run once (with
gradients, through the projectors), its KV cache repeated G times, and only the completions run G-wide. The naive
path (each completion with its own full copy of the prompt) is kept for the parity tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..datasets import Sample
from ..model.omni import OmniModel
from ..prompt import PromptTokenizer, instruction_of, wrap_media_tags
from .features import ClipFeatures


@dataclass
class Prompt:
    """One sample ready for the model: token ids with placeholders, its features, its gate input."""

    sample: Sample
    ids: list[int]
    features: ClipFeatures
    bert_cls: torch.Tensor


class Policy(nn.Module):
    def __init__(self, model: OmniModel, tokenizer: PromptTokenizer, bert_tokenizer):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.bert_tokenizer = bert_tokenizer
        self.stop_ids = {tokenizer.eos_id, tokenizer.pad_id}
        self._cls: dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- inputs -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def bert_cls(self, text: str) -> torch.Tensor:
        """The frozen BERT's [CLS] vector of an instruction (once per distinct text)."""
        if text not in self._cls:
            self._cls[text] = self.model.instruction_cls(self.bert_tokenizer.encode(text).ids).detach()
        return self._cls[text]

    def prompt(self, sample: Sample, features: ClipFeatures) -> Prompt:
        text = self.tokenizer.render([{"role": "user", "content": wrap_media_tags(sample.prompt)}])
        return Prompt(sample, self.tokenizer.encode_with_placeholders(text), features,
                      self.bert_cls(instruction_of(sample.prompt)))

    def media(self, prompt: Prompt) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected video (392, hidden) and audio (500, hidden) vectors, with gradients into the projectors and the
        gate."""
        model = self.model
        vision = prompt.features.vision.to(self.device, model.dtype)
        audio = prompt.features.audio.to(self.device, model.dtype)
        return model.mm_projector(vision, model.gate_from_cls(prompt.bert_cls)), model.audio_projector(audio)

    def prompt_embeds(self, prompt: Prompt) -> torch.Tensor:
        video, audio = self.media(prompt)
        return self.model.embed(prompt.ids, video, audio)

    def token_embeds(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.llm.get_input_embeddings()(ids.to(self.device))

    # ---- the losses and log-probabilities (inside forward, for DDP / FSDP) ----------------------------------------
    def forward(self, kind: str, **kwargs):
        if kind == "sft":
            return self.sft_loss(**kwargs)
        if kind == "rollout":  # no gradients, but through forward: FSDP gathers the weights around it
            return self.rollout(**kwargs)
        if kind == "distill":  # window adaptation (adapt.py)
            from .adapt import distill_loss

            return distill_loss(self, **kwargs)
        if kind == "logprobs":
            # several groups in one forward call: DDP expects one forward per backward
            return [self.completion_logprobs(prompt, completions, **kwargs) for prompt, completions in
                    kwargs.pop("groups")] if "groups" in kwargs else self.completion_logprobs(**kwargs)
        raise ValueError(f"unknown forward kind {kind!r}")

    def sft_loss(self, prompts: list[Prompt], targets: list[list[int]]) -> torch.Tensor:
        """Cross-entropy on the assistant tokens only, mean over all target tokens of the batch (right-padded)."""
        rows, label_rows = [], []
        for prompt, target in zip(prompts, targets):
            embeds = self.prompt_embeds(prompt)[0]
            target_ids = torch.tensor(target, device=self.device)
            rows.append(torch.cat([embeds, self.token_embeds(target_ids)]))
            label_rows.append(torch.cat([torch.full((embeds.shape[0],), -100, device=self.device), target_ids]))
        length = max(r.shape[0] for r in rows)
        inputs = torch.stack([F.pad(r, (0, 0, 0, length - r.shape[0])) for r in rows])
        labels = torch.stack([F.pad(r, (0, length - r.shape[0]), value=-100) for r in label_rows])
        logits = self.model.llm(inputs_embeds=inputs).logits[:, :-1].float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)

    def completion_logprobs(self, prompt: Prompt, completions: torch.Tensor, temperature: float = 1.0,
                            shared_prefix: bool = True, with_entropy: bool = False):
        """log p(completion token | prompt, earlier tokens) under temperature-scaled logits: (G, C); with
        ``with_entropy``, also each position's entropy over the vocabulary, (G, C) (for an entropy bonus).

        Gradient checkpointing cannot keep a KV cache (transformers drops it, as a replayed layer would write it
        twice), so while it is active the prompt runs with each completion instead of once."""
        completions = completions.to(self.device)
        logp = torch.log_softmax(self.completion_logits(prompt, completions, shared_prefix) / temperature, dim=-1)
        chosen = logp.gather(-1, completions[..., None]).squeeze(-1)
        if with_entropy:
            return chosen, -(logp.exp() * logp).sum(-1)
        return chosen

    def completion_logits(self, prompt: Prompt, completions: torch.Tensor, shared_prefix: bool = True
                          ) -> torch.Tensor:
        """The fp32 logits that predict each completion token: (G, C, vocab), from one prefill of the prompt."""
        from transformers import DynamicCache

        completions = completions.to(self.device)
        groups, length = completions.shape
        prefix = self.prompt_embeds(prompt)  # (1, P, hidden)
        tail = self.token_embeds(completions[:, :-1])  # (G, C - 1, hidden): each token predicts the next
        checkpointing = self.training and torch.is_grad_enabled() and \
            bool(getattr(self.model.llm, "is_gradient_checkpointing", False))
        if shared_prefix and not checkpointing:
            cache = DynamicCache()
            first = self.model.llm(inputs_embeds=prefix, cache=cache, use_cache=True, logits_to_keep=1).logits
            cache.batch_repeat_interleave(groups)
            rest = self.model.llm(inputs_embeds=tail, cache=cache, use_cache=True).logits if length > 1 else None
            logits = first.expand(groups, -1, -1) if rest is None else torch.cat([first.expand(groups, -1, -1), rest], 1)
        else:
            full = torch.cat([prefix.expand(groups, -1, -1), tail], dim=1)
            logits = self.model.llm(inputs_embeds=full).logits[:, prefix.shape[1] - 1:]
        return logits.float()

    # ---- sampling (no gradients) --------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, prompt: Prompt, groups: int, max_tokens: int, temperature: float = 1.0, top_k: int = 50,
                generator: torch.Generator | None = None, greedy: bool = False) -> torch.Tensor:
        """G completions sharing one prefill of the prompt: (G, L) ids, padded after the end-of-turn."""
        from transformers import DynamicCache

        llm = self.model.llm
        cache = DynamicCache()
        logits = llm(inputs_embeds=self.prompt_embeds(prompt), cache=cache, use_cache=True,
                     logits_to_keep=1).logits[:, -1].float()
        cache.batch_repeat_interleave(groups)
        logits = logits.expand(groups, -1)
        stops = torch.tensor(sorted(self.stop_ids), device=self.device)
        done = torch.zeros(groups, dtype=torch.bool, device=self.device)
        out = []
        for _ in range(max_tokens):
            if greedy:
                token = logits.argmax(-1)
            else:
                scaled = logits / temperature
                if top_k:
                    kth = torch.topk(scaled, min(top_k, scaled.shape[-1]), dim=-1).values[:, -1:]
                    scaled = scaled.masked_fill(scaled < kth, float("-inf"))
                probs = torch.softmax(scaled, dim=-1)
                token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(self.device)
            token = torch.where(done, torch.full_like(token, self.tokenizer.pad_id), token)
            out.append(token)
            done |= torch.isin(token, stops)
            if bool(done.all()):
                break
            logits = llm(inputs_embeds=self.token_embeds(token[:, None]), cache=cache, use_cache=True).logits[:, -1]
            logits = logits.float()
        return torch.stack(out, dim=1)

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [self.tokenizer.decode(row.tolist()) for row in ids]

    def target_ids(self, sample: Sample) -> list[int]:
        return self.tokenizer.encode_text(sample.target) + [self.tokenizer.eos_id]
