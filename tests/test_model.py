import numpy as np
import pytest
import torch

from r1omni_edge.model.checkpoint import to_internal, to_published
from r1omni_edge.model.projector import AllInOneSmall, audio_pool, mlp2x_gelu

from .conftest import DATA


def published_keys() -> dict[str, tuple[int, ...]]:
    keys = {}
    for line in (DATA / "r1omni-0.5b-keys.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split()
            keys[name] = tuple(int(x) for x in shape.split("x"))
    return keys


def test_real_size_projectors_have_the_published_names_and_shapes():
    """Projector, gate and audio projector at R1-Omni-0.5B size (39.48 M parameters) vs the published list."""
    from torch import nn

    parts = {
        "mm_projector.": AllInOneSmall(768, 896),
        "bert_gate.": nn.Sequential(nn.Linear(768, 3584), nn.GELU(), nn.Linear(3584, 3)),
        "audio_projector.": mlp2x_gelu(1280, 896),
    }
    ours = {to_published(prefix + name): tuple(value.shape)
            for prefix, module in parts.items() for name, value in module.state_dict().items()}
    expected = published_keys()
    assert ours == expected
    assert sum(torch.Size(s).numel() for s in ours.values()) == 39_481_283


def test_name_mapping_round_trips():
    for name in ["model.layers.3.self_attn.q_proj.bias", "model.embed_tokens.weight", "lm_head.weight",
                 "model.mm_projector.s1_video.b1.conv1.conv.weight", "model.bert_model.encoder.layer.0.output.dense.bias",
                 "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
                 "model.audio_tower.audio_tower.conv1.weight", "model.norm.weight"]:
        assert to_published(to_internal(name)) == name
    assert to_internal("model.layers.0.mlp.up_proj.weight") == "llm.model.layers.0.mlp.up_proj.weight"
    assert to_internal("model.vision_tower.vision_tower.vision_model.post_layernorm.weight") == \
        "vision_tower.post_layernorm.weight"


def test_projector_output_shape_and_temporal_mixing():
    torch.manual_seed(0)
    projector = AllInOneSmall(16, 24).eval()
    tokens = torch.randn(8, 196, 16)
    video_only = torch.tensor([1.0, 0.0, 0.0])
    with torch.no_grad():
        base = projector(tokens, video_only).reshape(8, 49, 24)
        changed = tokens.clone()
        changed[3] += 1.0
        moved = projector(changed, video_only).reshape(8, 49, 24)
    differs = [(moved[t] - base[t]).abs().max().item() > 1e-6 for t in range(8)]
    # the temporal conv pads one slice in front and the last slice is dropped: slice t mixes frames t-1 and t
    assert differs == [False, False, False, True, True, False, False, False]


def test_face_branch_is_two_by_two_average_pooling():
    torch.manual_seed(0)
    projector = AllInOneSmall(16, 24).eval()
    tokens = torch.randn(8, 196, 16)
    with torch.no_grad():
        face = projector(tokens, torch.tensor([0.0, 0.0, 1.0])).reshape(8, 7, 7, 24)
        per_token = projector.mlp_2xgelu_face(tokens).reshape(8, 14, 14, 24)
        pooled = per_token.reshape(8, 7, 2, 7, 2, 24).mean(dim=(2, 4))
    torch.testing.assert_close(face, pooled, atol=1e-5, rtol=1e-5)


def test_gate_mixes_branches_linearly():
    torch.manual_seed(0)
    projector = AllInOneSmall(16, 24).eval()
    tokens = torch.randn(8, 196, 16)
    eye = torch.eye(3)
    with torch.no_grad():
        branches = [projector(tokens, eye[i]) for i in range(3)]
        gate = torch.tensor([0.2, 0.3, 0.5])
        mixed = projector(tokens, gate)
    torch.testing.assert_close(mixed, sum(g * b for g, b in zip(gate, branches)), atol=1e-5, rtol=1e-5)


def test_audio_pool_averages_triples():
    hidden = torch.arange(6.0).reshape(1, 6, 1).repeat(1, 1, 2)
    assert audio_pool(hidden)[0, :, 0].tolist() == [1.0, 4.0]


def test_media_vectors_replace_placeholders(recognizer):
    model = recognizer.model
    ids = [5, 6, -201, 7, -202, 8]
    video = torch.full((392, model.config.hidden_size), 2.0)
    audio = torch.full((500, model.config.hidden_size), 3.0)
    with torch.no_grad():
        embeds = model.embed(ids, video, audio)[0]
        table = model.llm.get_input_embeddings().weight
    assert embeds.shape[0] == 2 + 392 + 1 + 500 + 1
    torch.testing.assert_close(embeds[:2], table[[5, 6]])
    assert torch.all(embeds[2:394] == 2.0) and torch.all(embeds[395:895] == 3.0)
    torch.testing.assert_close(embeds[394], table[7])
    with pytest.raises(ValueError, match="placeholder"):
        model.embed([5, -202], video, None)


@pytest.fixture(scope="module")
def lively_llm():
    """The tiny decoder with large random weights, so greedy sequences vary from token to token."""
    from transformers import Qwen2ForCausalLM

    from r1omni_edge.config import OmniConfig
    from r1omni_edge.model.omni import qwen2_config

    torch.manual_seed(1)
    llm = Qwen2ForCausalLM(qwen2_config(OmniConfig.tiny())).eval()
    with torch.no_grad():
        for name, param in llm.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.3)
    return llm


def test_cached_greedy_equals_recomputing_the_whole_sequence(lively_llm):
    from r1omni_edge.model.generate import greedy_generate

    llm = lively_llm
    torch.manual_seed(0)
    embeds = torch.randn(1, 40, llm.config.hidden_size)
    generation = greedy_generate(llm, embeds, stop_ids=set(), max_new_tokens=12)
    sequence = embeds
    naive = []
    with torch.no_grad():
        table = llm.get_input_embeddings()
        for _ in range(12):
            token = int(llm(inputs_embeds=sequence).logits[0, -1].argmax())
            naive.append(token)
            sequence = torch.cat([sequence, table(torch.tensor([[token]]))], dim=1)
    assert generation.token_ids == naive
    assert len(set(naive)) > 1  # a sequence that varies, so the comparison means something


def test_generation_stops_at_end_of_turn(lively_llm):
    from r1omni_edge.model.generate import greedy_generate

    torch.manual_seed(0)
    embeds = torch.randn(1, 10, lively_llm.config.hidden_size)
    first = greedy_generate(lively_llm, embeds, set(), 6).token_ids
    stop = next(t for t in first if t != first[0])
    stopped = greedy_generate(lively_llm, embeds, {stop}, 50)
    assert stopped.token_ids == first[: first.index(stop) + 1] and stopped.stopped
    assert not greedy_generate(lively_llm, embeds, set(), 4).stopped


def test_truncated_vision_and_manual_audio_equal_the_library_forward(recognizer):
    model = recognizer.model
    torch.manual_seed(0)
    pixels = torch.rand(8, 3, 224, 224) * 2 - 1
    mel = torch.randn(128, 3000)
    with torch.no_grad():
        full = model.vision_tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        torch.testing.assert_close(model.vision_features(pixels), full, atol=1e-5, rtol=1e-5)
        library = model.audio_tower(mel.unsqueeze(0)).last_hidden_state
        torch.testing.assert_close(model.audio_states(mel), library, atol=1e-5, rtol=1e-5)
        assert model.encode_audio(mel).shape == (500, model.config.hidden_size)
        assert model.encode_video(pixels, torch.tensor([0.2, 0.3, 0.5])).shape == (392, model.config.hidden_size)


def test_written_out_decoder_equals_transformers_in_batches(lively_llm):
    """The shared Qwen2 forward (export + training): batched, all positions, continuing a cache."""
    from r1omni_edge.model.decoder import qwen2_forward

    torch.manual_seed(0)
    embeds = torch.randn(3, 9, lively_llm.config.hidden_size)
    with torch.no_grad():
        reference = lively_llm(inputs_embeds=embeds).logits
        hidden, cache = qwen2_forward(lively_llm, embeds[:, :5], torch.arange(5)[None])
        rest, _ = qwen2_forward(lively_llm, embeds[:, 5:], torch.arange(5, 9)[None], cache)
        logits = lively_llm.lm_head(torch.cat([hidden, rest], dim=1))
    torch.testing.assert_close(logits, reference, atol=2e-5, rtol=1e-4)


def test_static_cache_decode_equals_the_dynamic_path(lively_llm):
    """The GPU decode path (static KV cache, in-place writes, masked full-buffer attention) run eagerly here; on CUDA
    the same step is replayed as a CUDA graph."""
    from r1omni_edge.model.generate import greedy_generate
    from r1omni_edge.model.static_decode import static_greedy_generate

    torch.manual_seed(3)
    embeds = torch.randn(1, 30, lively_llm.config.hidden_size)
    dynamic = greedy_generate(lively_llm, embeds, set(), 16)
    static = static_greedy_generate(lively_llm, embeds, set(), 16, use_graph=False)
    assert static.token_ids == dynamic.token_ids and len(set(static.token_ids)) > 3
    stop = static.token_ids[5]
    assert static_greedy_generate(lively_llm, embeds, {stop}, 16, use_graph=False).token_ids == \
        dynamic.token_ids[: dynamic.token_ids.index(stop) + 1]


def test_label_forward_equals_decoding_the_label_trie_step_by_step(recognizer, clips):
    """Label mode's single forward (tree attention over the labels' shared prefixes) against a prefill followed by
    one decoder step per trie node, through the KV cache."""
    from r1omni_edge.label_choice import choose_label
    from r1omni_edge.media import decode_clip
    from r1omni_edge.model.decoder import qwen2_forward
    from r1omni_edge.model.label_graph import shared_prefixes

    from r1omni_edge.model.accelerated import AcceleratedEngine

    model = recognizer.model
    clip = decode_clip(clips["av"], model.config.num_frames)
    inputs = recognizer.processor(clip.frames, clip.audio, clip.sample_rate, use_audio=True)
    pixels, mel = torch.from_numpy(inputs.pixel_values), torch.from_numpy(inputs.input_features[0])
    accelerated = AcceleratedEngine(model, recognizer.tokenizer, recognizer.bert_tokenizer, recognizer.labels,
                                    recognizer.instruction)  # on the CPU: the one forward, run eagerly
    forward = accelerated.label_forward(recognizer.tokenizer.encode_prompt(recognizer.instruction)
                                        + recognizer.label_suffix_ids, recognizer.label_sequences)
    root, nodes = forward(pixels, mel)
    assert len(nodes) >= 2 and set(nodes) == set(shared_prefixes(recognizer.label_sequences))

    ids = recognizer.tokenizer.encode_prompt(recognizer.instruction) + recognizer.label_suffix_ids
    with torch.inference_mode():
        embeds = model.embed(ids, model.encode_video(pixels, recognizer.gate(recognizer.instruction)),
                             model.encode_audio(mel))
        hidden, cache = qwen2_forward(model.llm, embeds, torch.arange(embeds.shape[1])[None])
        expected_root = model.llm.lm_head(hidden[:, -1]).float()[0].numpy()
        stepped = {}

        def step(tokens, state, position):
            path, past = state
            inputs = model.llm.get_input_embeddings().weight[tokens][None]
            out, past = qwen2_forward(model.llm, inputs, torch.arange(position, position + len(tokens))[None], past)
            logits = model.llm.lm_head(out[:, -1]).float()[0].numpy()
            stepped[path + tuple(tokens)] = logits
            return logits, (path + tuple(tokens), past)

        expected = choose_label(step, expected_root, ((), cache), embeds.shape[1], recognizer.label_sequences)
    assert forward.prompt_length == embeds.shape[1]
    np.testing.assert_allclose(root, expected_root, atol=1e-4)
    assert stepped.keys() == nodes.keys()
    for prefix, logits in stepped.items():
        np.testing.assert_allclose(nodes[prefix], logits, atol=1e-4)
    got = recognizer.recognize(clip.frames, clip.audio, clip.sample_rate, mode="label")
    assert got.label == expected.label
    for label, probability in expected.probabilities.items():
        assert abs(got.probabilities[label] - probability) < 1e-5
