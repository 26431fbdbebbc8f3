"""The int8 / int4 decoder: onnxruntime's GroupQueryAttention over one preallocated KV buffer, written in place."""

from dataclasses import replace

import numpy as np
import pytest

from r1omni_edge.bundle import FUSED_DECODER, PRECISION_TABLE, PartPlan, load_bundle
from r1omni_edge.errors import InputError
from r1omni_edge.export.exporter import ExportOptions, export_bundle
from r1omni_edge.engines import BundleRecognizer
from r1omni_edge.engines.onnxruntime import OnnxRuntimeBackend


def _runtime(path, io_binding=None):
    manifest = load_bundle(path)
    return BundleRecognizer(path, manifest, OnnxRuntimeBackend(path, manifest, "cpu", io_binding=io_binding))


@pytest.fixture(scope="module")
def fused_fp32(recognizer, tmp_path_factory, request):
    """The fused graph at fp32 (no quantization), so that it must give the PyTorch decoder's tokens exactly."""
    plan = PRECISION_TABLE["fp32"]
    fused = replace(plan, parts={**plan.parts, "decoder": PartPlan("fp32", "none", FUSED_DECODER)})
    patch = pytest.MonkeyPatch()
    patch.setitem(PRECISION_TABLE, "fp32", fused)
    try:
        path = tmp_path_factory.mktemp("fused") / "fp32"
        export_bundle(recognizer, path, ExportOptions(precision="fp32"))
    finally:
        patch.undo()
    return path


def test_fused_fp32_decoder_gives_the_pytorch_tokens(fused_fp32, recognizer, clips):
    runtime = _runtime(fused_fp32)
    assert runtime.backend.name.endswith("kvbuffer") and runtime.manifest.kv_capacity > 0
    for clip in clips.values():
        expected = recognizer.recognize_file(clip, max_new_tokens=24, constrain=False)
        got = runtime.recognize_file(clip, max_new_tokens=24, constrain=False)
        assert got.token_ids == expected.token_ids and len(got.token_ids) >= 8


def test_int8_fused_decoder_keeps_every_label(bundles, recognizer, clips):
    runtime = _runtime(bundles["int8"][1])
    assert runtime.manifest.parts["decoder"].attention == FUSED_DECODER
    for clip in clips.values():
        assert runtime.recognize_file(clip, mode="label").label == recognizer.recognize_file(clip, mode="label").label


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_shared_buffer_decodes_as_copies_do(precision, bundles, clips):
    """In place (IOBinding on one buffer) against copies in and out of the same graph; int4 also runs its int8
    prefill part on the shared buffer."""
    path = bundles[precision][1]
    shared, copied = _runtime(path), _runtime(path, io_binding=False)
    assert shared.backend.kv is not None and copied.backend.kv is None
    assert ("prefill" in shared.backend.sessions) == (precision == "int4")
    for clip in (clips["av"], clips["video_only"], clips["av"]):  # the prefix cache serves clip after clip
        expected = copied.recognize_file(clip, max_new_tokens=20)
        got = shared.recognize_file(clip, max_new_tokens=20)
        assert got.token_ids == expected.token_ids
        assert got.probabilities == pytest.approx(expected.probabilities, abs=1e-6)


def test_the_buffer_is_never_read_past_its_valid_length(bundles, clips):
    """Everything past the prompt prefix is NaN before the clip: one read of it would poison the logits."""
    runtime = _runtime(bundles["int8"][1])
    expected = runtime.recognize_file(clips["av"], max_new_tokens=16)
    prefix = max(len(p.prefix_ids) for p in runtime.manifest.prompt.values())
    for array in runtime.backend.kv.arrays:
        array[:, :, prefix:] = np.nan
    got = runtime.recognize_file(clips["av"], max_new_tokens=16)
    assert got.token_ids == expected.token_ids
    assert np.isfinite(list(got.probabilities.values())).all()
    assert got.probabilities == pytest.approx(expected.probabilities, abs=1e-6)


def test_a_cache_never_changes_once_handed_out(bundles):
    """Two caches from the empty one write the same positions; the first is kept intact (copied out, then back)."""
    path = bundles["int8"][1]
    shared, copied = _runtime(path).backend, _runtime(path, io_binding=False).backend
    rng = np.random.default_rng(0)
    first, second, step = (rng.standard_normal((1, n, shared.manifest.model.hidden_size)).astype(np.float32)
                           for n in (7, 5, 1))

    def run(engine):
        _, a = engine.decoder(first, np.arange(7)[None], engine.empty_cache())
        _, b = engine.decoder(second, np.arange(5)[None], engine.empty_cache())  # overwrites positions 0 .. 4
        after_a, _ = engine.decoder(step, np.array([[7]]), a)
        after_b, _ = engine.decoder(step, np.array([[5]]), b)
        again_a, _ = engine.decoder(step, np.array([[7]]), a)
        return after_a, after_b, again_a

    for got, expected in zip(run(shared), run(copied)):
        np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="position_ids must be 7 .. 7"):
        _, a = shared.decoder(first, np.arange(7)[None], shared.empty_cache())
        shared.decoder(step, np.array([[9]]), a)


def test_a_prompt_longer_than_the_buffer_is_refused(recognizer, bundles, clips, tmp_path):
    path = tmp_path / "small"
    manifest = export_bundle(recognizer, path, ExportOptions(precision="int8", kv_capacity=64))
    assert manifest.kv_capacity == 64
    runtime = _runtime(path)
    with pytest.raises(InputError, match="need .* positions, but this bundle's KV buffer holds 64.*--kv-capacity"):
        runtime.recognize_file(clips["av"], max_new_tokens=8)
    engine = runtime.backend
    hidden = manifest.model.hidden_size
    with pytest.raises(InputError, match="KV buffer holds 64"):
        engine.decoder(np.zeros((1, 65, hidden), np.float32), np.arange(65)[None], engine.empty_cache())
    with pytest.raises(InputError, match="--kv-capacity sizes the fused decoder"):
        export_bundle(recognizer, tmp_path / "fp32", ExportOptions(precision="fp32", kv_capacity=64))


def test_the_answer_room_and_the_prompt_prefix_are_computed_at_export_and_read_back(recognizer, bundles):
    """One function each (pipeline.generation.answer_room, prompt.constant_prefix) at export, written to the
    manifest; the runtime takes them from there, and the KV buffer was sized with that room."""
    from r1omni_edge.export.exporter import KV_CAPACITY_STEP
    from r1omni_edge.engines import BundleRecognizer
    from r1omni_edge.pipeline.generation import answer_room
    from r1omni_edge.prompt import constant_prefix, prompt_positions

    manifest, path = bundles["int8"]
    room = manifest.generation.answer_room
    assert room == answer_room(recognizer.vocab.encode, recognizer.label_sequences) and 0 < room < 32
    runtime = BundleRecognizer.from_bundle(path, backend="cpu")
    assert runtime.info.answer_room == room
    for use_audio, name in ((True, "video_audio"), (False, "video_only")):
        ids = manifest.prompt[name].ids
        assert runtime.engine.prompt_prefix(use_audio) == manifest.prompt[name].prefix_ids == constant_prefix(ids)
    longest = max(prompt_positions(p.ids, manifest.model.visual_tokens, manifest.model.audio_tokens)
                  for p in manifest.prompt.values())
    need = longest + manifest.generation.max_new_tokens + room
    assert manifest.kv_capacity == -(-need // KV_CAPACITY_STEP) * KV_CAPACITY_STEP


def test_the_manifest_states_the_decoders_and_checks_them(bundles):
    """Each part's attention kind and the buffer's capacity are in the manifest; a prefill part must be the
    decoder's twin; a fused decoder needs a fixed capacity; version 2 manifests (plain decoders) still load."""
    from r1omni_edge.bundle import Manifest

    int4, int8, fp32 = (bundles[p][0] for p in ("int4", "int8", "fp32"))
    assert int4.parts["prefill"].precision == "int8" and int4.parts["decoder"].precision == "int4"
    assert int4.kv_capacity == int8.kv_capacity == int8.parts["decoder"].inputs[2].shape[2]
    assert fp32.kv_capacity is None and "prefill" not in int8.parts
    data = int4.to_dict()
    data["parts"]["prefill"]["inputs"] = data["parts"]["prefill"]["inputs"][:-2]
    data["parts"]["decoder"]["inputs"][2]["shape"][2] = "past_sequence"
    with pytest.raises(Exception, match="parts.prefill: .*decoder's.*a fixed number of positions, found "
                                        "'past_sequence'"):
        Manifest.from_dict(data)
    old = fp32.to_dict()
    old["format_version"] = 2
    assert Manifest.from_dict(old).kv_capacity is None
    old["format_version"] = 99
    with pytest.raises(Exception, match="format version 99 is not supported by this runtime \\(it reads versions "
                                        "2, 3, 4\\)"):
        Manifest.from_dict(old)


def test_each_int8_part_names_its_weight_format(bundles):
    """Format 4 says which int8 weights each part holds (7-bit by default: no saturation on any CPU); a format 3
    bundle's int8 parts are read as full-range; an unknown format is named by its key."""
    from r1omni_edge.bundle import Manifest

    int4, int8, fp32 = (bundles[p][0] for p in ("int4", "int8", "fp32"))
    assert int8.int8_weights() == {"vision": "s7", "audio": "s7", "decoder": "s7"}
    assert int4.int8_weights() == {"vision": "s7", "audio": "s7", "prefill": "s7"}
    assert int4.parts["decoder"].int8_weights is None and fp32.int8_weights() == {}
    old = int8.to_dict()
    old["format_version"] = 3
    for part in old["parts"].values():
        del part["int8_weights"]
    assert Manifest.from_dict(old).int8_weights() == {"vision": "s8", "audio": "s8", "decoder": "s8"}
    bad = int8.to_dict()
    bad["parts"]["audio"]["int8_weights"] = "s6"
    with pytest.raises(Exception, match="parts.audio.int8_weights: 's6' is not one of s7, u8, s8"):
        Manifest.from_dict(bad)
