"""Decoding within a memory budget: hostile headers, 16-bit pixels, reduce on decode."""

from __future__ import annotations

import io
import struct
import threading
import time

import numpy as np
import pytest
from PIL import Image

from services.common.errors import Overloaded
from services.common.images import (
    DecodeBudget,
    ImageTooLarge,
    TruncatedImage,
    _to_eight_bits,
    decode_cost,
    decode_image,
    probe_image,
)

BIG = 1 << 30


def tiny_gif(width: int = 6300, height: int = 6300) -> bytes:
    """A 35-byte GIF declaring width x height pixels (one LZW clear + end code)."""
    header = b"GIF89a" + struct.pack("<HH", width, height) + b"\x80\x00\x00"
    palette = b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00"
    data = b"\x02\x02\x4c\x01\x00"
    return header + palette + image + data + b"\x3b"


def png16(width: int, height: int, value: int = 0) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width), value, dtype=np.uint16)).save(out, format="PNG")
    return out.getvalue()


def test_the_tiny_gif_declares_forty_megapixels() -> None:
    data = tiny_gif()
    assert len(data) == 35
    image, info = probe_image(data, max_bytes=100, max_pixels=50_000_000)
    assert (info.width, info.height, image.mode) == (6300, 6300, "P")


def test_an_image_over_the_whole_budget_is_refused_before_decoding() -> None:
    budget = DecodeBudget(64 * 2**20, wait_s=1)
    with pytest.raises(ImageTooLarge) as err:
        decode_image(tiny_gif(), max_bytes=100, max_pixels=50_000_000, budget=budget)
    assert err.value.status == 413 and err.value.detail["decode_budget_bytes"] == 64 * 2**20
    assert budget.in_use == 0


def test_concurrent_decodes_wait_for_room_then_get_503() -> None:
    budget = DecodeBudget(100, wait_s=0.3)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with budget.reserve(80):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    start = time.monotonic()
    with pytest.raises(Overloaded) as err, budget.reserve(40):
        pass
    assert time.monotonic() - start >= 0.25
    assert err.value.code == "decode_busy" and err.value.headers == {"Retry-After": "2"}
    release.set()
    thread.join()
    with budget.reserve(100):
        assert budget.in_use == 100
    assert budget.in_use == 0


def test_sixteen_bit_becomes_eight_bit_like_the_float_formula() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, size=(37, 53), dtype=np.uint16)
    got = np.asarray(_to_eight_bits(Image.fromarray(arr)))
    expected = np.clip(arr / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert (got == expected).mean() > 0.99


def test_reduce_on_decode_keeps_the_short_side_at_least_min_side() -> None:
    budget = DecodeBudget(BIG, wait_s=1)
    rgb, info = decode_image(png16(4000, 3000, 65535), max_bytes=BIG, max_pixels=BIG,
                             min_side=896, budget=budget)
    assert (info.width, info.height) == (4000, 3000)
    assert rgb.mode == "RGB" and min(rgb.size) >= 896 and rgb.size == (1334, 1000)
    assert np.asarray(rgb).min() == 255
    jpeg = io.BytesIO()
    Image.new("RGB", (4000, 3000), (200, 30, 30)).save(jpeg, format="JPEG")
    rgb, _ = decode_image(jpeg.getvalue(), max_bytes=BIG, max_pixels=BIG, min_side=896,
                          budget=budget)
    assert rgb.size == (2000, 1500)  # DCT-scaled to 1/2 (1/4 would go under 896)
    small, _ = decode_image(png16(300, 200), max_bytes=BIG, max_pixels=BIG, min_side=896,
                            budget=budget)
    assert small.size == (300, 200)  # never enlarged, never reduced below min_side


def test_the_tiny_gif_within_budget_is_a_clean_400_and_the_budget_is_returned() -> None:
    budget = DecodeBudget(512 * 2**20, wait_s=1)
    info = probe_image(tiny_gif(), max_bytes=100, max_pixels=50_000_000)[1]
    assert decode_cost(info, "P") == 6300 * 6300 * 5
    with pytest.raises(TruncatedImage) as err:
        decode_image(tiny_gif(), max_bytes=100, max_pixels=50_000_000, min_side=896,
                     budget=budget)
    assert err.value.status == 400
    assert budget.in_use == 0
