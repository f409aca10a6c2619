"""Engine behaviour without a reference: shapes, threads, caching, outputs, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from services.embedding.engine import ARCHITECTURES, Dinov2Config, Dinov2Model
from services.embedding.engine.interpolate import bicubic_aa_matrix, bicubic_matrix

SMALL = Dinov2Config("small", 128, 2, 2, "gelu", 512, num_registers=4, pos_grid=8)


@pytest.fixture(scope="module")
def small() -> Dinov2Model:
    model = Dinov2Model.random(SMALL, seed=3, threads=2)
    yield model
    model.close()


def _pixels(b: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(b * h + w).standard_normal((b, 3, h, w)).astype(np.float32)


def test_forward_shape_and_dtype(small: Dinov2Model) -> None:
    out = small.forward(_pixels(2, 70, 42))
    assert out.shape == (2, 1 + 4 + 5 * 3, 128) and out.dtype == np.float32


def test_thread_counts_agree(small: Dinov2Model) -> None:
    pixels = _pixels(3, 112, 84)
    one = Dinov2Model.random(SMALL, seed=3, threads=1)
    np.testing.assert_allclose(one.forward(pixels), small.forward(pixels), atol=1e-5)
    one.close()


SMALL_SWIGLU = Dinov2Config("small_sw", 128, 2, 2, "swiglu", 96, pos_grid=8)


@pytest.mark.parametrize("config", [SMALL, SMALL_SWIGLU], ids=["gelu", "swiglu"])
def test_thread_splits_agree(config: Dinov2Config) -> None:
    """Whole images per thread (batch a multiple of threads), weights split over threads
    (batch 1 or odd, including a head count and hidden width that do not divide evenly over
    3 threads) and one thread give the same hidden states."""
    models = {n: Dinov2Model.random(config, seed=5, threads=n) for n in (1, 2, 3)}
    try:
        for batch in (1, 2, 3, 4):
            pixels = _pixels(batch, 42, 56)
            one = models[1].forward(pixels)
            for n in (2, 3):
                np.testing.assert_allclose(models[n].forward(pixels), one, atol=1e-5)
    finally:
        for model in models.values():
            model.close()


def test_batch_rows_are_independent(small: Dinov2Model) -> None:
    pixels = _pixels(3, 56, 56)
    batch = small.forward(pixels)
    single = small.forward(pixels[1:2])
    np.testing.assert_allclose(batch[1:2], single, atol=1e-5)


def test_embed_outputs_are_normalised(small: Dinov2Model) -> None:
    result = small.embed(_pixels(2, 56, 84), patch_tokens=True)
    assert result.cls.shape == (2, 128) and result.mean_pooled.shape == (2, 128)
    assert result.patch is not None and result.patch.shape == (2, 4, 6, 128)
    for arr in (result.cls, result.mean_pooled, result.patch):
        assert arr.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(arr, axis=-1), 1.0, rtol=1e-5)
    assert small.embed(_pixels(1, 56, 56)).patch is None


def test_random_is_deterministic_and_seeded() -> None:
    a = Dinov2Model.random(SMALL, seed=3, threads=1)
    b = Dinov2Model.random(SMALL, seed=4, threads=1)
    assert a.model_id.startswith("small:") and a.model_id != b.model_id
    assert Dinov2Model.random(SMALL, seed=3, threads=1).weights_sha256 == a.weights_sha256


def test_position_grid_cached(small: Dinov2Model) -> None:
    small.forward(_pixels(1, 42, 56))
    first = small._positions(3, 4)
    assert small._positions(3, 4) is first


@pytest.mark.parametrize("shape", [(1, 3, 50, 56), (1, 1, 56, 56), (3, 56, 56), (0, 3, 56, 56)])
def test_bad_pixel_shapes_refused(small: Dinov2Model, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        small.forward(np.zeros(shape, dtype=np.float32))


def test_interpolation_rows_sum_to_one() -> None:
    for n_in, n_out in [(37, 16), (37, 25), (16, 37), (5, 5)]:
        np.testing.assert_allclose(bicubic_matrix(n_in, n_out).sum(1), 1.0, atol=1e-6)
        np.testing.assert_allclose(bicubic_aa_matrix(n_in, n_out).sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(bicubic_matrix(7, 7), np.eye(7), atol=1e-7)


def test_unknown_architecture() -> None:
    from services.embedding.engine import WeightsError

    with pytest.raises(WeightsError):
        Dinov2Model.random("dinov2_vitq14")
    assert set(ARCHITECTURES) >= {"dinov2_vitb14", "dinov2_vitg14_reg"}


def test_engine_imports_no_torch() -> None:
    code = ("import sys; import services.embedding.engine as e; "
            "e.Dinov2Model.random('dinov2_vits14', threads=1).embed("
            "__import__('numpy').zeros((1,3,28,28),'float32')); "
            "print('torch' in sys.modules or 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.torch
def test_interpolation_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    from services.embedding.engine.interpolate import resize_grid

    rng = np.random.default_rng(0)
    for antialias in (False, True):
        for g, oh, ow in [(37, 16, 16), (37, 16, 22), (16, 37, 37), (37, 25, 36), (5, 7, 3)]:
            grid = rng.standard_normal((g, g, 8)).astype(np.float32)
            ref = torch.nn.functional.interpolate(
                torch.from_numpy(grid).permute(2, 0, 1)[None], size=(oh, ow), mode="bicubic",
                align_corners=False, antialias=antialias)[0].permute(1, 2, 0).numpy()
            assert np.abs(resize_grid(grid, oh, ow, antialias=antialias) - ref).max() < 1e-5
