"""Mask encodings, prompt checks and the byte-bounded LRU of the segmentation service."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from services.common.masks import decode_png, decode_rle, encode_png, encode_rle, mask_box
from services.common.storage import InvalidImageSha256, parse_sha256
from services.segmentation.forms import ALL_OUTPUTS, InvalidOutputs, parse_outputs
from services.segmentation.predictor.cache import ByteLRU
from services.segmentation.predictor.errors import InvalidPrompts
from services.segmentation.predictor.masks import decode_logits, encode_logits
from services.segmentation.predictor.prompts import check_prompts, parse_prompts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_png_and_rle_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((7, 11)) > 0.5
    assert (decode_png(encode_png(mask)) == mask).all()
    rle = encode_rle(mask)
    assert rle["size"] == [7, 11]
    assert sum(rle["counts"]) == 77
    assert (decode_rle(rle) == mask).all()


def test_rle_is_column_major_and_starts_with_zeros() -> None:
    mask = np.array([[1, 0], [1, 1]], bool)
    # Fortran order: 1, 1, 0, 1 -> zero 0s, two 1s, one 0, one 1
    assert encode_rle(mask)["counts"] == [0, 2, 1, 1]
    assert encode_rle(np.zeros((2, 3), bool))["counts"] == [6]


def _runs(mask: np.ndarray) -> list[int]:
    # The definition, pixel by pixel: column-major, alternating 0s and 1s, 0s first.
    counts, value, run = [], False, 0
    for pixel in mask.T.reshape(-1).tolist():
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return counts


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (48, 64), (37, 53)])
@pytest.mark.parametrize("density", [0.0, 0.02, 0.5, 0.98, 1.0])
def test_rle_matches_its_definition(shape: tuple[int, int], density: float) -> None:
    rng = np.random.default_rng(int(density * 100) + shape[0])
    mask = rng.random(shape) < density
    rle = encode_rle(mask)
    assert rle["counts"] == _runs(mask)
    assert all(type(c) is int for c in rle["counts"])  # plain ints: JSON as they are
    assert (decode_rle(rle) == mask).all()
    # A column-major (Fortran) array gives the same runs.
    assert encode_rle(np.asfortranarray(mask)) == rle


def test_png_is_8_bit_grayscale() -> None:
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    with Image.open(io.BytesIO(base64.b64decode(encode_png(mask)))) as png:
        assert png.mode == "L" and png.size == (7, 5)
        assert set(np.unique(np.asarray(png)).tolist()) == {0, 255}


def test_mask_box_has_exclusive_ends() -> None:
    mask = np.zeros((10, 20), bool)
    mask[2:5, 7:9] = True
    assert mask_box(mask) == [7, 2, 9, 5]
    assert mask_box(np.zeros((3, 3), bool)) is None


def test_logits_round_trip_and_refusals() -> None:
    logits = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    back = decode_logits(encode_logits(logits))
    assert back.shape == (1, 256, 256)
    np.testing.assert_array_equal(back[0], logits)
    with pytest.raises(InvalidPrompts):
        decode_logits(base64.b64encode(b"\0" * 12).decode())
    with pytest.raises(InvalidPrompts):
        decode_logits("%%%")


def _check(text: str, w: int = 64, h: int = 48) -> object:
    return check_prompts(parse_prompts(text), width=w, height=h, max_points=4)


@pytest.mark.parametrize("text", [
    None,
    "",
    "{}",
    '{"points": []}',
    "not json",
    "[1, 2]",
    '{"points": [{"x": 65, "y": 10, "label": 1}]}',
    '{"points": [{"x": -1, "y": 10, "label": 1}]}',
    '{"points": [{"x": 10, "y": 48.5, "label": 1}]}',
    '{"points": [{"x": 10, "y": 10, "label": 2}]}',
    '{"points": [{"x": 10, "y": 10, "label": -1}]}',
    '{"points": [{"x": 10, "y": 10}]}',
    '{"points": [{"x": NaN, "y": 10, "label": 1}]}',
    '{"points": [{"x": 10, "y": 10, "label": 0}]}',
    '{"box": [10, 10, 5, 20]}',
    '{"box": [10, 10, 20, 10]}',
    '{"box": [0, 0, 65, 20]}',
    '{"box": [0, 0, 20]}',
    '{"box": [1, 2, 3, 4], "extra": true}',
    '{"points": [' + ",".join(['{"x": 1, "y": 1, "label": 1}'] * 5) + "]}",
    '{"box": [1, 2, 3, 4], "mask_input_b64": "AAAA"}',
])
def test_invalid_prompts(text: str | None) -> None:
    with pytest.raises(InvalidPrompts) as info:
        check_prompts(parse_prompts(text), width=64, height=48, max_points=4)
    assert info.value.code == "invalid_prompts"
    assert info.value.status == 422


def test_valid_prompts_become_arrays() -> None:
    arrays = check_prompts(parse_prompts(
        '{"points": [{"x": 64, "y": 0, "label": 1}, {"x": 3.5, "y": 7, "label": 0}]}'),
        width=64, height=48, max_points=4)
    assert arrays.point_coords is not None and arrays.point_labels is not None
    assert arrays.point_coords.tolist() == [[64, 0], [3.5, 7]]
    assert arrays.point_labels.tolist() == [1, 0]
    assert arrays.box is None and not arrays.multimask
    one = check_prompts(parse_prompts('{"points": [{"x": 1, "y": 1, "label": 1}]}'),
                        width=64, height=48, max_points=4)
    assert one.multimask
    boxed = check_prompts(parse_prompts('{"box": [0, 0, 64, 48], "multimask": true}'),
                          width=64, height=48, max_points=4)
    assert boxed.box is not None and boxed.box.tolist() == [0, 0, 64, 48] and boxed.multimask


@dataclass(frozen=True)
class _Entry:
    nbytes: int


def test_lru_evicts_least_recently_used_by_bytes() -> None:
    cache: ByteLRU[_Entry] = ByteLRU(max_bytes=100)
    cache.put("a", _Entry(40))
    cache.put("b", _Entry(40))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", _Entry(40))  # 120 > 100: b goes
    assert "b" not in cache and "a" in cache and "c" in cache
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (2, 80, 1)
    cache.put("big", _Entry(101))  # larger than the budget: not kept, nothing evicted
    assert "big" not in cache and len(cache) == 2
    cache.put("a", _Entry(90))  # replacing an entry updates the byte count: c goes
    assert cache.stats().bytes == 90 and "c" not in cache
    assert cache.get("zz") is None
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)


def test_outputs_field() -> None:
    assert parse_outputs(None) == ALL_OUTPUTS
    assert parse_outputs("") == ALL_OUTPUTS  # an empty form field is an absent one
    assert parse_outputs("rle, low_res,") == {"rle", "low_res"}
    assert parse_outputs("none") == frozenset()
    for bad in ("mask", "png,jpeg", "none,png"):
        with pytest.raises(InvalidOutputs) as info:
            parse_outputs(bad)
        assert (info.value.code, info.value.status) == ("invalid_outputs", 422)


def test_sha256_field() -> None:
    digest = "ab" * 32
    assert parse_sha256(digest) == digest
    assert parse_sha256(digest.upper()) == digest
    for bad in ("", "ab" * 31, "ab" * 33, "g" * 64, digest + "\n", " " + digest[1:]):
        with pytest.raises(InvalidImageSha256) as info:
            parse_sha256(bad)
        assert (info.value.code, info.value.status) == ("invalid_image_sha256", 422)
