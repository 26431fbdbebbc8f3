"""The visual projector ``all_in_one_small`` (three branches on SigLIP features, fused by the text gate), the gate
and the audio projector. Module and attribute names are the published state-dict names."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mlp2x_gelu(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


def reg_stage(in_chs: int, out_chs: int) -> nn.Module:
    """timm's RegStage as HumanOmni configures it: 2 bottlenecks, depthwise 3x3, SE 0.25, LayerNorm2d, SiLU."""
    from timm.layers import LayerNorm2d
    from timm.models.regnet import RegStage

    return RegStage(depth=2, in_chs=in_chs, out_chs=out_chs, stride=1, dilation=1, act_layer=nn.SiLU,
                    norm_layer=LayerNorm2d)


def temporal_sampler(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(dim, dim, kernel_size=(2, 2, 2), stride=(1, 2, 2), padding=(1, 0, 0)), nn.SiLU())


class AllInOneSmall(nn.Module):
    """SigLIP patch tokens of T frames (T, N, C) -> T * N/4 tokens of the LLM width, mixed by gate weights."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        for branch in ("video", "body"):
            setattr(self, f"s1_{branch}", reg_stage(in_dim, out_dim))
            setattr(self, f"sampler_{branch}", temporal_sampler(out_dim))
            setattr(self, f"s2_{branch}", reg_stage(out_dim, out_dim))
            setattr(self, f"readout_{branch}", mlp2x_gelu(out_dim, out_dim))
        self.mlp_2xgelu_face = mlp2x_gelu(in_dim, out_dim)

    @staticmethod
    def _grid(tokens: torch.Tensor) -> torch.Tensor:
        """(T, N, C) -> (T, C, h, w) for a square patch grid."""
        frames, count, channels = tokens.shape
        side = math.isqrt(int(count))  # the patch grid is static, also while tracing for export
        if side * side != count:
            raise ValueError(f"{count} patch tokens per frame do not form a square grid")
        return tokens.transpose(1, 2).reshape(frames, channels, side, side)

    def _branch(self, grid: torch.Tensor, name: str) -> torch.Tensor:
        x = getattr(self, f"s1_{name}")(grid)  # (T, D, h, w)
        x = x.permute(1, 0, 2, 3).unsqueeze(0)  # (1, D, T, h, w)
        x = getattr(self, f"sampler_{name}")(x)[:, :, :-1]  # T+1 slices; the last one is dropped
        x = x.squeeze(0).permute(1, 0, 2, 3)  # (T, D, h/2, w/2)
        x = getattr(self, f"s2_{name}")(x)
        x = x.flatten(2).transpose(1, 2).reshape(-1, x.shape[1])  # (T*h/2*w/2, D) in (t, h, w) order
        return getattr(self, f"readout_{name}")(x)

    def _face(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self._grid(self.mlp_2xgelu_face(tokens))  # (T, D, h, w)
        x = F.interpolate(x, size=(x.shape[2] // 2, x.shape[3] // 2), mode="bilinear", align_corners=False)
        return x.flatten(2).transpose(1, 2).reshape(-1, x.shape[1])

    def forward(self, tokens: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """tokens (T, N, C); gate (3,) softmax weights for (video, body, face) -> (T * N / 4, D)."""
        grid = self._grid(tokens)
        video = self._branch(grid, "video")
        body = self._branch(grid, "body")
        face = self._face(tokens)
        gate = gate.to(video.dtype)
        return gate[0] * video + gate[1] * body + gate[2] * face


def audio_pool(hidden: torch.Tensor) -> torch.Tensor:
    """Whisper encoder states (B, 1500, C) -> (B, 500, C): average over time, kernel 3, stride 3."""
    return F.avg_pool1d(hidden.transpose(1, 2), kernel_size=3, stride=3).transpose(1, 2)
