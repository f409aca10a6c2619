"""The DINOv2 forward pass written plainly: the model to read, and the oracle of the fast one.

Weights are the checkpoint's tensors under their official names (`Dinov2Model.state_dict()`),
nothing folded or reordered; arithmetic in float64, one whole-array NumPy expression per step,
no threads or buffers. `Dinov2Model` (model.py) computes the same function faster; the tests
hold every one of its paths to this one without torch, and this one to transformers.

Shapes: B images, T = 1 + R + N tokens (CLS, R registers, N patches), D width, nh heads of
hd = D / nh, H hidden units of the MLP.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.embedding.engine.config import Dinov2Config
from services.embedding.engine.interpolate import resize_grid

F64 = NDArray[np.float64]
Weights = Mapping[str, NDArray[Any]]

_erf = np.frompyfunc(math.erf, 1, 1)


def layer_norm(x: F64, weight: NDArray[Any], bias: NDArray[Any], eps: float) -> F64:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu(x: F64) -> F64:  # the exact (erf) GELU
    return 0.5 * x * (1.0 + np.asarray(_erf(x / math.sqrt(2.0)), np.float64))


def attention(x: F64, w: Weights, cfg: Dinov2Config) -> F64:
    b, t, d = x.shape
    nh, hd = cfg.heads, cfg.head_dim
    qkv = x @ w["attn.qkv.weight"].T + w["attn.qkv.bias"]             # (B, T, 3D)
    q, k, v = qkv.reshape(b, t, 3, nh, hd).transpose(2, 0, 3, 1, 4)   # each (B, nh, T, hd)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)               # (B, nh, T, T)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probs = scores / scores.sum(-1, keepdims=True)                     # softmax over keys
    y = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, d)             # heads side by side
    return y @ w["attn.proj.weight"].T + w["attn.proj.bias"]           # (B, T, D)


def mlp(x: F64, w: Weights, cfg: Dinov2Config) -> F64:
    if cfg.mlp == "swiglu":
        gate, up = np.split(x @ w["mlp.w12.weight"].T + w["mlp.w12.bias"], 2, axis=-1)
        hidden = gate / (1.0 + np.exp(-gate)) * up                     # (B, T, H): silu(gate) up
        return hidden @ w["mlp.w3.weight"].T + w["mlp.w3.bias"]
    hidden = gelu(x @ w["mlp.fc1.weight"].T + w["mlp.fc1.bias"])       # (B, T, H)
    return hidden @ w["mlp.fc2.weight"].T + w["mlp.fc2.bias"]          # (B, T, D)


def block(x: F64, w: Weights, cfg: Dinov2Config) -> F64:
    """One pre-norm transformer block; `w` holds its tensors without the `blocks.i.` prefix."""
    ls1 = w["ls1.gamma"] if cfg.layerscale else 1.0                    # LayerScale, (D,)
    ls2 = w["ls2.gamma"] if cfg.layerscale else 1.0
    eps = cfg.layer_norm_eps
    x = x + ls1 * attention(layer_norm(x, w["norm1.weight"], w["norm1.bias"], eps), w, cfg)
    x = x + ls2 * mlp(layer_norm(x, w["norm2.weight"], w["norm2.bias"], eps), w, cfg)
    return x


def embed_tokens(w: Weights, cfg: Dinov2Config, pixels: NDArray[Any]) -> F64:
    """(B, 3, H, W) normalised pixels -> (B, T, D) input of the first block."""
    b, _, h, wd = pixels.shape
    p, d = cfg.patch_size, cfg.dim
    gh, gw = h // p, wd // p
    # the stride-p convolution as a product: one row of (channel, row, col) values per patch
    patches = np.asarray(pixels, np.float64).reshape(b, 3, gh, p, gw, p)
    patches = patches.transpose(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, 3 * p * p)
    x = patches @ w["patch_embed.proj.weight"].reshape(d, -1).T + w["patch_embed.proj.bias"]
    pos = np.asarray(w["pos_embed"][0])                                # (1 + grid^2, D)
    grid = pos[1:].reshape(cfg.pos_grid, cfg.pos_grid, d)
    if (gh, gw) != grid.shape[:2]:  # transformers' bicubic resampling (antialiased with registers)
        grid = resize_grid(grid, gh, gw, antialias=cfg.num_registers > 0)
    x = x + grid.reshape(gh * gw, d)                                   # (B, N, D)
    cls = np.broadcast_to(w["cls_token"][0] + pos[0], (b, 1, d))       # (B, 1, D)
    regs = np.broadcast_to(w["register_tokens"][0], (b, cfg.num_registers, d)) if (
        cfg.num_registers) else np.zeros((b, 0, d))
    return np.concatenate([cls, regs, x], axis=1)                      # (B, T, D)


def forward(w: Weights, cfg: Dinov2Config, pixels: NDArray[Any]) -> F64:
    """(B, 3, H, W), H and W multiples of 14 -> (B, T, D) last hidden state (after the final
    layer norm), as transformers' `Dinov2Model(...).last_hidden_state`."""
    x = embed_tokens(w, cfg, pixels)
    for i in range(cfg.depth):
        prefix = f"blocks.{i}."
        x = block(x, {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}, cfg)
    return layer_norm(x, w["norm.weight"], w["norm.bias"], cfg.layer_norm_eps)
