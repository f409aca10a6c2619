"""Reading a PyTorch `.pth`/`.pt` state dict without PyTorch.

`torch.save` writes a zip: `<root>/data.pkl` (a pickle naming tensors) and `<root>/data/<key>`
(one raw storage each). The pickle is untrusted code, so it is read by an unpickler whose
`find_class` knows only the handful of globals a state dict needs and maps them to NumPy;
any other global is refused. Storages are mapped from the file, not copied.
"""

from __future__ import annotations

import mmap
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.embedding.engine.errors import WeightsError

# torch storage class name -> NumPy dtype of its elements (bfloat16 read as raw uint16).
_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "DoubleStorage": np.dtype("<f8"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    __slots__ = ("dtype", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    __slots__ = ("bf16", "data")

    def __init__(self, data: NDArray[Any], bf16: bool) -> None:
        self.data = data
        self.bf16 = bf16


def _bf16_to_f32(raw: NDArray[Any]) -> NDArray[np.float32]:
    out: NDArray[np.float32] = (raw.astype(np.uint32) << 16).view(np.float32)
    return out


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *_: Any) -> NDArray[Any]:
    data = storage.data
    item = data.itemsize
    needed = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(
        size) else offset
    if needed > data.size:
        raise WeightsError("a tensor reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(
        data[offset:], shape=tuple(size), strides=tuple(s * item for s in stride), writeable=False
    )
    if storage.bf16:
        return _bf16_to_f32(view)
    return view


def _rebuild_parameter(data: NDArray[Any], *_: Any) -> NDArray[Any]:
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, storages: dict[str, NDArray[np.uint8]]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        found = _ALLOWED.get((module, name))
        if found is None:
            raise WeightsError(f"refused to load the global {module}.{name} from a .pth file: "
                               "only tensors and dicts are allowed",
                               detail={"global": f"{module}.{name}"})
        return found

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise WeightsError(f"unsupported persistent id in .pth: {pid!r:.80}")
        kind, key = pid[1], str(pid[2])
        raw = self._storages.get(key)
        if raw is None:
            raise WeightsError(f"the .pth file lacks storage {key}")
        usable = raw.size - raw.size % kind.dtype.itemsize
        return _Storage(raw[:usable].view(kind.dtype), kind.name == "BFloat16Storage")


def _member_data(mm: mmap.mmap, info: zipfile.ZipInfo) -> NDArray[np.uint8]:
    """The bytes of a stored (uncompressed) zip member, as a view of the mapped file."""
    header = mm[info.header_offset:info.header_offset + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise WeightsError(f"corrupt zip entry {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > len(mm):
        raise WeightsError(f"zip entry {info.filename} reaches past the end of the file")
    return np.frombuffer(mm, dtype=np.uint8, count=info.file_size, offset=start)


def read_pth(path: Path) -> dict[str, NDArray[Any]]:
    """A torch-zip state dict -> {name: array}; arrays are read-only views of the file."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{path.name} is not a torch zip checkpoint (legacy pickles are not "
                           "read: re-save it with a recent torch.save)") from exc
    with archive, open(path, "rb") as handle:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise WeightsError(f"{path.name} has no data.pkl: not a torch checkpoint")
        root = pkl[: -len("data.pkl")]
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        storages: dict[str, NDArray[np.uint8]] = {}
        for info in archive.infolist():
            if not info.filename.startswith(root + "data/") or info.is_dir():
                continue
            key = info.filename[len(root) + 5:]
            if info.compress_type == zipfile.ZIP_STORED:
                storages[key] = _member_data(mm, info)
            else:
                storages[key] = np.frombuffer(archive.read(info), dtype=np.uint8)
        with archive.open(pkl) as pickled:
            try:
                obj = _StateDictUnpickler(pickled, storages).load()
            except WeightsError:
                raise
            except Exception as exc:
                raise WeightsError(f"cannot read {path.name}: {exc}") from exc
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # training checkpoints wrap the state dict
    if not isinstance(obj, dict):
        raise WeightsError(f"{path.name} does not hold a state dict")
    out: dict[str, NDArray[Any]] = {}
    for key, value in obj.items():
        if not isinstance(value, np.ndarray):
            raise WeightsError(f"entry {key!r} of {path.name} is not a tensor", detail={"key": key})
        out[str(key)] = value
    return out
