"""The audio layouts of a window shorter than 30 s, each held to its definition on the tiny model: "positions" gives
the logits of an explicit position-id list in which the text after the audio keeps its published ids; "tail" is the
fitted window's vectors followed by the encoder's output for 30 s of silence at the missing positions."""

import numpy as np
import pytest

from r1omni_edge.config import audio_tokens
from r1omni_edge.errors import InputError
from r1omni_edge.media.decode import decode_clip
from r1omni_edge.pipeline.generation import generate
from r1omni_edge.pipeline.recognizer import splice
from r1omni_edge.prompt import AUDIO_TOKEN_INDEX
from r1omni_edge.recognition import RecognitionOptions


@pytest.fixture(scope="module")
def runtime(bundles):
    from r1omni_edge.engines import BundleRecognizer

    return BundleRecognizer.from_bundle(bundles["fp32"][1], backend="cpu")


@pytest.fixture(scope="module")
def clip(clips):
    return decode_clip(clips["av"], 8)


def _published_position_ids(ids: list[int], visual: int, fitted: int) -> list[int]:
    """Written out by hand: each token and media vector one position on, except that the audio placeholder's
    ``fitted`` vectors stand where the published window's 500 begin and the text after them goes on at 500."""
    positions, at = [], 0
    for token in ids:
        if token == AUDIO_TOKEN_INDEX:
            positions += list(range(at, at + fitted))
            at += 500
        elif token < 0:
            positions += list(range(at, at + visual))
            at += visual
        else:
            positions.append(at)
            at += 1
    return positions


def test_positions_layout_equals_an_explicit_position_list(runtime, clip):
    got = runtime.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label", audio_window="fit",
                            audio_layout="positions")
    compact = runtime.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label", audio_window="fit",
                                audio_layout="compact")
    auto = runtime.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label", audio_window="fit")
    assert (compact.audio_layout, auto.audio_layout) == ("compact", "tail")  # unadapted: auto keeps the layout
    engine = runtime.engine
    inputs = runtime.processor(clip.frames, clip.audio, clip.sample_rate, audio_window="fit")
    fitted = audio_tokens(inputs.audio_seconds)
    assert inputs.audio_seconds == 2 and fitted == 33
    ids = engine.prompt_ids(True) + runtime.label_suffix_ids
    embeds = splice(engine, ids, engine.vision(inputs.pixel_values), engine.audio(inputs.input_features))
    positions = np.asarray(_published_position_ids(ids, runtime.info.visual_tokens, fitted))
    assert positions[-1] == runtime.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label").prompt_tokens - 1
    expected = generate(engine.decoder, runtime._embed, embeds, engine.empty_cache(), 0, runtime.vocab, 1,
                        label_only=True, positions=positions)
    assert got.label == expected.label
    for label, p in expected.probabilities.items():
        assert got.probabilities[label] == pytest.approx(p, abs=1e-5)
    assert got.prompt_tokens == compact.prompt_tokens  # the same vectors, only their position ids differ
    assert max(abs(got.probabilities[k] - compact.probabilities[k]) for k in got.probabilities) > 1e-4


def test_tail_layout_is_the_fitted_window_then_the_encoders_silence(runtime, clip):
    engine, processor = runtime.engine, runtime.processor
    inputs = processor(clip.frames, clip.audio, clip.sample_rate, audio_window="fit")
    fitted = audio_tokens(inputs.audio_seconds)
    head = engine.audio(inputs.input_features)
    silence = engine.audio(processor.features(np.zeros(0, np.float32), 30))  # the published window of silence
    tail = runtime.silence_tail(head, inputs.audio_seconds)
    assert tail.shape == silence.shape == (runtime.info.audio_tokens, head.shape[1]) == (500, head.shape[1])
    np.testing.assert_array_equal(tail[:fitted], head)
    np.testing.assert_array_equal(tail[fitted:], silence[fitted:])

    got = runtime.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label", audio_window="fit",
                            audio_layout="tail")
    ids = engine.prompt_ids(True) + runtime.label_suffix_ids
    embeds = splice(engine, ids, engine.vision(inputs.pixel_values), tail)
    expected = generate(engine.decoder, runtime._embed, embeds, engine.empty_cache(), 0, runtime.vocab, 1,
                        label_only=True)
    published = runtime.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label")
    assert got.audio_window == 2 and got.prompt_tokens == published.prompt_tokens  # the published prompt's length
    assert got.label == expected.label
    for label, p in expected.probabilities.items():
        assert got.probabilities[label] == pytest.approx(p, abs=1e-5)


def test_a_gated_window_under_the_tail_equals_the_ungated_one(runtime, clip):
    quiet = np.zeros(3 * 16000, np.float32)
    options = dict(mode="label", audio_window="fit", audio_layout="tail")
    gated = runtime.recognize(clip.frames, quiet, 16000, audio_gate="energy", **options)
    ungated = runtime.recognize(clip.frames, quiet, 16000, **options)
    assert gated.audio_gated and not ungated.audio_gated and gated.label == ungated.label
    for label, p in ungated.probabilities.items():
        assert gated.probabilities[label] == pytest.approx(p, abs=1e-5)


def test_full_window_ignores_the_layout_and_fused_buffers_refuse_positions(runtime, bundles, clip):
    from r1omni_edge.engines import BundleRecognizer

    plain = runtime.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label")
    for layout in ("positions", "tail"):
        same = runtime.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label", audio_layout=layout)
        assert same.probabilities == plain.probabilities
    fused = BundleRecognizer.from_bundle(bundles["int8"][1], backend="cpu")
    with pytest.raises(InputError, match="audio layout 'positions'.*fused buffer.*tail or compact"):
        fused.check(RecognitionOptions(audio_window="fit", audio_layout="positions"))
    with pytest.raises(InputError, match="audio layout 'positions'"):
        fused.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label", audio_window="fit",
                        audio_layout="positions")
    tail = fused.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label", audio_window="fit",
                           audio_layout="tail")
    assert tail.label in fused.labels
    with pytest.raises(ValueError, match="audio layout 'sideways'"):
        RecognitionOptions(audio_layout="sideways")
