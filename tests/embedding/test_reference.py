"""Every fast path of the engine against the plain reference forward (reference.py), no torch.

The reference computes in float64 from the checkpoint's own tensors; the engine in float32
from folded, reordered ones, split over threads in two ways, with the last block for the CLS
token alone, the MLP in row chunks, attention in groups of heads and the softmax with or
without its max subtraction. Each of those is compared here. (The reference itself is held
to transformers in test_engine_exactness.py.)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from services.embedding.engine import ARCHITECTURES, Dinov2Config, Dinov2Model, reference
from services.embedding.engine.weights import random_canonical

# float32 against float64: observed 1e-6 to 3e-6 on every path and config below
MAX_ABS = 2e-5

GELU_REG = Dinov2Config("gelu_reg", 128, 2, 2, "gelu", 512, num_registers=4, pos_grid=8)
SWIGLU = Dinov2Config("swiglu", 128, 2, 2, "swiglu", 96, pos_grid=8)
NO_LAYERSCALE = Dinov2Config("no_ls", 64, 3, 1, "gelu", 256, layerscale=False, pos_grid=6)
CONFIGS = [GELU_REG, SWIGLU, NO_LAYERSCALE]


def _pixels(b: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, 3, h, w)).astype(np.float32)


def _model(config: Dinov2Config, state: dict[str, np.ndarray], threads: int) -> Dinov2Model:
    return Dinov2Model.from_canonical(config, state, source=lambda: state, threads=threads)


def _check(got: np.ndarray, expected: np.ndarray, bound: float = MAX_ABS) -> None:
    assert got.shape == expected.shape and got.dtype == np.float32
    assert float(np.abs(expected).max()) > 1.0  # not a trivially small output
    diff = float(np.abs(got - expected).max())
    assert diff <= bound, f"max abs difference {diff:.3g}"


@pytest.fixture
def models(request: pytest.FixtureRequest) -> Iterator[dict[int, Dinov2Model]]:
    config: Dinov2Config = request.param
    state = random_canonical(config, seed=11)
    made = {n: _model(config, state, n) for n in (1, 2, 3)}
    yield made
    for model in made.values():
        model.close()


# (batch, threads): whole images on one thread; whole images per thread (batch a multiple of
# threads); rows split over the threads: one image, ranges crossing from one image to the
# next, uneven ranges over three threads
SPLITS = [(1, 1), (2, 1), (2, 2), (4, 2), (1, 2), (3, 2), (1, 3), (2, 3)]


@pytest.mark.parametrize("models", CONFIGS, ids=[c.name for c in CONFIGS], indirect=True)
def test_every_thread_split_matches_the_reference(models: dict[int, Dinov2Model]) -> None:
    config = models[1].config
    state = models[1].state_dict()
    for size in ((42, 56), (56, 56)):  # a grid other than the trained one, and a square one
        pixels = _pixels(4, *size, seed=size[0])
        expected = reference.forward(state, config, pixels).astype(np.float32)
        for batch, threads in SPLITS:
            model = models[threads]
            _check(model.forward(pixels[:batch]), expected[:batch])
            # the last block for the CLS token alone (the service's default request)
            _check(model.forward_cls(pixels[:batch]), expected[:batch, 0])


def test_mlp_row_chunks_and_head_groups_match_the_reference() -> None:
    """Row chunks of the MLP smaller than a thread's rows, and one head per group of scores
    (as at 518x518), on both thread splits."""
    config = Dinov2Config("chunks", 128, 2, 4, "gelu", 256, num_registers=4, pos_grid=8)
    state = random_canonical(config, seed=12)
    pixels = _pixels(2, 56, 70, seed=3)
    expected = reference.forward(state, config, pixels).astype(np.float32)
    for threads in (1, 2):
        model = Dinov2Model.from_canonical(config, state, source=lambda: state, threads=threads)
        model.mlp_rows = 7
        model.attention_bytes = 4 * 30 * 25  # fewer bytes than one head's scores: one a group
        try:
            _check(model.forward(pixels), expected)
            _check(model.forward(pixels[:1]), expected[:1])
        finally:
            model.close()


def test_large_attention_scores_match_the_reference() -> None:
    """Query weights large enough that exp(q.k) would overflow float32: the softmax takes its
    max subtraction (random weights otherwise skip it) and still matches, to the bound held
    against transformers: float32 scores of several hundred carry rounding errors of 1e-5."""
    config = GELU_REG
    state = random_canonical(config, seed=13)
    d = config.dim
    for i in range(config.depth):
        state[f"blocks.{i}.attn.qkv.weight"][:d] *= 40.0
    pixels = _pixels(2, 56, 56, seed=4)
    expected = reference.forward(state, config, pixels).astype(np.float32)
    for threads in (1, 2):
        model = _model(config, state, threads)
        try:
            _check(model.forward(pixels), expected, 1e-4)
            _check(model.forward(pixels[:1]), expected[:1], 1e-4)
            _check(model.forward_cls(pixels), expected[:, 0], 1e-4)
        finally:
            model.close()


def test_embed_features_match_the_reference() -> None:
    config = GELU_REG
    state = random_canonical(config, seed=14)
    model = _model(config, state, 2)
    pixels = _pixels(2, 42, 70, seed=5)
    hidden = reference.forward(state, config, pixels)
    result = model.embed(pixels, patch_tokens=True)
    cls_only = model.embed(pixels)
    model.close()

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    patches = hidden[:, 1 + config.num_registers:]
    assert np.abs(result.cls - unit(hidden[:, 0])).max() < 1e-5
    assert np.abs(cls_only.cls - unit(hidden[:, 0])).max() < 1e-5
    assert result.mean_pooled is not None and result.patch is not None
    assert np.abs(result.mean_pooled - unit(patches.mean(1))).max() < 1e-5
    assert np.abs(result.patch - unit(patches).reshape(2, 3, 5, -1)).max() < 1e-5


@pytest.mark.parametrize("arch", ["dinov2_vits14", "dinov2_vits14_reg"])
def test_released_sizes_match_the_reference(arch: str) -> None:
    """Real widths, depths and token counts (224x224: 257 tokens; 224x308 with registers),
    whole images per thread and the row split."""
    config = ARCHITECTURES[arch]
    state = random_canonical(config, seed=15)
    size = (224, 224) if config.num_registers == 0 else (224, 308)
    pixels = _pixels(2, *size, seed=6)
    expected = reference.forward(state, config, pixels).astype(np.float32)
    model = _model(config, state, 2)
    try:
        _check(model.forward(pixels), expected)
        _check(model.forward(pixels[1:]), expected[1:])
        _check(model.forward_cls(pixels), expected[:, 0])
    finally:
        model.close()


def test_reference_block_is_the_residual_stream_when_its_branches_are_off() -> None:
    """A check of the reference on its own: with both LayerScales zero a block passes x
    through unchanged, and with the MLP's output zero it adds exactly LS1 * attention."""
    cfg = Dinov2Config("ls", 64, 1, 1, "gelu", 256, pos_grid=6)
    w = {k[len("blocks.0."):]: v.astype(np.float64)
         for k, v in random_canonical(cfg, seed=16).items() if k.startswith("blocks.0.")}
    x = np.random.default_rng(7).standard_normal((2, 5, 64))
    off = dict(w, **{"ls1.gamma": np.zeros(64), "ls2.gamma": np.zeros(64)})
    np.testing.assert_array_equal(reference.block(x, off, cfg), x)
    mlp_off = dict(w, **{"mlp.fc2.weight": np.zeros((64, 256)), "mlp.fc2.bias": np.zeros(64)})
    ln = reference.layer_norm(x, w["norm1.weight"], w["norm1.bias"], 1e-6)
    np.testing.assert_allclose(reference.block(x, mlp_off, cfg),
                               x + w["ls1.gamma"] * reference.attention(ln, w, cfg), atol=1e-12)
    # the exact GELU: x Phi(x), Phi(1) = 0.8413447460685429
    assert abs(float(reference.gelu(np.array([1.0]))[0]) - 0.8413447460685429) < 1e-15
