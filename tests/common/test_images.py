"""Decoding untrusted bytes: every hostile case is a stable 4xx code, every odd mode is RGB."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.common.images import (
    EmptyImage,
    ImageTooLarge,
    NotAnImage,
    PayloadTooLarge,
    TruncatedImage,
    decode_image,
)

LIMITS = {"max_bytes": 5_000_000, "max_pixels": 4_000_000}


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_rgb_jpeg_roundtrip() -> None:
    data = _encode(Image.new("RGB", (40, 30), (200, 10, 10)), "JPEG")
    image, info = decode_image(data, **LIMITS)
    assert image.mode == "RGB" and image.size == (40, 30)
    assert info.mime == "image/jpeg" and info.ext == "jpg"


def test_rgba_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    image, _ = decode_image(_encode(rgba), **LIMITS)
    assert np.asarray(image)[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16", "LA", "1"])
def test_modes_become_rgb(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode == "I;16" else "PNG"
    source = Image.new(mode, (10, 6))
    image, _ = decode_image(_encode(source, fmt), **LIMITS)
    assert image.mode == "RGB" and image.size == (10, 6)


def test_sixteen_bit_scales_to_eight() -> None:
    arr = np.full((4, 4), 65535, dtype=np.uint16)
    image, _ = decode_image(_encode(Image.fromarray(arr), "TIFF"), **LIMITS)
    assert np.asarray(image).min() == 255


def test_exif_orientation_is_applied() -> None:
    source = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image, info = decode_image(_encode(source, "JPEG", exif=exif), **LIMITS)
    assert image.size == (20, 40)
    assert (info.width, info.height) == (40, 20)


def test_empty() -> None:
    with pytest.raises(EmptyImage) as err:
        decode_image(b"", **LIMITS)
    assert err.value.code == "empty_image" and err.value.status == 400


def test_not_an_image() -> None:
    with pytest.raises(NotAnImage) as err:
        decode_image(b"%PDF-1.7 definitely not pixels", **LIMITS)
    assert err.value.code == "not_an_image" and err.value.status == 415


def test_truncated() -> None:
    data = _encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(TruncatedImage) as err:
        decode_image(data[: len(data) // 2], **LIMITS)
    assert err.value.code == "truncated_image"


def test_over_byte_limit() -> None:
    data = _encode(Image.new("RGB", (10, 10)))
    with pytest.raises(PayloadTooLarge) as err:
        decode_image(data, max_bytes=len(data) - 1, max_pixels=10**6)
    assert err.value.status == 413


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # A tiny PNG declaring 20000 x 20000 pixels: refused from the header alone.
    bomb = _encode(Image.new("1", (20000, 20000)))
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLarge) as err:
        decode_image(bomb, **LIMITS)
    assert err.value.code == "image_too_large" and err.value.status == 413
