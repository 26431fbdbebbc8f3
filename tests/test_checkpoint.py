import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from r1omni_edge.errors import CheckpointError
from r1omni_edge.model.checkpoint import load_model, save_model


def copy_models(tiny, tmp_path):
    """A private copy of the tiny checkpoint and its towers, safe to damage."""
    root = tmp_path / "models"
    shutil.copytree(tiny.root, root)
    return root, root / tiny.checkpoint.name


def test_save_load_round_trip_is_exact(tiny, tmp_path):
    model, _ = load_model(tiny.checkpoint, models_dir=tiny.root)
    saved = save_model(model, tmp_path / "copy", tokenizer_dir=tiny.checkpoint)
    original = load_file(tiny.checkpoint / "model.safetensors")
    written = load_file(saved / "model.safetensors")
    assert original.keys() == written.keys()
    for name in original:
        assert original[name].dtype == torch.bfloat16
        assert torch.equal(original[name], written[name]), name
    assert json.loads((saved / "config.json").read_text()) == json.loads((tiny.checkpoint / "config.json").read_text())
    assert (saved / "tokenizer.json").read_bytes() == (tiny.checkpoint / "tokenizer.json").read_bytes()
    reloaded, _ = load_model(saved, models_dir=tiny.root)
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_published_keys_and_tied_head(tiny):
    names = load_file(tiny.checkpoint / "model.safetensors").keys()
    assert "lm_head.weight" not in names  # tied, stored once
    assert "model.embed_tokens.weight" in names and "model.mm_projector.sampler_video.0.weight" in names
    assert any(n.startswith("model.bert_model.") for n in names)
    assert not any(n.startswith(("model.vision_tower.", "model.audio_tower.")) for n in names)
    model, report = load_model(tiny.checkpoint, models_dir=tiny.root)
    assert model.llm.lm_head.weight.data_ptr() == model.llm.get_input_embeddings().weight.data_ptr()
    assert report.towers_from_checkpoint == ["bert"]


def test_tower_copies_inside_the_checkpoint_take_precedence(tiny, tmp_path):
    model, _ = load_model(tiny.checkpoint, models_dir=tiny.root)
    with torch.no_grad():
        model.vision_tower.embeddings.patch_embedding.weight.add_(0.25)
        model.audio_tower.conv1.weight.add_(0.25)
    inside = save_model(model, tmp_path / "with-towers", tokenizer_dir=tiny.checkpoint, include_towers=True)
    names = load_file(inside / "model.safetensors").keys()
    assert "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight" in names
    assert "model.audio_tower.audio_tower.conv1.weight" in names
    loaded, report = load_model(inside, models_dir=tiny.root)
    assert sorted(report.towers_from_checkpoint) == ["bert", "siglip", "whisper"]
    # bf16 storage: compare with the bf16-rounded edited weights
    expected = model.vision_tower.embeddings.patch_embedding.weight.to(torch.bfloat16).float()
    assert torch.equal(loaded.vision_tower.embeddings.patch_embedding.weight, expected)


def test_sharded_checkpoint_loads(tiny, tmp_path):
    root, checkpoint = copy_models(tiny, tmp_path)
    tensors = load_file(checkpoint / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in shards.items():
        save_file({n: tensors[n] for n in part}, str(checkpoint / file), metadata={"format": "pt"})
    (checkpoint / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": {n: f for f, part in shards.items() for n in part}}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    sharded, _ = load_model(checkpoint, models_dir=root)
    single, _ = load_model(tiny.checkpoint, models_dir=tiny.root)
    for (name, a), (_, b) in zip(single.state_dict().items(), sharded.state_dict().items()):
        assert torch.equal(a, b), name
    (checkpoint / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing: model-00002-of-00002"):
        load_model(checkpoint, models_dir=root)


def test_pickled_checkpoint_needs_an_explicit_flag(tiny, tmp_path):
    root, checkpoint = copy_models(tiny, tmp_path)
    torch.save(load_file(checkpoint / "model.safetensors"), checkpoint / "pytorch_model.bin")
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="pickled.*--allow-pickle"):
        load_model(checkpoint, models_dir=root)
    model, _ = load_model(checkpoint, models_dir=root, allow_pickle=True)
    assert model.config.hidden_size == 64


def test_tower_of_the_wrong_width_is_named(tiny, tmp_path):
    root, checkpoint = copy_models(tiny, tmp_path)
    config_path = root / "siglip-base-patch16-224" / "config.json"
    config = json.loads(config_path.read_text())
    config["vision_config"]["hidden_size"] = 48
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"siglip-base-patch16-224: this siglip tower has hidden_size 48, "
                                              r"but the checkpoint needs 32"):
        load_model(checkpoint, models_dir=root)


def test_missing_and_unexpected_keys_are_listed(tiny, tmp_path):
    root, checkpoint = copy_models(tiny, tmp_path)
    tensors = load_file(checkpoint / "model.safetensors")
    del tensors["model.mm_projector.readout_body.2.bias"]
    tensors["model.mystery.weight"] = torch.zeros(2)
    tensors["model.audio_projector.0.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(checkpoint / "model.safetensors"))
    with pytest.raises(CheckpointError) as info:
        load_model(checkpoint, models_dir=root)
    message = str(info.value)
    assert "missing keys (1): model.mm_projector.readout_body.2.bias" in message
    assert "unexpected keys (1): model.mystery.weight" in message
    assert "model.audio_projector.0.weight (3, 3) vs (64, 32)" in message


def test_damaged_weights_and_missing_towers(tiny, tmp_path):
    root, checkpoint = copy_models(tiny, tmp_path)
    data = (checkpoint / "model.safetensors").read_bytes()
    (checkpoint / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_model(checkpoint, models_dir=root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no siglip tower directory.*--siglip DIR"):
        load_model(tiny.checkpoint, models_dir=empty)
    # explicit tower arguments work without a models directory
    model, report = load_model(tiny.checkpoint, siglip=tiny.siglip, whisper=tiny.whisper, bert=tiny.bert,
                               models_dir=empty)
    assert report.towers["siglip"] == str(tiny.siglip)


def test_dtypes(tiny):
    model, _ = load_model(tiny.checkpoint, models_dir=tiny.root, dtype="bf16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(CheckpointError, match="unknown dtype"):
        load_model(tiny.checkpoint, models_dir=tiny.root, dtype="int3")


def test_written_directories_get_ordinary_permissions(tiny, tmp_path):
    import os
    import stat

    model, _ = load_model(tiny.checkpoint, models_dir=tiny.root)
    saved = save_model(model, tmp_path / "perm", tokenizer_dir=tiny.checkpoint)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((saved / "model.safetensors").stat().st_mode) == 0o666 & ~mask
