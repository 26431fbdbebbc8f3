"""What one recognition is asked to do, as one frozen object: built once (from the command line, a config, or in
code) and taken unchanged by ``Recognizer.recognize``, the live session and the batch actor. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError
from .media.audio_gate import AUDIO_GATES
from .media.processor import AUDIO_LAYOUTS, parse_audio_window
from .prompt import MODES


class RecognitionOptionError(InputError, ValueError):
    """An option of a recognition out of its range: the user's input on the command line, a ValueError in code."""


@dataclass(frozen=True)
class RecognitionOptions:
    mode: str = "full"  # full: the reasoning, then the answer; label: the answer straight after prefill
    max_new_tokens: int | None = None  # the reasoning and the answer together; None: the model's own budget
    max_think_tokens: int | None = None  # bound the reasoning, then close it and answer; None: no bound
    constrain: bool | None = None  # answer among the labels (True) or plain greedy (False); None: the model's own
    audio_window: str | int = "full"  # the audio encoder's window: full (the published 30 s), fit, or seconds
    audio_gate: str = "off"  # skip the audio encoder for a silent window: off (published), energy or vad
    audio_layout: str = "auto"  # a window shorter than 30 s in the prompt: auto, compact, positions or tail

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RecognitionOptionError(f"--mode must be {' or '.join(MODES)}, got {self.mode!r}")
        if (self.max_new_tokens is not None and self.max_new_tokens < 1) or (
                self.max_think_tokens is not None and self.max_think_tokens < 0):
            raise RecognitionOptionError(f"--max-new-tokens must be at least 1 and --max-think-tokens at least 0 "
                                         f"(got {self.max_new_tokens} and {self.max_think_tokens})")
        object.__setattr__(self, "audio_window", parse_audio_window(self.audio_window))
        if self.audio_gate not in AUDIO_GATES:
            raise RecognitionOptionError(f"audio gate {self.audio_gate!r}: use one of {', '.join(AUDIO_GATES)}")
        if self.audio_layout not in AUDIO_LAYOUTS:
            raise RecognitionOptionError(f"audio layout {self.audio_layout!r}: use one of {', '.join(AUDIO_LAYOUTS)}")


# --fast-profile: the settings that bring a 2-core CPU closest to real time (docs/audio-front-end.md): the label
# straight after prefill, the audio encoder on the window's own length, silent windows not encoded, and a bounded
# reasoning when full mode is asked for. Options given on the command line win.
FAST_PROFILE = RecognitionOptions(mode="label", audio_window="fit", audio_gate="energy", max_think_tokens=48)
