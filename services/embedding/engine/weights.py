"""Weights as the engine keeps them: canonical arrays in, folded (in, out) matrices out.

`fold_block` turns one block's canonical tensors into the matrices the forward multiplies by,
with every constant folded in: layer-norm affine into
the following matrix, the attention scale into the query columns, LayerScale into the output
matrices, and the GELU's 1/sqrt(2) and sqrt(2)/2 into fc1 and fc2.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import mmap
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.embedding.engine.config import Dinov2Config

F32 = NDArray[np.float32]


@dataclass
class BlockWeights:
    """One transformer block, folded; matrices are (out, in) C-contiguous float32, the layout
    of the checkpoints, multiplied as x @ W.T (measured: OpenBLAS's transposed-B path is
    up to 10% faster on these shapes than x @ W with W stored (in, out))."""

    w_qkv: F32   # (3D, D): rows head by head, [q_h | k_h | v_h] (3 x head_dim rows each), so
    #              a range of heads is a range of rows; query rows pre-scaled by 1/sqrt(hd)
    b_qkv: F32   # (3D,) in the same order
    w_proj: F32  # (D, D): LayerScale 1 folded
    b_proj: F32  # (D,)
    w_in: F32    # (H, D) for GELU (times 1/sqrt 2), (2H, D) [gate | up] for SwiGLU
    b_in: F32
    w_out: F32   # (D, H): LayerScale 2 (and sqrt(2)/2 for GELU) folded
    b_out: F32   # (D,)

    def nbytes(self) -> int:
        return sum(int(getattr(self, f).nbytes) for f in self.__dataclass_fields__)


def _f32(array: NDArray[Any]) -> F32:
    return np.ascontiguousarray(array, dtype=np.float32)


def fold_block(c: Mapping[str, NDArray[np.float32]], index: int,
               config: Dinov2Config) -> BlockWeights:
    """Canonical tensors of block `index` -> `BlockWeights`."""
    p = f"blocks.{index}."
    d = config.dim

    # float32 arithmetic: each folded value is one or two roundings away from the exact
    # product (about 1e-7 relative), and float64 temporaries would double the peak memory.
    def g(name: str) -> F32:
        return np.asarray(c[p + name], dtype=np.float32)

    ones = np.ones(d, dtype=np.float32)
    ls1 = g("ls1.gamma") if config.layerscale else ones
    ls2 = g("ls2.gamma") if config.layerscale else ones
    # LN1 affine into QKV: (xhat * g + b) W^T + c = xhat (W * g[None, :])^T + (W b + c)
    w = g("attn.qkv.weight")
    w_qkv = w * g("norm1.weight")[None, :]
    b_qkv = w @ g("norm1.bias") + g("attn.qkv.bias")
    scale = np.float32(config.head_dim ** -0.5)
    w_qkv[:d] *= scale
    b_qkv[:d] *= scale
    # [q | k | v] (3, heads, hd) -> head-major (heads, 3, hd): the threads split by heads
    heads, hd = config.heads, config.head_dim
    w_qkv = w_qkv.reshape(3, heads, hd, d).transpose(1, 0, 2, 3).reshape(3 * d, d)
    b_qkv = b_qkv.reshape(3, heads, hd).transpose(1, 0, 2).reshape(3 * d)
    w_proj = g("attn.proj.weight") * ls1[:, None]
    b_proj = g("attn.proj.bias") * ls1
    if config.mlp == "swiglu":
        w = g("mlp.w12.weight")
        w_in = w * g("norm2.weight")[None, :]
        b_in = w @ g("norm2.bias") + g("mlp.w12.bias")
        w_out = g("mlp.w3.weight") * ls2[:, None]
        b_out = g("mlp.w3.bias") * ls2
    else:
        w = g("mlp.fc1.weight")
        inv_sqrt2 = np.float32(1.0 / math.sqrt(2.0))
        w_in = w * (g("norm2.weight") * inv_sqrt2)[None, :]
        b_in = (w @ g("norm2.bias") + g("mlp.fc1.bias")) * inv_sqrt2
        w_out = g("mlp.fc2.weight") * (ls2 * np.float32(math.sqrt(2.0) / 2.0))[:, None]
        b_out = g("mlp.fc2.bias") * ls2
    return BlockWeights(_f32(w_qkv), _f32(b_qkv), _f32(w_proj), _f32(b_proj), _f32(w_in),
                        _f32(b_in), _f32(w_out), _f32(b_out))


def hash_update(digest: Any, name: str, array: NDArray[np.float32]) -> None:
    """Feed one canonical tensor (name, shape, little-endian float32 bytes) to `digest`."""
    digest.update(name.encode() + b"\0" + repr(tuple(array.shape)).encode() + b"\0")
    digest.update(np.ascontiguousarray(array, dtype="<f4").data)


def weights_sha256(canonical: Mapping[str, NDArray[np.float32]]) -> str:
    """SHA-256 over the canonical tensors in canonical order."""
    digest = hashlib.sha256()
    for name, array in canonical.items():
        hash_update(digest, name, array)
    return digest.hexdigest()


def release_mappings(arrays: Iterable[NDArray[Any]]) -> None:
    """Drop the resident pages of the files these arrays map (they are re-read if touched),
    so that building a model from a mapped file does not hold the file and the model at once.
    """
    seen: set[int] = set()
    for array in arrays:
        base: Any = array
        while base is not None and not isinstance(base, mmap.mmap):
            base = getattr(base, "base", None) if not isinstance(base, memoryview) else base.obj
        if isinstance(base, mmap.mmap) and id(base) not in seen and hasattr(base, "madvise"):
            seen.add(id(base))
            with contextlib.suppress(OSError, ValueError):
                base.madvise(mmap.MADV_DONTNEED)


def save_npz(canonical: Mapping[str, NDArray[np.float32]], path: str | Path) -> Path:
    """Write canonical tensors to an uncompressed .npz at exactly `path` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.float32)
                                      for k, v in canonical.items()}
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def random_canonical(config: Dinov2Config, seed: int = 0) -> dict[str, F32]:
    """Deterministic random canonical weights of `config`, none trivial: matrices scaled by
    1/sqrt(fan_in), biases and norms and layer scales drawn around their usual values, so
    that a swapped or misnamed tensor changes the output."""
    from services.embedding.engine.keymap import expected_shapes

    rng = np.random.default_rng(seed)
    out: dict[str, F32] = {}
    for name, shape in expected_shapes(config).items():
        noise = rng.standard_normal(shape, dtype=np.float32)
        if name.endswith(("norm1.weight", "norm2.weight")) or name == "norm.weight":
            array = 1.0 + 0.2 * noise
        elif name.endswith("gamma"):
            array = 0.3 + 0.1 * noise
        elif name.endswith("bias"):
            array = 0.1 * noise
        elif name in ("cls_token", "register_tokens", "pos_embed"):
            array = 0.5 * noise
        else:
            fan_in = int(np.prod(shape[1:]))
            array = noise * np.float32(1.0 / math.sqrt(fan_in))
        out[name] = array.astype(np.float32, copy=False)
    return out
