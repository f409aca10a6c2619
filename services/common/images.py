"""Decoding untrusted image bytes into RGB, safely and within a memory budget.

Order of checks: size in bytes, header (format, dimensions) before any pixel is decoded, the
pixel limit (decompression bombs stop here), then the decode itself (truncation shows here).
EXIF orientation is applied; grayscale, palette, RGBA/LA (composited on white), CMYK and
16-bit images all become 8-bit RGB.

Memory: a small file can declare a huge image (a 35-byte GIF declares 6300x6300; a 77 KB PNG
of zeros is 6300x6300 at 16 bits). So:
- every decode first reserves its worst-case bytes from the process's `DecodeBudget`
  (`decode_budget_mb`, shared by all requests of the process): N concurrent hostile files
  wait for each other (503 after `decode_wait_s`) instead of adding up;
- a caller that needs only a small image (`min_side`: the embedding model sees 224 px) gets
  it reduced while decoding: JPEG decodes at 1/2, 1/4 or 1/8 scale (draft mode), any other
  format is box-reduced right after the decode, before any colour conversion;
- 16-bit and 32-bit pixels become 8-bit in blocks of rows, never as one float64 array.
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
from PIL import Image, UnidentifiedImageError

from services.common.errors import DomainError, Overloaded

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


# Bytes per pixel of each PIL mode as decoded (before any conversion).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "YCbCr": 3,
               "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "CMYK": 4, "RGBX": 4, "I": 4,
               "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_SIXTEEN = ("I;16", "I;16B", "I;16L", "I;16N")
# Rows converted at a time from 16/32 bits to 8 (bounds the temporary arrays).
_BLOCK_PIXELS = 1 << 20
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}


def decode_cost(info: ImageInfo, mode: str) -> int:
    """Worst-case bytes a decode of this image holds at once: the decoded pixels plus one
    RGBA-sized conversion of them (a palette or alpha image is converted before reducing)."""
    return info.width * info.height * (_MODE_BYTES.get(mode, 4) + 4)


class DecodeBudget:
    """Bytes of decoded pixels this process may hold at once, shared by every request.

    `reserve(n)` waits (at most `wait_s`) until `n` bytes are free; a single image needing
    more than the whole budget is refused (413), a budget busy past the wait is 503."""

    def __init__(self, total_bytes: int, wait_s: float, retry_after_s: int = 2) -> None:
        self.total = total_bytes
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, n: int) -> Iterator[None]:
        if n > self.total:
            raise ImageTooLarge(
                f"decoding this image needs about {n // 2**20} MB; the limit is "
                f"{self.total // 2**20} MB", detail={"decode_bytes": n,
                                                     "decode_budget_bytes": self.total})
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self.in_use + n > self.total:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    if self.in_use + n <= self.total:
                        break
                    raise Overloaded("too many large images are being decoded; retry shortly",
                                     code="decode_busy",
                                     headers={"Retry-After": str(self.retry_after_s)})
            self.in_use += n
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= n
                self._cond.notify_all()


@lru_cache(maxsize=1)
def decode_budget() -> DecodeBudget:
    """The process's budget, from `decode_budget_mb` and `decode_wait_s` (top-level keys)."""
    from services.common.settings import common_settings

    common = common_settings()
    return DecodeBudget(common.decode_budget_mb * 2**20, common.decode_wait_s)


def _to_eight_bits(image: Image.Image) -> Image.Image:
    """A 16-bit (I;16*), 32-bit integer (I) or float (F) image -> 8-bit L, block by block.
    16-bit spans 0..65535; I and F span 0..255 unless a value is above 255 (then 0..65535).
    Only one block of rows is ever copied out of the image (as float32)."""
    mode = image.mode
    width, height = image.size
    top = 65535.0
    if mode not in _SIXTEEN:
        high = image.getextrema()[1]
        top = 65535.0 if float(high) > 255 else 255.0  # type: ignore[arg-type]
    out = np.empty((height, width), dtype=np.uint8)
    rows = max(1, _BLOCK_PIXELS // max(1, width))
    scale = np.float32(255.0 / top)
    for start in range(0, height, rows):
        stop = min(height, start + rows)
        block = np.asarray(image.crop((0, start, width, stop)), dtype=np.float32)
        block *= scale
        block += np.float32(0.5)
        np.clip(block, 0, 255, out=block)
        out[start:stop] = block.astype(np.uint8)
    return Image.fromarray(out, mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: alpha composited on white, 16-bit scaled, CMYK converted."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in (*_SIXTEEN, "I", "F"):
        return _to_eight_bits(image).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


def _reduce(image: Image.Image, min_side: int) -> Image.Image:
    """Box-reduce by the largest integer factor that keeps the short side >= `min_side`."""
    factor = min(image.size) // min_side
    if factor < 2:
        return image
    if image.mode in (*_SIXTEEN, "I", "F"):
        image = _to_eight_bits(image)
    elif image.mode not in ("L", "RGB", "RGBA", "LA", "CMYK"):
        image = image.convert("RGBA" if "transparency" in image.info or "A" in image.mode
                              else "RGB")
    return image.reduce(factor)


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int, min_side: int | None = None,
                 budget: DecodeBudget | None = None) -> tuple[Image.Image, ImageInfo]:
    """Untrusted bytes -> (8-bit RGB image with EXIF orientation applied, header info).

    `min_side`: the caller needs no more than this many pixels on the short side; a larger
    image may come back reduced (by an integer factor, never below `min_side`). `budget`:
    the memory budget to decode within (default: the process's)."""
    image, info = probe_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    budget = budget or decode_budget()
    try:
        with budget.reserve(decode_cost(info, image.mode)):
            orientation = image.getexif().get(0x0112)
            if min_side and info.format in ("JPEG", "MPO"):
                image.draft(None, (min_side, min_side))  # DCT scaling: 1/2, 1/4, 1/8
            image.load()
            if min_side:
                image = _reduce(image, min_side)
            rgb = to_rgb(image)
            if orientation in _ORIENTATION:
                rgb = rgb.transpose(_ORIENTATION[orientation])
            rgb.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        message = str(exc)
        if "truncated" in message.lower() or isinstance(exc, EOFError):
            raise TruncatedImage("the image data is truncated") from exc
        raise TruncatedImage(f"the image cannot be decoded: {message}") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge("the image declares too many pixels") from exc
    return rgb, info
