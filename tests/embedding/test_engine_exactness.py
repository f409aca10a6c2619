"""The engine against Hugging Face transformers on the same random weights.

transformers (torch) is only the reference here; it also anchors the plain NumPy forward
(reference.py) that test_reference.py holds every fast path to. Both load the same file: HF through
`from_pretrained` (its own key renaming), the engine through its key map. Inputs: square,
non-square and 518x518 pixels, plus an odd-sized image through `preprocess`.
Bounds: max abs difference of the last hidden state <= 1e-4, CLS cosine >= 0.99999.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.embedding.engine import Dinov2Model, preprocess, reference, save_npz, to_canonical
from tests.embedding.conftest import odd_image
from tests.helpers.requirements import require_module

torch = require_module("torch")
transformers = require_module("transformers")

pytestmark = [pytest.mark.torch, pytest.mark.slow]

MAX_ABS = 1e-4
MIN_COS = 0.99999


def _pixels(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, h, w)).astype(np.float32)


def _image_pixels() -> np.ndarray:
    return preprocess(odd_image(333, 517), "resize_short_side", 224)[None]


_REFS: dict[str, Any] = {}


def _reference(folder: Path) -> Any:
    """The HF model of a checkpoint folder, loaded once; asserts nothing was left unloaded."""
    key = str(folder)
    if key not in _REFS:
        cls = transformers.AutoModel
        model, info = cls.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        model.eval()
        _REFS[key] = model
    return _REFS[key]


def _hf_forward(model: Any, pixels: np.ndarray) -> np.ndarray:
    torch.set_num_threads(2)
    with torch.inference_mode():
        out: np.ndarray = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    return out


def _compare(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    diff = float(np.abs(ours - ref).max())
    a, b = ours[:, 0], ref[:, 0]
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert diff <= MAX_ABS, f"max abs difference {diff:.3g}"
    assert float(cos.min()) >= MIN_COS, f"CLS cosine {cos.min():.7f}"
    # the weights are non-trivial: the output is not near zero or constant
    assert float(np.abs(ref).max()) > 1.0 and float(ref.std()) > 0.1


INPUTS: dict[str, Callable[[], np.ndarray]] = {
    "224x224": lambda: _pixels(224, 224),
    "224x308": lambda: _pixels(224, 308, 1),
    "518x518": lambda: _pixels(518, 518, 2),
    "image333x517": _image_pixels,
}
CASES = [
    ("dinov2_vits14", ["224x224", "224x308", "518x518", "image333x517"]),
    ("dinov2_vits14_reg", ["224x224", "224x308", "518x518", "image333x517"]),
    # ViT-B: 518x518 once (the slowest input); the registers variant on the odd image only
    ("dinov2_vitb14", ["224x308", "518x518", "image333x517"]),
    ("dinov2_vitb14_reg", ["image333x517"]),
    ("small_swiglu", ["224x224", "224x308", "image333x517"]),
    ("small_swiglu_reg", ["224x224", "518x518"]),
]


@pytest.mark.parametrize(("arch", "inputs"), CASES, ids=[c[0] for c in CASES])
def test_safetensors_matches_transformers(arch: str, inputs: list[str],
                                          hf_checkpoint: Callable[[str], Path]) -> None:
    folder = hf_checkpoint(arch)
    ref = _reference(folder)
    model = Dinov2Model.from_file(folder / "model.safetensors", threads=2)
    try:
        for name in inputs:
            pixels = INPUTS[name]()
            expected = _hf_forward(ref, pixels)
            _compare(model.forward(pixels), expected)
            # the CLS-only last block (the service's default path) against the same reference
            _compare(model.forward_cls(pixels)[:, None], expected[:, :1])
    finally:
        model.close()


@pytest.mark.parametrize(("arch", "inputs"), [("dinov2_vits14_reg", ["224x308", "image333x517"]),
                                              ("small_swiglu", ["224x224", "518x518"])])
def test_reference_forward_matches_transformers(arch: str, inputs: list[str],
                                                hf_checkpoint: Callable[[str], Path]) -> None:
    """The oracle of the fast paths, on the checkpoint's own tensors, against transformers."""
    folder = hf_checkpoint(arch)
    ref = _reference(folder)
    model = Dinov2Model.from_file(folder / "model.safetensors", threads=1)
    state, config = model.state_dict(), model.config
    model.close()
    for name in inputs:
        pixels = INPUTS[name]()
        _compare(reference.forward(state, config, pixels).astype(np.float32),
                 _hf_forward(ref, pixels))


def _official_names(hf_state: dict[str, Any], registers: bool) -> dict[str, Any]:
    """transformers' module names (q_proj...) -> the official dinov2 .pth names, written out
    here independently of the engine's key map."""
    out: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    for key, value in hf_state.items():
        if key.startswith("encoder.layer."):
            index, rest = key[len("encoder.layer."):].split(".", 1)
            blocks.setdefault(int(index), {})[rest] = value
    out["cls_token"] = hf_state["embeddings.cls_token"]
    out["pos_embed"] = hf_state["embeddings.position_embeddings"]
    out["mask_token"] = hf_state["embeddings.mask_token"]
    if registers:
        out["register_tokens"] = hf_state["embeddings.register_tokens"]
    out["patch_embed.proj.weight"] = hf_state["embeddings.patch_embeddings.projection.weight"]
    out["patch_embed.proj.bias"] = hf_state["embeddings.patch_embeddings.projection.bias"]
    for i, b in blocks.items():
        p = f"blocks.{i}."
        out[p + "norm1.weight"], out[p + "norm1.bias"] = b["norm1.weight"], b["norm1.bias"]
        for kind in ("weight", "bias"):
            out[p + f"attn.qkv.{kind}"] = torch.cat(
                [b[f"attention.{n}_proj.{kind}"] for n in ("q", "k", "v")], 0)
            out[p + f"attn.proj.{kind}"] = b[f"attention.o_proj.{kind}"]
            out[p + f"norm2.{kind}"] = b[f"norm2.{kind}"]
            if "mlp.gate_proj.weight" in b:
                out[p + f"mlp.w12.{kind}"] = torch.cat(
                    [b[f"mlp.gate_proj.{kind}"], b[f"mlp.up_proj.{kind}"]], 0)
                out[p + f"mlp.w3.{kind}"] = b[f"mlp.down_proj.{kind}"]
            else:
                out[p + f"mlp.fc1.{kind}"] = b[f"mlp.fc1.{kind}"]
                out[p + f"mlp.fc2.{kind}"] = b[f"mlp.fc2.{kind}"]
        out[p + "ls1.gamma"] = b["layer_scale1.lambda1"]
        out[p + "ls2.gamma"] = b["layer_scale2.lambda1"]
    out["norm.weight"] = hf_state["layernorm.weight"]
    out["norm.bias"] = hf_state["layernorm.bias"]
    return out


FORMAT_ARCHS = ["dinov2_vits14", "dinov2_vits14_reg", "small_swiglu"]


@pytest.mark.parametrize("arch", FORMAT_ARCHS)
def test_other_formats_match_transformers(arch: str, hf_checkpoint: Callable[[str], Path],
                                          tmp_path: Path) -> None:
    """The same weights as .pth (official names, torch.save), as the README's .npz (HF names),
    as our converted .npz (canonical names) and as safetensors with q_proj names."""
    from safetensors.torch import save_file as save_torch_file

    folder = hf_checkpoint(arch)
    ref = _reference(folder)
    hf_state = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    registers = "embeddings.register_tokens" in hf_state
    official = _official_names(hf_state, registers)
    pth = tmp_path / "dinov2.pth"
    torch.save(official, pth)
    q_proj = tmp_path / "qproj.safetensors"
    save_torch_file({k: v.contiguous() for k, v in hf_state.items()}, str(q_proj))
    readme_npz = tmp_path / "vit-dinov2-base.npz"
    from safetensors.numpy import load_file

    np.savez(readme_npz, **load_file(str(folder / "model.safetensors")))
    converted = save_npz(to_canonical(np.load(readme_npz))[1], tmp_path / "converted.npz")

    pixels = _pixels(224, 308, 5)
    expected = _hf_forward(ref, pixels)
    ids = set()
    for path in (pth, q_proj, readme_npz, converted):
        model = Dinov2Model.from_file(path, threads=2)
        try:
            _compare(model.forward(pixels), expected)
            ids.add(model.model_id)
        finally:
            model.close()
    # one model id for the same weights, whatever the file format
    assert len(ids) == 1


def test_embed_features_match_transformers(hf_checkpoint: Callable[[str], Path]) -> None:
    folder = hf_checkpoint("dinov2_vits14_reg")
    ref = _reference(folder)
    model = Dinov2Model.from_file(folder / "model.safetensors", threads=2)
    pixels = np.concatenate([_pixels(224, 224, 8), _pixels(224, 224, 9)])
    hidden = _hf_forward(ref, pixels)
    result = model.embed(pixels, patch_tokens=True)
    cls_only = model.embed(pixels)  # no patch tokens or pooling asked for: CLS-only last block
    model.close()
    cls = hidden[:, 0] / np.linalg.norm(hidden[:, 0], axis=-1, keepdims=True)
    patches = hidden[:, 1 + 4:]
    mean = patches.mean(1)
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True)
    assert np.abs(result.cls - cls).max() < 1e-5
    assert result.mean_pooled is not None and np.abs(result.mean_pooled - mean).max() < 1e-5
    assert result.patch is not None and result.patch.shape == (2, 16, 16, 384)
    tok = patches.reshape(2, 16, 16, 384)
    tok = tok / np.linalg.norm(tok, axis=-1, keepdims=True)
    assert np.abs(result.patch - tok).max() < 1e-5
    assert cls_only.mean_pooled is None and np.abs(cls_only.cls - cls).max() < 1e-5
