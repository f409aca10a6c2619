"""Engine behaviour: shapes, a failing thread, caching, outputs, bad input (the numbers of every
fast path are held to the reference forward in test_reference.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from services.embedding.engine import ARCHITECTURES, Dinov2Config, Dinov2Model
from services.embedding.engine.interpolate import bicubic_aa_matrix, bicubic_matrix
from tests.helpers.requirements import require_module

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


def test_a_failing_thread_stops_the_forward_without_hanging(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An error on one thread of the row split (here: the second thread's MLP) reaches the
    caller, the other thread is released from its wait, and the model keeps working."""
    model = Dinov2Model.random(SMALL, seed=3, threads=2)
    calls: list[str] = []
    original = Dinov2Model._mlp

    def failing(self: Dinov2Model, *args: object, **kwargs: object) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            calls.append("failed")
            raise MemoryError("no memory for the MLP")
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    try:
        monkeypatch.setattr(Dinov2Model, "_mlp", failing)
        with pytest.raises(MemoryError, match="no memory"):
            model.forward(_pixels(1, 56, 56))
        assert calls == ["failed"]
        monkeypatch.setattr(Dinov2Model, "_mlp", original)
        np.testing.assert_allclose(model.forward(_pixels(1, 56, 56)),
                                   Dinov2Model.random(SMALL, seed=3, threads=1).forward(
                                       _pixels(1, 56, 56)), atol=1e-5)
    finally:
        model.close()


def test_batch_rows_are_independent(small: Dinov2Model) -> None:
    pixels = _pixels(3, 56, 56)
    batch = small.forward(pixels)
    single = small.forward(pixels[1:2])
    np.testing.assert_allclose(batch[1:2], single, atol=1e-5)


def test_embed_outputs_are_normalised(small: Dinov2Model) -> None:
    result = small.embed(_pixels(2, 56, 84), patch_tokens=True)
    assert result.mean_pooled is not None and result.patch is not None
    assert result.cls.shape == (2, 128) and result.mean_pooled.shape == (2, 128)
    assert result.patch.shape == (2, 4, 6, 128)
    for arr in (result.cls, result.mean_pooled, result.patch):
        assert arr.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(arr, axis=-1), 1.0, rtol=1e-5)


def test_embed_computes_only_what_is_asked(small: Dinov2Model) -> None:
    """CLS alone by default (the CLS-only last block), the mean-pooled patches on request
    (without patch tokens), and the same CLS features every way."""
    pixels = _pixels(2, 56, 84)
    cls_only = small.embed(pixels)
    assert cls_only.mean_pooled is None and cls_only.patch is None
    pooled = small.embed(pixels, mean_pooled=True)
    assert pooled.mean_pooled is not None and pooled.patch is None
    full = small.embed(pixels, patch_tokens=True)
    np.testing.assert_allclose(cls_only.cls, full.cls, atol=1e-5)
    np.testing.assert_allclose(pooled.cls, full.cls, atol=1e-6)
    np.testing.assert_allclose(pooled.mean_pooled, full.mean_pooled, atol=1e-6)


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
    torch = require_module("torch")
    from services.embedding.engine.interpolate import resize_grid

    rng = np.random.default_rng(0)
    for antialias in (False, True):
        for g, oh, ow in [(37, 16, 16), (37, 16, 22), (16, 37, 37), (37, 25, 36), (5, 7, 3)]:
            grid = rng.standard_normal((g, g, 8)).astype(np.float32)
            ref = torch.nn.functional.interpolate(
                torch.from_numpy(grid).permute(2, 0, 1)[None], size=(oh, ow), mode="bicubic",
                align_corners=False, antialias=antialias)[0].permute(1, 2, 0).numpy()
            assert np.abs(resize_grid(grid, oh, ow, antialias=antialias) - ref).max() < 1e-5
