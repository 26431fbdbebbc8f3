"""R1-Omni in PyTorch: the towers, the projectors, the gate and the Qwen2 decoder glued into one module.

Internal names are short (``llm``, ``vision_tower`` ...); ``checkpoint.py`` maps them to the published names.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import OmniConfig
from ..errors import CheckpointError
from ..prompt import placeholder_media, split_at_placeholders
from .projector import AllInOneSmall, audio_pool, mlp2x_gelu
from .towers import TowerConfigs, build_towers


def qwen2_config(config: OmniConfig):
    from transformers import Qwen2Config

    return Qwen2Config(
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        vocab_size=config.vocab_size,
        rms_norm_eps=config.rms_norm_eps,
        rope_theta=config.rope_theta,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        hidden_act="silu",
        use_sliding_window=False,
    )


def check_tower_widths(config: OmniConfig, towers: TowerConfigs, where: dict[str, str] | None = None) -> None:
    """The towers must produce the widths the projectors were trained on; say which directory does not."""
    where = where or {}
    checks = [
        ("siglip", towers.siglip.hidden_size, config.mm_hidden_size, "hidden_size", "mm_hidden_size"),
        ("whisper", towers.whisper.d_model, config.audio_hidden_size, "d_model", "audio_hidden_size"),
        ("whisper", towers.whisper.num_mel_bins, 128, "num_mel_bins", "the Whisper-large-v3 log-mel (128 bins)"),
    ]
    for name, found, expected, field, against in checks:
        if found != expected:
            raise CheckpointError(
                f"{where.get(name, name)}: this {name} tower has {field} {found}, but the checkpoint needs {expected} "
                f"({against}); pass the tower the checkpoint was trained with"
            )


class OmniModel(nn.Module):
    def __init__(self, config: OmniConfig, towers: TowerConfigs):
        super().__init__()
        from transformers import Qwen2ForCausalLM

        check_tower_widths(config, towers)
        self.config = config
        self.tower_configs = towers
        self.llm = Qwen2ForCausalLM(qwen2_config(config))
        self.vision_tower, self.audio_tower, self.bert_model = build_towers(towers)
        self.mm_projector = AllInOneSmall(config.mm_hidden_size, config.hidden_size)
        self.bert_gate = nn.Sequential(
            nn.Linear(towers.bert.hidden_size, config.gate_hidden_size), nn.GELU(), nn.Linear(config.gate_hidden_size, 3)
        )
        self.audio_projector = mlp2x_gelu(config.audio_hidden_size, config.hidden_size)

    @property
    def device(self) -> torch.device:
        return self.llm.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.lm_head.weight.dtype

    # ---- media encoders ---------------------------------------------------------------------------------------
    def instruction_cls(self, bert_ids: list[int]) -> torch.Tensor:
        """BERT's [CLS] vector of the instruction (hidden,)."""
        ids = torch.tensor([bert_ids], device=self.device)
        return self.bert_model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0, 0]

    def gate_from_cls(self, cls: torch.Tensor) -> torch.Tensor:
        """Softmax weights (video, body, face) of the three projector branches."""
        return torch.softmax(self.bert_gate(cls.to(self.dtype)).float(), dim=-1)

    def gate_weights(self, bert_ids: list[int]) -> torch.Tensor:
        return self.gate_from_cls(self.instruction_cls(bert_ids))

    def vision_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """SigLIP patch features of the selected layer (-2: the output of layer 11 of 12), no post-layernorm.

        Only the layers up to the selected one run, which equals ``hidden_states[select]`` of the full tower.
        """
        tower = self.vision_tower
        select = self.config.mm_vision_select_layer
        depth = len(tower.encoder.layers) + 1 + select if select < 0 else select
        hidden = tower.embeddings(pixels.to(self.device, self.dtype))
        for layer in tower.encoder.layers[:depth]:
            hidden = layer(hidden, None)
        return hidden

    def encode_video(self, pixels: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """(T, 3, 224, 224) in [-1, 1] -> (T * 49, hidden)."""
        return self.mm_projector(self.vision_features(pixels), gate)

    def audio_states(self, mel: torch.Tensor) -> torch.Tensor:
        """Whisper encoder on (128, F) log-mel, F <= 3000: transformers' forward, with the positions cut to the input
        so a shorter window (an explicit opt-in) needs no padding to 30 s. (1, F / 2, audio_hidden)."""
        encoder = self.audio_tower
        x = nn.functional.gelu(encoder.conv1(mel.to(self.device, self.dtype).unsqueeze(0)))
        x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
        x = x + encoder.embed_positions.weight[: x.shape[1]]
        for layer in encoder.layers:
            x = layer(x, None)
        return encoder.layer_norm(x)

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(128, 3000) log-mel -> (500, hidden): encoder, average-pool by 3, projector."""
        return self.audio_projector(audio_pool(self.audio_states(mel)))[0]

    # ---- the merged sequence ------------------------------------------------------------------------------------
    def embed(self, ids: list[int], video: torch.Tensor | None = None, audio: torch.Tensor | None = None
              ) -> torch.Tensor:
        """Token ids with placeholders -> (1, L, hidden): each placeholder becomes its media vectors."""
        return self.assemble(self.text_segments(ids), video, audio)

    def text_segments(self, ids: list[int]) -> list[torch.Tensor | int]:
        """The prompt cut at its placeholders: runs of text as their embedding vectors, placeholders as themselves.
        Computed once per prompt, they let ``assemble`` run with no host-to-device copy (as a CUDA graph needs)."""
        table = self.llm.get_input_embeddings()
        return [piece if isinstance(piece, int) else table(torch.tensor(piece, device=self.device))
                for piece in split_at_placeholders(ids)]

    def assemble(self, segments: list[torch.Tensor | int], video: torch.Tensor | None = None,
                 audio: torch.Tensor | None = None) -> torch.Tensor:
        media = placeholder_media(video, audio)
        pieces: list[torch.Tensor] = []
        for segment in segments:
            if isinstance(segment, int):
                vectors = media.get(segment)
                if vectors is None:
                    raise ValueError(f"the prompt holds placeholder {segment} but no media was given for it")
                segment = vectors.to(self.dtype)
            pieces.append(segment)
        return torch.cat(pieces).unsqueeze(0)
