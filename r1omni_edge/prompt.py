"""The prompt and the answer: the official instruction, chat-template rendering with the checkpoint's own
tokenizer, placeholder ids for the media, and parsing of ``<think>..</think><answer>..</answer>``.

Torch-free (``tokenizers`` + ``jinja2``): the PyTorch model and the runtime build identical token ids here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .files import read_json_object

INSTRUCTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the characters is the "
    "most obvious to you?  Output the thinking process in <think> </think> and final emotion in <answer> </answer> tags."
)

IMAGE_TOKEN_INDEX = -200
VIDEO_TOKEN_INDEX = -201
AUDIO_TOKEN_INDEX = -202
PLACEHOLDERS = {"<image>": IMAGE_TOKEN_INDEX, "<video>": VIDEO_TOKEN_INDEX, "<audio>": AUDIO_TOKEN_INDEX}
# With mm_use_x_start_end the media tags are wrapped in these (plain text unless the tokenizer adds them).
WRAPPERS = {
    "<image>": ("<im_start>", "<im_end>"),
    "<video>": ("<vi_start>", "<vi_end>"),
    "<audio>": ("<au_start>", "<au_end>"),
}
END_OF_TURN = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
START_OF_TURN = "<|im_start|>"

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
_PLACEHOLDER_SPLIT = re.compile("(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")")
# label mode: the prompt ends with an empty reasoning block and an open answer, so the label comes straight after
# prefill (an edge option: no reasoning, lowest latency)
LABEL_ONLY_SUFFIX = "<think>\n</think>\n<answer>"
MODES = ("full", "label")  # full: the reasoning, then the answer; label: the answer after LABEL_ONLY_SUFFIX
FORMAT_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def placeholder_media(video: Any, audio: Any) -> dict[int, Any]:
    """What each placeholder stands for: ``video`` for <video> and <image>, ``audio`` for <audio> (their vectors, or
    how many positions they take)."""
    return {VIDEO_TOKEN_INDEX: video, IMAGE_TOKEN_INDEX: video, AUDIO_TOKEN_INDEX: audio}


def prompt_positions(ids: list[int], visual: int, audio: int) -> int:
    """Positions the prompt takes once each placeholder is its media vectors (``visual`` or ``audio`` of them)."""
    media = placeholder_media(visual, audio)
    return sum(media[t] if t < 0 else 1 for t in ids)


def constant_prefix(ids: list[int]) -> list[int]:
    """The ids before the first placeholder: the same for every clip, so their KV cache is computed once."""
    first = next((i for i, t in enumerate(ids) if t < 0), len(ids))
    return ids[:first]


def split_at_placeholders(ids: list[int]) -> list[list[int] | int]:
    """Prompt ids -> runs of text ids (lists) and media placeholders (negative ints), in order: how every engine
    splices its media vectors into the prompt embeddings."""
    pieces: list[list[int] | int] = []
    for token in ids:
        if token < 0:
            pieces.append(token)
        elif pieces and isinstance(pieces[-1], list):
            pieces[-1].append(token)
        else:
            pieces.append([token])
    return pieces


def user_content(instruction: str = INSTRUCTION, video: bool = True, audio: bool = True) -> str:
    """The single user turn: ``<video>\\n<audio>\\n`` + instruction (video-only drops the audio tag)."""
    return ("<video>\n" if video else "") + ("<audio>\n" if audio else "") + instruction


def instruction_of(content: str) -> str:
    """The instruction in a user turn: the text without its media tags (what the gate's BERT reads)."""
    for tag in PLACEHOLDERS:
        content = content.replace(tag, "")
    return content.strip()


def wrap_media_tags(text: str) -> str:
    for tag, (start, end) in WRAPPERS.items():
        text = text.replace(tag, start + tag + end)
    return text


@dataclass
class ParsedAnswer:
    answer: str | None  # contents of the first <answer>..</answer>, stripped; None when absent
    reasoning: str  # contents of <think>..</think> (to the end if unclosed), stripped
    well_formed: bool  # full match of <think>..</think> <answer>..</answer>, the format reward's rule


def parse_answer(text: str) -> ParsedAnswer:
    answer = _ANSWER.search(text)
    think = _THINK.search(text)
    return ParsedAnswer(
        answer=answer.group(1).strip() if answer else None,
        reasoning=think.group(1).strip() if think else "",
        well_formed=FORMAT_PATTERN.fullmatch(text.strip()) is not None,
    )


def _raise_exception(message: str) -> None:
    raise CheckpointError(f"the chat template refused the conversation: {message}")


class PromptTokenizer:
    """A checkpoint's tokenizer (``tokenizer.json``) and chat template, without transformers."""

    def __init__(self, directory: str | Path):
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        tokenizer_file = self.directory / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise CheckpointError(
                f"{self.directory}: no tokenizer.json; the checkpoint directory must hold the Qwen tokenizer files "
                "(tokenizer.json, tokenizer_config.json) as published"
            )
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise CheckpointError(f"{tokenizer_file}: cannot be read as a tokenizer ({exc})") from exc
        self.config = self._read_json(self.directory / "tokenizer_config.json")
        self.chat_template = self._find_chat_template()
        self.eos_id = self.token_id(END_OF_TURN)
        self.pad_id = self.token_id(END_OF_TEXT)

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        if not path.is_file():
            return {}
        return read_json_object(path, CheckpointError)

    def _find_chat_template(self) -> str:
        template = self.config.get("chat_template")
        jinja_file = self.directory / "chat_template.jinja"
        if not template and jinja_file.is_file():
            template = jinja_file.read_text()
        if isinstance(template, list):  # named templates: take the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        if not template:
            raise CheckpointError(
                f"{self.directory}: the tokenizer has no chat template (tokenizer_config.json 'chat_template' or "
                "chat_template.jinja); copy the published tokenizer files into the checkpoint directory"
            )
        return template

    def token_id(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise CheckpointError(f"{self.directory}: the tokenizer has no token {token!r}; it is not a Qwen tokenizer")
        return token_id

    def special_tokens(self) -> dict[str, int]:
        return {t.content: i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The chat template rendered as transformers renders it (trim_blocks, lstrip_blocks)."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
        env.globals["raise_exception"] = _raise_exception
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token="", eos_token=END_OF_TURN
        )

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_with_placeholders(self, text: str) -> list[int]:
        """Text pieces tokenized without special additions; ``<video>`` etc. become their negative ids."""
        ids: list[int] = []
        for piece in _PLACEHOLDER_SPLIT.split(text):
            if piece in PLACEHOLDERS:
                ids.append(PLACEHOLDERS[piece])
            elif piece:
                ids.extend(self.encode_text(piece))
        return ids

    def prompt_text(self, instruction: str = INSTRUCTION, video: bool = True, audio: bool = True,
                    wrap: bool = True) -> str:
        content = user_content(instruction, video, audio)
        if wrap:
            content = wrap_media_tags(content)
        return self.render([{"role": "user", "content": content}], add_generation_prompt=True)

    def encode_prompt(self, instruction: str = INSTRUCTION, video: bool = True, audio: bool = True,
                      wrap: bool = True) -> list[int]:
        return self.encode_with_placeholders(self.prompt_text(instruction, video, audio, wrap))

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode([i for i in ids if i >= 0], skip_special_tokens=skip_special_tokens)
