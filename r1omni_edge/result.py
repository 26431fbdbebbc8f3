"""The answer for one clip or live window: the same fields from the PyTorch model and from the runtime."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class Result:
    label: str | None  # the answer mapped onto the label set; None when the answer names no known emotion
    answer: str | None  # the raw contents of <answer>..</answer>
    reasoning: str  # the contents of <think>..</think>
    text: str  # the whole generated text
    token_ids: list[int]  # the generated ids, end-of-turn included
    audio: str  # "present", "missing" (silence was fed, as the reference does) or "not used" (video-only)
    timings_ms: dict[str, float] = field(default_factory=dict)
    probabilities: dict[str, float] | None = None  # label probabilities, where the backend computes them
    notes: list[str] = field(default_factory=list)  # what the user should know about the input (a still image...)
    audio_window: int | None = None  # seconds of log-mel the audio part ran (30: the published); None without audio
    audio_layout: str | None = None  # how a window shorter than 30 s sat in the prompt: compact, positions or tail
    audio_gated: bool = False  # an audio gate called the window silent: the audio part's output for silence was used
    prompt_tokens: int = 0  # positions the prompt took, its media vectors included
    generated_tokens: int = 0  # tokens the model chose freely (forced and label tokens excluded)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)
