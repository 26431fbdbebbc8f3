"""The generation protocol and the constrained answer, against a scripted decoder (no model needed).

The fake decoder reads token ids back out of the embeddings, keeps the whole history as its cache, checks that
every call's positions continue the cache exactly (so a token fed twice or skipped fails), and returns logits from
a script: the next token as a function of the history.
"""

import numpy as np
import pytest

from r1omni_edge.label_choice import choose_label, label_sequences
from r1omni_edge.prompt import LABEL_ONLY_SUFFIX
from r1omni_edge.pipeline.generation import TokenizerView, generate

WORDS = ["<think>", "</think>", "\n", " ", "<answer>", "</answer>", "happy", "sad", "sa", "d", "fear", "x", "y",
         "<|im_end|>", "<p>"]
ID = {w: i for i, w in enumerate(WORDS)}
END = ID["<|im_end|>"]


def encode(text: str) -> list[int]:
    ids, i = [], 0
    while i < len(text):
        word = max((w for w in WORDS if text.startswith(w, i)), key=len)
        ids.append(ID[word])
        i += len(word)
    return ids


def decode(ids: list[int]) -> str:
    return "".join(WORDS[i] for i in ids if i != END)


class ScriptedDecoder:
    def __init__(self, script, bias=None):
        self.script = script  # history (list of ids) -> next id
        self.bias = bias or {}  # extra logits by token, e.g. to rank labels
        self.calls = 0

    def __call__(self, embeds, positions, cache):
        history = list(cache)
        assert positions[0, 0] == len(history), (positions, len(history))
        assert list(positions[0]) == list(range(len(history), len(history) + embeds.shape[1]))
        history += [int(v) for v in embeds[0, :, 0]]
        self.calls += 1
        logits = np.zeros(len(WORDS))
        for token, value in self.bias.items():
            logits[token] = value
        logits[self.script(history)] += 10.0
        return logits[None], tuple(history)


def embed(ids):
    return np.asarray(ids, np.float32)[None, :, None]


def vocab(labels=("happy", "sad", "fear")):
    return TokenizerView(encode, decode, {END}, label_sequences(encode, labels))


PROMPT = [ID["<p>"]] * 3


def run(script, **kwargs):
    decoder = ScriptedDecoder(script, kwargs.pop("bias", None))
    out = generate(decoder, embed, embed(PROMPT), (), 0, kwargs.pop("vocab", vocab()), **kwargs)
    return out, decoder


def reasoning_then_answer(history):
    reply = encode("<think>x y</think>\n<answer>sad</answer>") + [END]
    done = len(history) - len(PROMPT)
    return reply[done] if done < len(reply) else END


def test_model_that_writes_its_own_answer_tag():
    out, _ = run(reasoning_then_answer, max_new_tokens=50, bias={ID["sad"]: 5.0})
    assert out.forced == "" and out.label == "sad"
    assert out.text == "<think>x y</think>\n<answer>sad</answer>"
    assert out.generated_tokens == len(encode("<think>x y</think>\n<answer>"))
    assert sum(out.probabilities.values()) == pytest.approx(1.0)
    assert max(out.probabilities, key=out.probabilities.get) == "sad"


def test_unconstrained_is_plain_greedy_and_stops_after_the_answer():
    out, _ = run(reasoning_then_answer, max_new_tokens=50, constrain=False)
    assert out.text == "<think>x y</think>\n<answer>sad</answer>" and out.label is None
    out, _ = run(lambda h: END, max_new_tokens=50, constrain=False)
    assert out.token_ids == [END]  # the end-of-turn id is kept, as the PyTorch reference keeps it
    out, _ = run(lambda h: ID["x"], max_new_tokens=5, constrain=False)
    assert out.token_ids == [ID["x"]] * 5


def test_reasoning_is_bounded_then_closed():
    out, _ = run(lambda h: ID["x"] if h[-1] != ID["<answer>"] else ID["fear"], max_new_tokens=100,
                 max_think_tokens=6, bias={ID["fear"]: 1.0})
    assert out.generated_tokens == 6
    assert out.forced == LABEL_ONLY_SUFFIX  # no <think> was ever opened: the whole block is supplied
    assert out.label == "fear" and out.text.endswith("<answer>fear</answer>")
    thinking = lambda h: ([ID["<think>"]] + [ID["y"]] * 50)[len(h) - len(PROMPT)]  # noqa: E731
    out, _ = run(thinking, max_new_tokens=100, max_think_tokens=4)
    assert out.forced == "</think>\n<answer>" and out.generated_tokens == 4


def test_early_end_of_turn_still_gives_a_label():
    out, _ = run(lambda h: END if len(h) == len(PROMPT) + 2 else ID["x"], max_new_tokens=50)
    assert out.generated_tokens == 2 and out.label in ("happy", "sad", "fear")
    assert END not in out.token_ids


def test_max_new_tokens_forces_the_answer():
    out, _ = run(lambda h: ID["y"], max_new_tokens=7)
    assert out.generated_tokens == 7 and out.label is not None


def test_label_only_mode_decides_from_the_prefill():
    decoder = ScriptedDecoder(lambda h: ID["happy"])
    out = generate(decoder, embed, embed(PROMPT + encode(LABEL_ONLY_SUFFIX)), (), 0, vocab(), max_new_tokens=50,
                   label_only=True)
    assert out.label == "happy" and out.generated_tokens == 0 and out.forced == ""
    assert decoder.calls == 1  # one prefill: the three labels differ at their first token


def test_label_probabilities_by_hand_with_a_shared_prefix():
    sequences = {"happy": [ID["happy"], ID["</answer>"]], "sad": [ID["sa"], ID["d"], ID["</answer>"]],
                 "say": [ID["sa"], ID["y"], ID["</answer>"]]}
    logits = np.zeros(len(WORDS))
    logits[ID["happy"]], logits[ID["sa"]] = 0.0, np.log(3.0)  # root: happy 1/4, sa.. 3/4

    def step(ids, cache, position):
        assert ids == [ID["sa"]]
        inner = np.zeros(len(WORDS))
        inner[ID["d"]], inner[ID["y"]] = np.log(2.0), 0.0  # below "sa": d 2/3, y 1/3
        return inner, cache

    choice = choose_label(step, logits, None, 0, sequences)
    assert choice.probabilities == pytest.approx({"happy": 0.25, "sad": 0.5, "say": 0.25})
    assert choice.label == "sad" and choice.extra_steps == 1


def test_label_sequences_are_prefix_free_and_distinct():
    sequences = label_sequences(encode, ["sad", "happy"])
    assert sequences["sad"][-1] == encode("</answer>")[0]
    with pytest.raises(ValueError, match="tokenize identically"):
        label_sequences(lambda text: [1] if text != "</answer>" else [2], ["a", "b"])
