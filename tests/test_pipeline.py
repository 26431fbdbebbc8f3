"""One pipeline, three engines: the PyTorch reference engine, the accelerated engine (run eagerly on the CPU) and
the fp32 bundle give identical token ids, with and without audio, in full and in label mode."""

import pytest

from r1omni_edge.media import decode_clip


@pytest.fixture(scope="module")
def engines(recognizer, bundles):
    from r1omni_edge.model import TorchRecognizer
    from r1omni_edge.open import open_recognizer

    accelerated = TorchRecognizer(recognizer.model, recognizer.tokenizer, recognizer.bert_tokenizer,
                                  accelerated=True)
    bundle = open_recognizer(bundles["fp32"][1], backend="cpu")
    return {"reference": recognizer, "accelerated": accelerated, "bundle": bundle}


@pytest.mark.parametrize("use_audio", [True, False], ids=["audio", "video_only"])
@pytest.mark.parametrize("mode", ["full", "label"])
def test_the_three_engines_give_identical_tokens(mode, use_audio, engines, clips):
    assert engines["reference"].engine.name == "pytorch"
    assert engines["accelerated"].engine.name == "pytorch-accelerated"
    assert engines["bundle"].engine.name == "onnxruntime-cpu"
    clip = decode_clip(clips["av"])
    results = {name: recognizer.recognize(clip.frames, clip.audio, clip.sample_rate, use_audio=use_audio, mode=mode,
                                          max_new_tokens=20, constrain=False)
               for name, recognizer in engines.items()}
    reference = results["reference"]
    assert len(set(reference.token_ids)) > 3 or mode == "label"  # a sequence that varies: the comparison means something
    for name, result in results.items():
        assert result.token_ids == reference.token_ids, name
        assert result.label == reference.label and result.audio == reference.audio, name
    if mode == "label":
        for name, result in results.items():
            assert result.probabilities.keys() == reference.probabilities.keys()
            for label, probability in reference.probabilities.items():
                assert result.probabilities[label] == pytest.approx(probability, abs=1e-4), name
    assert "forward" in results["accelerated"].timings_ms if mode == "label" else True  # its one-forward label mode


def test_open_recognizer_tells_a_bundle_from_a_checkpoint(tiny, bundles, tmp_path):
    from r1omni_edge.errors import InputError
    from r1omni_edge.open import open_recognizer

    with pytest.raises(InputError, match="labels cannot be used with a bundle"):
        open_recognizer(bundles["fp32"][1], labels="dfew")
    with pytest.raises(InputError, match="threads cannot be used with a checkpoint"):
        open_recognizer(tiny.checkpoint, threads=2)
    with pytest.raises(InputError, match="is a checkpoint, not a bundle; export it first"):
        open_recognizer(tiny.checkpoint, expect="bundle")
    with pytest.raises(InputError, match="neither a bundle"):
        open_recognizer(tmp_path)


def test_a_stage_between_the_processor_and_the_engine_sees_every_window(bundles, clips):
    from r1omni_edge.open import open_recognizer

    recognizer = open_recognizer(bundles["fp32"][1], backend="cpu")
    seen = []

    def silence_the_audio(inputs):  # what an audio gate does: the engine then encodes silence
        seen.append(inputs.audio)
        inputs.input_features = recognizer.processor.features(inputs.waveform * 0)
        return inputs

    plain = recognizer.recognize_file(clips["av"], mode="label")
    recognizer.stages.append(silence_the_audio)
    gated = recognizer.recognize_file(clips["av"], mode="label")
    silent = open_recognizer(bundles["fp32"][1], backend="cpu")
    import numpy as np

    clip = decode_clip(clips["av"])
    expected = silent.recognize(clip.frames, np.zeros_like(clip.audio), clip.sample_rate, mode="label")
    assert seen == ["present"] and gated.probabilities == pytest.approx(expected.probabilities, abs=1e-6)
    assert gated.probabilities != pytest.approx(plain.probabilities, abs=1e-6)


def test_eval_scores_a_bundle_through_the_same_decoding_as_the_checkpoint(tiny, bundles, tmp_path, capsys):
    import json

    from r1omni_edge.cli import main
    from r1omni_edge.synthetic.task import write_task

    data = write_task(tmp_path, train=1, held_out=4)["eval"]
    scores = {}
    for kind, source in (("model", ["--model", tiny.checkpoint, "--models-dir", tiny.root]),
                         ("bundle", ["--bundle", bundles["fp32"][1], "--free-answer"])):
        assert main(["eval", *map(str, source), "--data", str(data), "--max-new-tokens", "16", "--json"]) == 0
        scores[kind] = json.loads(capsys.readouterr().out)
    assert len(scores["model"]["predictions"]) == 4
    # plain greedy on both sides (a checkpoint's default; --free-answer for the bundle): the same answers
    assert scores["bundle"]["predictions"] == scores["model"]["predictions"]
    assert scores["bundle"]["confusion"] == scores["model"]["confusion"]
