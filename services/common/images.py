"""Decoding untrusted image bytes into RGB, safely.

Order of checks: size in bytes, header (format, dimensions) before any pixel is decoded, the
pixel limit (decompression bombs stop here), then the decode itself (truncation shows here).
EXIF orientation is applied; grayscale, palette, RGBA/LA (composited on white), CMYK and
16-bit images all become 8-bit RGB.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from services.common.errors import DomainError

# Formats a browser or camera produces; anything else is refused before decoding.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
MIME_BY_FORMAT = {
    "JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
    "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff",
}
EXT_BY_FORMAT = {
    "JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp",
    "TIFF": "tif",
}


class ImageError(DomainError):
    code = "invalid_image"
    status = 400


class EmptyImage(ImageError):
    code = "empty_image"


class NotAnImage(ImageError):
    code = "not_an_image"
    status = 415


class TruncatedImage(ImageError):
    code = "truncated_image"


class ImageTooLarge(ImageError):
    """More pixels than allowed (a decompression bomb lands here)."""

    code = "image_too_large"
    status = 413


class PayloadTooLarge(ImageError):
    code = "payload_too_large"
    status = 413


class ImageInfo:
    """What the header says: format, mime type, extension, width and height (before EXIF)."""

    __slots__ = ("ext", "format", "height", "mime", "width")

    def __init__(self, fmt: str, width: int, height: int) -> None:
        self.format = fmt
        self.mime = MIME_BY_FORMAT[fmt]
        self.ext = EXT_BY_FORMAT[fmt]
        self.width = width
        self.height = height


def probe_image(data: bytes, *, max_bytes: int, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    """Open `data` lazily and check bytes, format and pixel count; nothing is decoded yet."""
    if not data:
        raise EmptyImage("the image is empty (zero bytes)")
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"the image has {len(data)} bytes; the limit is {max_bytes}",
            detail={"bytes": len(data), "max_bytes": max_bytes},
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise NotAnImage("the data is not an image in a supported format") from exc
        raise ImageTooLarge("the image declares too many pixels") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise NotAnImage(f"the image header cannot be read: {exc}") from exc
    fmt = image.format or ""
    if fmt not in ALLOWED_FORMATS:
        raise NotAnImage(f"unsupported image format {fmt or 'unknown'}",
                         detail={"allowed": sorted(ALLOWED_FORMATS)})
    width, height = image.size
    if width <= 0 or height <= 0:
        raise NotAnImage("the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image has {width}x{height} pixels; the limit is {max_pixels} pixels",
            detail={"width": width, "height": height, "max_pixels": max_pixels},
        )
    return image, ImageInfo(fmt, width, height)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: alpha composited on white, 16-bit scaled, CMYK converted."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    """Untrusted bytes -> (8-bit RGB image with EXIF orientation applied, header info)."""
    image, info = probe_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    try:
        image.load()
        image = ImageOps.exif_transpose(image) or image
        rgb = to_rgb(image)
        rgb.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        message = str(exc)
        if "truncated" in message.lower() or isinstance(exc, EOFError):
            raise TruncatedImage("the image data is truncated") from exc
        raise TruncatedImage(f"the image cannot be decoded: {message}") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge("the image declares too many pixels") from exc
    return rgb, info
