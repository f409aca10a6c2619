"""Small files that declare huge images, and the peak memory they cost a running service.

`png16_zeros()` is a 16-bit 6300x6300 PNG of zeros (~80 KB, 79 MB of pixels at 16 bits);
`gif_bomb()` a 35-byte GIF declaring 6300x6300. `hammer()` sends them concurrently to the
gateway's search routes; `peak_rss_mb()` reads a process's high-water mark (VmHWM), so no
sampling can miss the peak.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

SIDE = 6300


def png16_zeros(side: int = SIDE) -> bytes:
    """A 16-bit grayscale PNG of zeros, written row by row (never the whole image in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)  # 16-bit grayscale
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 2 * side)  # filter byte + the row's pixels
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


def gif_bomb(side: int = SIDE) -> bytes:
    """A 35-byte GIF declaring side x side pixels (one LZW clear code, then the end)."""
    header = b"GIF89a" + struct.pack("<HH", side, side) + b"\x80\x00\x00"
    palette = b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHH", 0, 0, side, side) + b"\x00"
    return header + palette + image + b"\x02\x02\x4c\x01\x00" + b"\x3b"


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def hammer(url: str, requests: Iterable[tuple[str, str, bytes]], concurrency: int = 8
           ) -> list[int]:
    """POST each (path, filename, bytes) as a multipart `file`, `concurrency` at a time;
    the status codes."""
    def one(item: tuple[str, str, bytes]) -> int:
        path, name, data = item
        response = httpx.post(url + path, files={"file": (name, data)}, timeout=300)
        return response.status_code

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, list(requests)))
