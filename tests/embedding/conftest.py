"""Fixtures of the engine tests: random DINOv2 weights written in the real file formats.

Weights come from `Dinov2Model.random` (seeded, non-trivial values); a Hugging Face checkpoint
directory holds them under the published on-disk names plus a config.json, so transformers
loads the very same file the engine loads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.embedding.engine import ARCHITECTURES, Dinov2Config, Dinov2Model

SEED = 7
# A reduced giant-style config: SwiGLU FFN, two blocks, width 128 (two 64-wide heads).
SMALL_SWIGLU = Dinov2Config("small_swiglu", 128, 2, 2, "swiglu", 344)
SMALL_SWIGLU_REG = Dinov2Config("small_swiglu_reg", 128, 2, 2, "swiglu", 344, num_registers=4)


def config_of(arch: str) -> Dinov2Config:
    return {"small_swiglu": SMALL_SWIGLU, "small_swiglu_reg": SMALL_SWIGLU_REG}.get(
        arch) or ARCHITECTURES[arch]


def hf_config_dict(config: Dinov2Config) -> dict[str, object]:
    """The config.json transformers needs for `config` (position grid 37 = 518 / 14)."""
    out: dict[str, object] = {
        "hidden_size": config.dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.heads,
        "mlp_ratio": 4,
        "image_size": config.pos_grid * config.patch_size,
        "patch_size": config.patch_size,
        "layer_norm_eps": config.layer_norm_eps,
        "use_swiglu_ffn": config.mlp == "swiglu",
        "hidden_act": "gelu",
    }
    if config.num_registers:
        out["model_type"] = "dinov2_with_registers"
        out["architectures"] = ["Dinov2WithRegistersModel"]
        out["num_register_tokens"] = config.num_registers
    else:
        out["model_type"] = "dinov2"
        out["architectures"] = ["Dinov2Model"]
    return out


@pytest.fixture(scope="session")
def weights_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def hf_checkpoint(weights_root: Path) -> Callable[[str], Path]:
    """arch -> a directory with model.safetensors (HF on-disk names) and config.json."""
    from safetensors.numpy import save_file

    made: dict[str, Path] = {}

    def make(arch: str) -> Path:
        if arch not in made:
            config = config_of(arch)
            model = Dinov2Model.random(config, seed=SEED, threads=1)
            folder = weights_root / arch
            folder.mkdir()
            save_file(model.state_dict_hf(), str(folder / "model.safetensors"))
            (folder / "config.json").write_text(json.dumps(hf_config_dict(config)))
            model.close()
            made[arch] = folder
        return made[arch]

    return make


def odd_image(width: int = 333, height: int = 517, seed: int = 3) -> Image.Image:
    """A deterministic RGB image with structure (gradients plus noise), not flat noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) % 256], axis=-1)
    noisy = base + rng.normal(0, 25, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="RGB")


