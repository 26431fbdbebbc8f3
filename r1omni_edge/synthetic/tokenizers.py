"""Tiny tokenizers built with the ``tokenizers`` library: a byte-level BPE with the Qwen special tokens and chat
template, and a WordPiece BERT tokenizer. Written in the files the published checkpoints ship."""

from __future__ import annotations

import json
from pathlib import Path

from ..labels import MAFW, RAVDESS
from ..prompt import END_OF_TEXT, END_OF_TURN, INSTRUCTION, START_OF_TURN

# Qwen2.5-Instruct's chat template without the tool-calling branches (the only ones R1-Omni never uses).
QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
QWEN_SPECIALS = (END_OF_TEXT, START_OF_TURN, END_OF_TURN)


def _corpus() -> list[str]:
    words = " ".join(MAFW + RAVDESS)
    return [
        INSTRUCTION,
        "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        "system user assistant <vi_start> <vi_end> <au_start> <au_end> <video> <audio>",
        f"<think> The person smiles and the voice is bright. </think>\n<answer>{words}</answer>",
        "The speaker frowns, the tone is low and slow, the face looks tense, eyes wide, mouth open.",
    ] * 4


def write_qwen_tokenizer(directory: str | Path, vocab_size: int = 420) -> int:
    """Write tokenizer.json, vocab.json, merges.txt and tokenizer_config.json; returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(_corpus(), trainer)
    tokenizer.add_special_tokens(list(QWEN_SPECIALS))  # appended after the BPE vocabulary, as in Qwen
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer.model.save(str(directory))  # vocab.json, merges.txt
    added = {
        str(tokenizer.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                        "single_word": False, "special": True}
        for t in QWEN_SPECIALS
    }
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": added,
        "additional_special_tokens": [START_OF_TURN, END_OF_TURN],
        "bos_token": None,
        "eos_token": END_OF_TURN,
        "pad_token": END_OF_TEXT,
        "chat_template": QWEN_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 32768,
        "split_special_tokens": False,
        "unk_token": None,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return tokenizer.get_vocab_size()


def write_bert_tokenizer(directory: str | Path, vocab_size: int = 200) -> int:
    """A lower-casing WordPiece tokenizer in bert-base-uncased's files (vocab.txt, tokenizer.json)."""
    from tokenizers.implementations import BertWordPieceTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(_corpus(), vocab_size=vocab_size, show_progress=False)
    tokenizer.save_model(str(directory))
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512}, indent=2))
    return tokenizer.get_vocab_size()
