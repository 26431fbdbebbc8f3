import json

import pytest

from r1omni_edge.config import OmniConfig
from r1omni_edge.errors import ConfigError
from r1omni_edge.labels import DFEW, MAFW, RAVDESS, confusion_matrix, normalize_label, uar, war
from r1omni_edge.prompt import (AUDIO_TOKEN_INDEX, INSTRUCTION, VIDEO_TOKEN_INDEX, PromptTokenizer, parse_answer,
                                user_content)


# ---- prompt -----------------------------------------------------------------------------------------------------
def test_instruction_is_the_official_one():
    assert "?  Output the thinking process" in INSTRUCTION  # two spaces, as published
    assert user_content() == "<video>\n<audio>\n" + INSTRUCTION
    assert user_content(audio=False) == "<video>\n" + INSTRUCTION


def test_chat_template_renders_as_transformers_does(tiny):
    from transformers import AutoTokenizer

    ours = PromptTokenizer(tiny.checkpoint)
    theirs = AutoTokenizer.from_pretrained(str(tiny.checkpoint))
    messages = [{"role": "user", "content": user_content()}]
    expected = theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours.render(messages) == expected
    assert expected.endswith("<|im_start|>assistant\n")
    text = "hello <think>sad</think> <|im_end|>"
    assert ours.encode_text(text) == theirs.encode(text, add_special_tokens=False)


def test_placeholders_become_negative_ids_once_each(tiny):
    tok = PromptTokenizer(tiny.checkpoint)
    ids = tok.encode_prompt()
    assert ids.count(VIDEO_TOKEN_INDEX) == 1 and ids.count(AUDIO_TOKEN_INDEX) == 1
    assert ids.index(VIDEO_TOKEN_INDEX) < ids.index(AUDIO_TOKEN_INDEX)
    text = tok.prompt_text()
    assert "<vi_start><video><vi_end>\n<au_start><audio><au_end>\n" in text
    # the pieces around the placeholders are tokenized on their own, without special additions
    before, after = text.split("<video>")[0], text.split("<audio>")[1]
    assert ids[: ids.index(VIDEO_TOKEN_INDEX)] == tok.encode_text(before)
    assert ids[ids.index(AUDIO_TOKEN_INDEX) + 1:] == tok.encode_text(after)
    video_only = tok.encode_prompt(audio=False)
    assert AUDIO_TOKEN_INDEX not in video_only and video_only.count(VIDEO_TOKEN_INDEX) == 1
    assert tok.token_id("<|im_end|>") == tok.eos_id


def test_parse_answer():
    parsed = parse_answer("<think>The voice trembles.</think>\n<answer> fear </answer>")
    assert parsed.answer == "fear" and parsed.reasoning == "The voice trembles." and parsed.well_formed
    first = parse_answer("<think>x</think><answer>sad</answer><answer>happy</answer>")
    assert first.answer == "sad"
    assert first.well_formed  # the published rule is a DOTALL full match, so '.*?' may span a second answer
    assert not parse_answer("<answer>sad</answer>").well_formed  # no reasoning
    assert not parse_answer("<think>x</think><answer>sad</answer> because").well_formed  # text after the answer
    assert parse_answer("no tags at all").answer is None
    unclosed = parse_answer("<think>still thinking")
    assert unclosed.reasoning == "still thinking" and unclosed.answer is None and not unclosed.well_formed


# ---- labels -----------------------------------------------------------------------------------------------------
def test_label_sets():
    assert len(DFEW) == 7 and len(MAFW) == 11 and len(RAVDESS) == 8
    assert set(DFEW) < set(MAFW)
    assert "fear" in RAVDESS and "surprise" in RAVDESS and "fearful" not in RAVDESS


def test_normalize_label_exact_and_synonyms():
    assert normalize_label("Happy", MAFW, exact=True) is None  # published scoring is case-sensitive
    assert normalize_label("happy", MAFW, exact=True) == "happy"
    assert normalize_label("Happiness", MAFW) == "happy"
    assert normalize_label("fearful", RAVDESS) == "fear"
    assert normalize_label("contempt", DFEW) is None  # not in the 7-class set
    assert normalize_label("calm", MAFW) is None and normalize_label("calm", RAVDESS) == "calm"
    assert normalize_label(None, MAFW) is None


def test_war_and_uar_by_hand():
    truth = ["happy", "happy", "happy", "sad"]
    pred = ["happy", "happy", "sad", None]
    assert war(truth, pred) == pytest.approx(0.5)  # 2 of 4
    assert uar(truth, pred) == pytest.approx((2 / 3 + 0) / 2)  # happy 2/3, sad 0
    names, matrix = confusion_matrix(truth, pred, ["happy", "sad"])
    assert names == ["happy", "sad", "other"]
    assert matrix == [[2, 1, 0], [0, 0, 1]]
    with pytest.raises(ValueError):
        war(truth, pred[:2])


# ---- config -----------------------------------------------------------------------------------------------------
PUBLISHED = {
    "architectures": ["HumanOmniQwen2ForCausalLM"], "model_type": "HumanOmni_qwen2", "hidden_size": 896,
    "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "vocab_size": 151936, "rope_theta": 1000000.0, "mm_hidden_size": 768, "audio_hidden_size": 1280,
    "mm_projector_type": "all_in_one_small", "mm_audio_projector_type": "mlp2x_gelu",
    "mm_vision_tower": "/mnt/authors/siglip-base-patch16-224", "mm_audio_tower": "/mnt/authors/whisper-large-v3",
    "mm_use_x_start_end": True, "num_frames": 8, "hyper_layers": None, "mm_tunable_parts": "x",
    "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151645,
}


def test_config_reads_published_fields_and_keeps_unknown_ones():
    config = OmniConfig.from_dict(PUBLISHED)
    real = OmniConfig.real()
    for field in ("hidden_size", "num_hidden_layers", "num_key_value_heads", "vocab_size", "mm_hidden_size",
                  "audio_hidden_size", "num_frames", "gate_hidden_size", "eos_token_id"):
        assert getattr(config, field) == getattr(real, field), field
    assert config.mm_vision_tower == "/mnt/authors/siglip-base-patch16-224"  # kept, never used to load
    assert config.head_dim == 64 and config.rope_theta == 1e6
    assert config.extra["mm_tunable_parts"] == "x"
    out = config.to_dict()
    assert out["hyper_layers"] is None and out["rope_theta"] == 1e6 and "rope_parameters" not in out


def test_config_accepts_transformers5_rope_parameters():
    data = {k: v for k, v in PUBLISHED.items() if k != "rope_theta"}
    data["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
    assert OmniConfig.from_dict(data).rope_theta == 1e6


def test_config_names_missing_fields_and_rejects_other_models(tmp_path):
    data = {k: v for k, v in PUBLISHED.items() if k not in ("hidden_size", "rope_theta")}
    with pytest.raises(ConfigError, match="hidden_size.*rope_theta"):
        OmniConfig.from_dict(data)
    with pytest.raises(ConfigError, match="model_type is 'qwen2'"):
        OmniConfig.from_dict(dict(PUBLISHED, model_type="qwen2"))
    with pytest.raises(ConfigError, match="not supported"):
        OmniConfig.from_dict(dict(PUBLISHED, mm_projector_type="mlp2x_gelu"))
    with pytest.raises(ConfigError, match="no config.json"):
        OmniConfig.from_file(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        OmniConfig.from_file(tmp_path)


def test_tiny_checkpoint_config_is_the_published_layout(tiny):
    data = json.loads((tiny.checkpoint / "config.json").read_text())
    for field in PUBLISHED:
        assert field in data, field
    assert data["model_type"] == "HumanOmni_qwen2" and "rope_parameters" not in data
    assert data["mm_vision_tower"].startswith("/mnt/")  # the authors' path, which the loader must ignore
