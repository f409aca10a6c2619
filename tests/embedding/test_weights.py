"""Weight files: formats, the key map's checks, architecture inference, the .pth sandbox.
No torch: files are written with safetensors' NumPy API, NumPy and a hand-made torch zip."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from services.embedding.engine import (
    ARCHITECTURES,
    Dinov2Config,
    Dinov2Model,
    WeightsError,
    infer_config,
    read_state_dict,
    save_npz,
    to_canonical,
)

TINY = Dinov2Config("tiny", 64, 2, 1, "gelu", 256, pos_grid=4)


@pytest.fixture(scope="module")
def tiny() -> Dinov2Model:
    model = Dinov2Model.random(TINY, seed=1, threads=1)
    yield model
    model.close()


def _hf(tiny: Dinov2Model) -> dict[str, np.ndarray]:
    return tiny.state_dict_hf()


def test_architectures_cover_the_family() -> None:
    for size in ("s", "b", "l", "g"):
        assert f"dinov2_vit{size}14" in ARCHITECTURES
        assert ARCHITECTURES[f"dinov2_vit{size}14_reg"].num_registers == 4
    g = ARCHITECTURES["dinov2_vitg14"]
    assert (g.dim, g.depth, g.heads, g.mlp, g.mlp_hidden) == (1536, 40, 24, "swiglu", 4096)
    # transformers counts 86,580,480 for ViT-B/14, the 768 of the unused mask token included
    assert ARCHITECTURES["dinov2_vitb14"].weight_count() == 86_580_480 - 768


def test_safetensors_roundtrip_and_model_id(tiny: Dinov2Model, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(_hf(tiny), str(path))
    loaded = Dinov2Model.from_file(path, threads=1)
    assert loaded.weights_sha256 == tiny.weights_sha256
    assert loaded.model_id.startswith(loaded.config.name + ":")
    assert len(loaded.model_id.split(":")[1]) == 12
    pixels = np.random.default_rng(0).standard_normal((1, 3, 56, 42)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(pixels), tiny.forward(pixels))
    loaded.close()


def test_npz_convert_roundtrip(tiny: Dinov2Model, tmp_path: Path) -> None:
    src = tmp_path / "w.safetensors"
    save_file(_hf(tiny), str(src))
    config, canonical = to_canonical(read_state_dict(src))
    assert config.dim == 64 and config.depth == 2
    out = save_npz(canonical, tmp_path / "converted.npz")
    assert out == tmp_path / "converted.npz"
    assert set(np.load(out).files) == set(canonical)
    assert "blocks.0.attn.qkv.weight" in canonical
    assert Dinov2Model.from_file(out, threads=1).weights_sha256 == tiny.weights_sha256


def test_hf_prefix_and_module_names_accepted(tiny: Dinov2Model, tmp_path: Path) -> None:
    prefixed = {"dinov2." + k: v for k, v in tiny.state_dict_hf("modules").items()}
    path = tmp_path / "p.safetensors"
    save_file(prefixed, str(path))
    assert "dinov2.encoder.layer.0.attention.q_proj.weight" in prefixed
    assert Dinov2Model.from_file(path, threads=1).weights_sha256 == tiny.weights_sha256


def test_architecture_inferred_and_checked() -> None:
    state = Dinov2Model.random(ARCHITECTURES["dinov2_vits14_reg"], threads=1).state_dict_hf()
    config = infer_config(state)
    assert config.name == "dinov2_vits14_reg" and config.num_registers == 4
    assert config.pos_grid == 37
    with pytest.raises(WeightsError) as info:
        Dinov2Model.from_state_dict(state, "dinov2_vitb14")
    assert info.value.code == "invalid_weights"
    assert "cls_token" in info.value.message and "(1, 1, 384)" in info.value.message


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_missing_key_is_named(tiny: Dinov2Model, tmp_path: Path, fmt: str) -> None:
    state = _hf(tiny)
    del state["encoder.layer.1.attention.attention.key.weight"]
    path = tmp_path / f"w.{fmt}"
    save_file(state, str(path)) if fmt == "safetensors" else np.savez(path, **state)
    with pytest.raises(WeightsError) as info:
        Dinov2Model.from_file(path)
    assert info.value.code == "invalid_weights"
    assert "missing key encoder.layer.1.attention.attention.key.weight" in info.value.message
    assert info.value.detail["key"] == "encoder.layer.1.attention.attention.key.weight"


def test_extra_key_is_named(tiny: Dinov2Model, tmp_path: Path) -> None:
    state = tiny.state_dict()
    state["blocks.0.attn.extra"] = np.zeros(3, dtype=np.float32)
    path = save_npz(state, tmp_path / "w.npz")
    with pytest.raises(WeightsError) as info:
        Dinov2Model.from_file(path)
    assert info.value.code == "invalid_weights"
    assert "unexpected key blocks.0.attn.extra" in info.value.message


def test_wrong_shape_is_named(tiny: Dinov2Model, tmp_path: Path) -> None:
    state = tiny.state_dict()
    state["blocks.1.mlp.fc2.weight"] = state["blocks.1.mlp.fc2.weight"][:, :-1].copy()
    path = save_npz(state, tmp_path / "w.npz")
    with pytest.raises(WeightsError) as info:
        Dinov2Model.from_file(path)
    assert "blocks.1.mlp.fc2.weight" in info.value.message
    assert info.value.detail == {"key": "blocks.1.mlp.fc2.weight", "shape": [64, 255],
                                 "expected": [64, 256]}


def test_unknown_naming_and_format(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, foo=np.zeros(2, dtype=np.float32))
    with pytest.raises(WeightsError, match="no known DINOv2 naming"):
        Dinov2Model.from_file(path)
    other = tmp_path / "w.onnx"
    other.write_bytes(b"x")
    with pytest.raises(WeightsError, match="unsupported weights format"):
        read_state_dict(other)
    with pytest.raises(WeightsError) as info:
        read_state_dict(tmp_path / "absent.pth")
    assert info.value.code == "weights_not_found"
    with pytest.raises(WeightsError) as info:
        Dinov2Model.from_file(path, arch="dinov2_vitx14")
    assert info.value.code == "unknown_architecture"


def test_truncated_safetensors_refused(tiny: Dinov2Model, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(_hf(tiny), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="does not fit its byte range"):
        read_state_dict(path)


# -- .pth without torch ----------------------------------------------------------------


class _Storage:
    """Pickles as the torch.FloatStorage global, as torch.save writes it."""


def _torch_zip(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write a torch-save-style zip by hand: data.pkl + data/<n>, protocol 2."""

    class P(pickle._Pickler):  # the pure-Python pickler lets globals be written by name
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, tuple) and obj and obj[0] == "__storage__":
                return ("storage", _global("torch", "FloatStorage"), obj[1], "cpu", obj[2])
            return None

        def save(self, obj: object, save_persistent_id: bool = True) -> None:
            ref = getattr(obj, "_ref", None)
            if ref is None:
                super().save(obj, save_persistent_id)  # type: ignore[misc]
                return
            self.write(pickle.GLOBAL + f"{ref[0]}\n{ref[1]}\n".encode())  # type: ignore[attr-defined]
            self.memoize(obj)  # type: ignore[attr-defined]

    entries = {}
    for i, (name, array) in enumerate(tensors.items()):
        array = np.ascontiguousarray(array, dtype="<f4")
        strides = tuple(s // 4 for s in array.strides)
        entries[name] = _Rebuild(("__storage__", str(i), array.size), 0, array.shape, strides)
    buf = io.BytesIO()
    P(buf, protocol=2).dump(_OrderedDict(entries))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for i, array in enumerate(tensors.values()):
            zf.writestr(f"archive/data/{i}", np.ascontiguousarray(array, dtype="<f4").tobytes())


def _global(module: str, name: str) -> object:
    """A stand-in function whose pickle reference is module.name."""

    def fn(*args: object) -> None:
        return None

    fn._ref = (module, name)  # type: ignore[attr-defined]
    return fn


class _Rebuild:
    def __init__(self, storage: tuple[object, ...], offset: int, size: tuple[int, ...],
                 stride: tuple[int, ...]) -> None:
        self.args = (storage, offset, size, stride, False, _OrderedDict({}))

    def __reduce__(self) -> tuple[object, ...]:
        return (_global("torch._utils", "_rebuild_tensor_v2"), self.args)


class _OrderedDict(dict):  # type: ignore[type-arg]
    def __reduce__(self) -> tuple[object, ...]:
        return (_global("collections", "OrderedDict"), (), None, None, iter(self.items()))


def test_pth_read_without_torch(tiny: Dinov2Model, tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    _torch_zip(path, tiny.state_dict())
    state = read_state_dict(path)
    assert set(state) == set(tiny.state_dict())
    loaded = Dinov2Model.from_file(path, threads=1)
    assert loaded.weights_sha256 == tiny.weights_sha256


def test_pth_with_malicious_global_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"cls_token": Evil()}, protocol=2))
    with pytest.raises(WeightsError) as info:
        read_state_dict(path)
    assert info.value.code == "invalid_weights"
    assert "refused to load the global posix.system" in info.value.message
    assert not marker.exists()


def test_legacy_pickle_pth_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.pth"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(WeightsError, match="not a torch zip checkpoint"):
        read_state_dict(path)
