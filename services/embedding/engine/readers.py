"""Reading weights files into {name: array}: safetensors, torch zip (.pth/.pt), NumPy .npz.

No torch at run time. safetensors and .pth are memory-mapped: arrays are read-only views of
the file, so a model built from them copies each tensor once and the mapping can be dropped.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.embedding.engine.errors import WeightsError
from services.embedding.engine.pth import read_pth

_ST_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100_000_000


def read_safetensors(path: Path) -> dict[str, NDArray[Any]]:
    """A .safetensors file -> {name: array} (views of the mapped file; BF16 becomes float32)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path.name} is too short to be a safetensors file")
        (size,) = struct.unpack("<Q", head)
        if size > _MAX_HEADER:
            raise WeightsError(f"{path.name}: implausible safetensors header size {size}")
        try:
            header = json.loads(handle.read(size))
        except (ValueError, UnicodeDecodeError) as exc:
            raise WeightsError(f"{path.name}: unreadable safetensors header") from exc
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if not isinstance(header, dict):
        raise WeightsError(f"{path.name}: unreadable safetensors header")
    base = 8 + size
    out: dict[str, NDArray[Any]] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _ST_DTYPES[meta["dtype"]]
            shape = tuple(int(n) for n in meta["shape"])
            begin, end = (int(n) for n in meta["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{path.name}: bad header entry for {name!r}",
                               detail={"key": name}) from exc
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * dtype.itemsize or base + end > len(mm) or begin < 0:
            raise WeightsError(f"{path.name}: tensor {name!r} does not fit its byte range",
                               detail={"key": name})
        array = np.frombuffer(mm, dtype=dtype, count=count, offset=base + begin).reshape(shape)
        if meta["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        out[name] = array
    return out


def read_npz(path: Path) -> dict[str, NDArray[Any]]:
    """A NumPy .npz archive -> {name: array} (pickled objects refused)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as exc:
        raise WeightsError(f"{path.name}: {exc}") from exc
    except OSError as exc:
        raise WeightsError(f"{path.name} is not a readable .npz file: {exc}") from exc


def read_state_dict(path: str | Path) -> dict[str, NDArray[Any]]:
    """Any supported weights file -> {name: array}, by extension (.safetensors, .pth, .pt, .npz)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}", code="weights_not_found", status=404)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(path)
    if suffix in (".pth", ".pt"):
        return read_pth(path)
    if suffix == ".npz":
        return read_npz(path)
    raise WeightsError(f"unsupported weights format {suffix or '(none)'}: use .safetensors, "
                       ".pth, .pt or .npz")
