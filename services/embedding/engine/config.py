"""Architectures of DINOv2: width, depth, heads and feed-forward kind of each released model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MlpKind = Literal["gelu", "swiglu"]


@dataclass(frozen=True)
class Dinov2Config:
    """One ViT/14 of the DINOv2 family.

    `mlp_hidden` is the hidden width of the feed-forward block (for SwiGLU: of each of its two
    input halves). `pos_grid` is the side of the square grid the position embeddings were
    trained on (37 = 518 / 14 for the released checkpoints); other grids are interpolated.
    """

    name: str
    dim: int
    depth: int
    heads: int
    mlp: MlpKind
    mlp_hidden: int
    patch_size: int = 14
    num_registers: int = 0
    layerscale: bool = True
    layer_norm_eps: float = 1e-6
    pos_grid: int = 37

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def weight_count(self) -> int:
        """Number of float parameters (mask token excluded)."""
        d, h, p = self.dim, self.mlp_hidden, self.patch_size
        ffn = (d * 2 * h + 2 * h + h * d + d) if self.mlp == "swiglu" else (d * h + h + h * d + d)
        scales = 2 * d if self.layerscale else 0
        block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + ffn + scales
        top = d + (1 + self.pos_grid**2) * d + self.num_registers * d + 3 * p * p * d + d + 2 * d
        return top + self.depth * block


def _swiglu_hidden(dim: int) -> int:
    # Two thirds of the 4x width, rounded up to a multiple of 8 (as the official SwiGLU FFN).
    return (int(dim * 4 * 2 / 3) + 7) // 8 * 8


def _family() -> dict[str, Dinov2Config]:
    base = {
        "dinov2_vits14": Dinov2Config("dinov2_vits14", 384, 12, 6, "gelu", 1536),
        "dinov2_vitb14": Dinov2Config("dinov2_vitb14", 768, 12, 12, "gelu", 3072),
        "dinov2_vitl14": Dinov2Config("dinov2_vitl14", 1024, 24, 16, "gelu", 4096),
        "dinov2_vitg14": Dinov2Config("dinov2_vitg14", 1536, 40, 24, "swiglu",
                                      _swiglu_hidden(1536)),
    }
    out = dict(base)
    for name, cfg in base.items():
        reg = f"{name}_reg"
        out[reg] = Dinov2Config(reg, cfg.dim, cfg.depth, cfg.heads, cfg.mlp, cfg.mlp_hidden,
                                num_registers=4)
    return out


ARCHITECTURES: dict[str, Dinov2Config] = _family()
