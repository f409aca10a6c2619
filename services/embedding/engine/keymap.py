"""The one explicit key map between checkpoint namings and our canonical names.

Canonical names are the official dinov2 ones (`blocks.N.attn.qkv.weight`, `ls1.gamma`, ...),
with fused QKV and, for SwiGLU, the fused `mlp.w12`. Each canonical tensor lists, per naming
scheme, the source key(s) it is built from; several sources are concatenated along axis 0
(Hugging Face's separate query/key/value, or gate/up projections). Every source key must be
consumed exactly once and every shape must match the architecture: a missing key, an extra
key or a wrong shape raises `WeightsError` naming it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.embedding.engine.config import ARCHITECTURES, Dinov2Config
from services.embedding.engine.errors import WeightsError

Sources = tuple[str, ...]

# (canonical name, HF alternatives: each a tuple of keys concatenated along axis 0).
# Alternatives in order of preference: the on-disk names of the published HF checkpoints,
# then the names of transformers' modules (q_proj/k_proj/v_proj/o_proj, gate/up/down_proj).
TOP_MAP: list[tuple[str, list[Sources]]] = [
    ("cls_token", [("embeddings.cls_token",)]),
    ("register_tokens", [("embeddings.register_tokens",)]),
    ("pos_embed", [("embeddings.position_embeddings",)]),
    ("patch_embed.proj.weight", [("embeddings.patch_embeddings.projection.weight",)]),
    ("patch_embed.proj.bias", [("embeddings.patch_embeddings.projection.bias",)]),
    ("norm.weight", [("layernorm.weight",)]),
    ("norm.bias", [("layernorm.bias",)]),
]
BLOCK_MAP: list[tuple[str, list[Sources]]] = [
    ("norm1.weight", [("norm1.weight",)]),
    ("norm1.bias", [("norm1.bias",)]),
    ("attn.qkv.weight", [
        ("attention.attention.query.weight", "attention.attention.key.weight",
         "attention.attention.value.weight"),
        ("attention.q_proj.weight", "attention.k_proj.weight", "attention.v_proj.weight"),
    ]),
    ("attn.qkv.bias", [
        ("attention.attention.query.bias", "attention.attention.key.bias",
         "attention.attention.value.bias"),
        ("attention.q_proj.bias", "attention.k_proj.bias", "attention.v_proj.bias"),
    ]),
    ("attn.proj.weight", [("attention.output.dense.weight",), ("attention.o_proj.weight",)]),
    ("attn.proj.bias", [("attention.output.dense.bias",), ("attention.o_proj.bias",)]),
    ("ls1.gamma", [("layer_scale1.lambda1",)]),
    ("norm2.weight", [("norm2.weight",)]),
    ("norm2.bias", [("norm2.bias",)]),
    ("mlp.fc1.weight", [("mlp.fc1.weight",)]),
    ("mlp.fc1.bias", [("mlp.fc1.bias",)]),
    ("mlp.fc2.weight", [("mlp.fc2.weight",)]),
    ("mlp.fc2.bias", [("mlp.fc2.bias",)]),
    ("mlp.w12.weight", [("mlp.weights_in.weight",),
                        ("mlp.gate_proj.weight", "mlp.up_proj.weight")]),
    ("mlp.w12.bias", [("mlp.weights_in.bias",), ("mlp.gate_proj.bias", "mlp.up_proj.bias")]),
    ("mlp.w3.weight", [("mlp.weights_out.weight",), ("mlp.down_proj.weight",)]),
    ("mlp.w3.bias", [("mlp.weights_out.bias",), ("mlp.down_proj.bias",)]),
    ("ls2.gamma", [("layer_scale2.lambda1",)]),
]
# Present in checkpoints, unused at inference: accepted and dropped.
IGNORED_CANONICAL = ("mask_token",)
IGNORED_HF = ("embeddings.mask_token",)

_HF_PREFIXES = ("dinov2.", "model.")
_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.")


def expected_shapes(config: Dinov2Config) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape, in canonical order (the order the weights hash follows)."""
    d, h, p = config.dim, config.mlp_hidden, config.patch_size
    shapes: dict[str, tuple[int, ...]] = {"cls_token": (1, 1, d)}
    if config.num_registers:
        shapes["register_tokens"] = (1, config.num_registers, d)
    shapes["pos_embed"] = (1, 1 + config.pos_grid**2, d)
    shapes["patch_embed.proj.weight"] = (d, 3, p, p)
    shapes["patch_embed.proj.bias"] = (d,)
    for i in range(config.depth):
        b = f"blocks.{i}."
        shapes[b + "norm1.weight"] = (d,)
        shapes[b + "norm1.bias"] = (d,)
        shapes[b + "attn.qkv.weight"] = (3 * d, d)
        shapes[b + "attn.qkv.bias"] = (3 * d,)
        shapes[b + "attn.proj.weight"] = (d, d)
        shapes[b + "attn.proj.bias"] = (d,)
        if config.layerscale:
            shapes[b + "ls1.gamma"] = (d,)
        shapes[b + "norm2.weight"] = (d,)
        shapes[b + "norm2.bias"] = (d,)
        if config.mlp == "swiglu":
            shapes[b + "mlp.w12.weight"] = (2 * h, d)
            shapes[b + "mlp.w12.bias"] = (2 * h,)
            shapes[b + "mlp.w3.weight"] = (d, h)
            shapes[b + "mlp.w3.bias"] = (d,)
        else:
            shapes[b + "mlp.fc1.weight"] = (h, d)
            shapes[b + "mlp.fc1.bias"] = (h,)
            shapes[b + "mlp.fc2.weight"] = (d, h)
            shapes[b + "mlp.fc2.bias"] = (d,)
        if config.layerscale:
            shapes[b + "ls2.gamma"] = (d,)
    shapes["norm.weight"] = (d,)
    shapes["norm.bias"] = (d,)
    return shapes


def _hf_alternatives(canonical: str) -> list[Sources]:
    """HF source alternatives of one canonical name (block index substituted)."""
    match = re.match(r"^blocks\.(\d+)\.(.+)$", canonical)
    if match is None:
        return next(alts for name, alts in TOP_MAP if name == canonical)
    index, rest = match.groups()
    alts = next(alts for name, alts in BLOCK_MAP if name == rest)
    return [tuple(f"encoder.layer.{index}.{key}" for key in alt) for alt in alts]


def _normalise_keys(state: Mapping[str, NDArray[Any]]) -> tuple[str, dict[str, NDArray[Any]]]:
    """Detect the naming scheme ("hf" or "dinov2") and strip wrappers (`dinov2.` prefix,
    chunked `blocks.<chunk>.<i>`)."""
    keys = list(state)
    if any(k.startswith("embeddings.") or k.startswith("encoder.layer.") for k in keys) or any(
        k.startswith(p + "embeddings.") for p in _HF_PREFIXES for k in keys
    ):
        out: dict[str, NDArray[Any]] = {}
        for key, value in state.items():
            for prefix in _HF_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    break
            out[key] = value
        return "hf", out
    if "cls_token" in state or any(k.startswith("blocks.") for k in keys):
        return "dinov2", {_CHUNKED_BLOCK.sub(r"blocks.\1.", k): v for k, v in state.items()}
    raise WeightsError("the weights use no known DINOv2 naming (expected `cls_token` or "
                       "`embeddings.cls_token`)", detail={"keys": keys[:5]})


def _get(state: Mapping[str, NDArray[Any]], key: str) -> NDArray[Any]:
    if key not in state:
        raise WeightsError(f"missing key {key}", detail={"key": key})
    return state[key]


def infer_config(state: Mapping[str, NDArray[Any]]) -> Dinov2Config:
    """The architecture of a (any-scheme) state dict, from its keys and shapes."""
    scheme, st = _normalise_keys(state)
    hf = scheme == "hf"
    cls = _get(st, "embeddings.cls_token" if hf else "cls_token")
    pos = _get(st, "embeddings.position_embeddings" if hf else "pos_embed")
    patch = _get(st, "embeddings.patch_embeddings.projection.weight" if hf
                 else "patch_embed.proj.weight")
    dim = int(cls.shape[-1])
    block_re = re.compile(r"^encoder\.layer\.(\d+)\." if hf else r"^blocks\.(\d+)\.")
    indices = {int(m.group(1)) for k in st if (m := block_re.match(k))}
    depth = max(indices) + 1 if indices else 0
    if depth == 0:
        raise WeightsError("the weights hold no transformer blocks",
                           detail={"key": "encoder.layer.0" if hf else "blocks.0"})
    b0 = "encoder.layer.0." if hf else "blocks.0."
    swiglu_keys = ("mlp.weights_in.weight", "mlp.gate_proj.weight", "mlp.w12.weight")
    if any(b0 + k in st for k in swiglu_keys):
        mlp = "swiglu"
        if b0 + "mlp.gate_proj.weight" in st:
            hidden = int(st[b0 + "mlp.gate_proj.weight"].shape[0])
        else:
            key = b0 + ("mlp.weights_in.weight" if hf else "mlp.w12.weight")
            hidden = int(_get(st, key).shape[0]) // 2
    else:
        mlp = "gelu"
        hidden = int(_get(st, b0 + "mlp.fc1.weight").shape[0])
    reg_key = "embeddings.register_tokens" if hf else "register_tokens"
    registers = int(st[reg_key].shape[1]) if reg_key in st and st[reg_key].ndim == 3 else 0
    layerscale = (b0 + ("layer_scale1.lambda1" if hf else "ls1.gamma")) in st
    positions = int(pos.shape[1]) - 1 if pos.ndim == 3 else -1
    grid = round(max(positions, 0) ** 0.5)
    if grid * grid != positions:
        raise WeightsError(f"position embeddings of shape {tuple(pos.shape)} are not a square "
                           "grid plus a class token", detail={"key": "pos_embed"})
    if dim % 64:
        raise WeightsError(f"width {dim} is not a multiple of the 64-wide DINOv2 heads",
                           detail={"key": "cls_token"})
    patch_size = int(patch.shape[-1]) if patch.ndim == 4 else 14
    for name, arch in ARCHITECTURES.items():
        if (arch.dim, arch.depth, arch.mlp, arch.mlp_hidden, arch.num_registers) == (
                dim, depth, mlp, hidden, registers) and arch.patch_size == patch_size:
            return dataclasses.replace(arch, pos_grid=grid, layerscale=layerscale, name=name)
    name = f"dinov2_custom_d{dim}_l{depth}_{mlp}" + (f"_reg{registers}" if registers else "")
    return Dinov2Config(name, dim, depth, dim // 64, mlp, hidden, patch_size=patch_size,  # type: ignore[arg-type]
                        num_registers=registers, layerscale=layerscale, pos_grid=grid)


def iter_canonical(
    state: Mapping[str, NDArray[Any]], config: Dinov2Config | None = None
) -> tuple[Dinov2Config, Iterator[tuple[str, NDArray[np.float32]]]]:
    """Like `to_canonical`, but yields (name, array) lazily in canonical order, so a caller
    can fold and drop each tensor (fused QKV copies included) before the next is built.
    The architecture is checked up front; key and shape errors raise while iterating, and
    unexpected keys are reported once the last tensor has been yielded."""
    inferred = infer_config(state)
    config = inferred if config is None else dataclasses.replace(config,
                                                                 pos_grid=inferred.pos_grid)
    scheme, st = _normalise_keys(state)
    shapes = expected_shapes(config)

    def generate() -> Iterator[tuple[str, NDArray[np.float32]]]:
        used: set[str] = set()
        for name, shape in shapes.items():
            if scheme == "dinov2":
                array = _get(st, name)
                used.add(name)
            else:
                alts = _hf_alternatives(name)
                chosen = next((alt for alt in alts if all(k in st for k in alt)), None)
                if chosen is None:
                    missing = next(k for k in alts[0] if k not in st)
                    raise WeightsError(f"missing key {missing} (for {name})",
                                       detail={"key": missing, "canonical": name})
                used.update(chosen)
                parts = [st[k] for k in chosen]
                if any(tuple(part.shape[1:]) != shape[1:] for part in parts):
                    bad = next(k for k, part in zip(chosen, parts, strict=True)
                               if tuple(part.shape[1:]) != shape[1:])
                    raise WeightsError(f"key {bad} has shape {tuple(st[bad].shape)}, which "
                                       f"does not fit {name} {shape} of {config.name}",
                                       detail={"key": bad, "shape": list(st[bad].shape)})
                array = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
            if tuple(array.shape) != shape:
                raise WeightsError(
                    f"key {name} has shape {tuple(array.shape)}, expected {shape} for "
                    f"{config.name}",
                    detail={"key": name, "shape": list(array.shape), "expected": list(shape)},
                )
            yield name, np.asarray(array, dtype=np.float32)
        ignored = IGNORED_HF if scheme == "hf" else IGNORED_CANONICAL
        extra = sorted(k for k in st if k not in used and k not in ignored)
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise WeightsError(f"unexpected key {extra[0]}{more}",
                               detail={"key": extra[0], "unexpected": extra[:20]})

    return config, generate()


def to_canonical(
    state: Mapping[str, NDArray[Any]], config: Dinov2Config | None = None
) -> tuple[Dinov2Config, dict[str, NDArray[np.float32]]]:
    """Any-scheme state dict -> (architecture, {canonical name: float32 array}).

    With `config` given, the weights must match it (except the position grid, which is read
    from the weights); otherwise it is inferred. Checks the key count and every shape.
    """
    config, items = iter_canonical(state, config)
    return config, dict(items)


def to_hf(canonical: Mapping[str, NDArray[np.float32]], config: Dinov2Config,
          *, naming: str = "disk") -> dict[str, NDArray[np.float32]]:
    """Canonical -> Hugging Face names: `naming="disk"` (published checkpoints:
    attention.attention.query, mlp.weights_in) or `"modules"` (q_proj, gate_proj)."""
    choice = 0 if naming == "disk" else 1
    out: dict[str, NDArray[np.float32]] = {}
    for name, array in canonical.items():
        alts = _hf_alternatives(name)
        keys = alts[min(choice, len(alts) - 1)]
        if len(keys) == 1:
            out[keys[0]] = array
        else:
            for key, part in zip(keys, np.split(array, len(keys), axis=0), strict=True):
                out[key] = np.ascontiguousarray(part)
    return out
