"""`imgsearch selfcheck`: the original debug.py. Embeds test images with our engine and
compares the features with the reference implementation (Hugging Face `transformers`, loaded
from the same weights) and/or with stored reference features (.npy). Prints PASS or FAIL.

torch is imported only inside `_transformers_features`, and only when transformers is there.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from numpy.typing import NDArray

from imgsearch.commands._words import counted
from services.common.errors import DomainError
from services.common.vocabulary import IMAGE_SUFFIXES

ASSETS = Path(__file__).resolve().parents[2] / "services" / "embedding" / "assets"


@dataclass(frozen=True)
class Comparison:
    against: str
    max_abs_error: float
    min_cosine: float

    def passed(self, atol: float, min_cosine: float) -> bool:
        return self.max_abs_error <= atol and self.min_cosine >= min_cosine


def bundled_images() -> list[Path]:
    return sorted(p for p in ASSETS.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _unit(rows: NDArray[Any]) -> NDArray[np.float64]:
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    out: NDArray[np.float64] = rows / np.maximum(norms, 1e-12)
    return out


def compare(against: str, ours: list[NDArray[Any]], theirs: list[NDArray[Any]]) -> Comparison:
    """Largest absolute difference and smallest cosine over matching (…, D) feature arrays."""
    max_abs, min_cos = 0.0, 1.0
    for a, b in zip(ours, theirs, strict=True):
        ua, ub = _unit(a).reshape(-1, a.shape[-1]), _unit(b).reshape(-1, b.shape[-1])
        max_abs = max(max_abs, float(np.abs(ua - ub).max()))
        min_cos = min(min_cos, float((ua * ub).sum(axis=-1).min()))
    return Comparison(against, max_abs, min_cos)


def _transformers_features(engine: Any, pixels: list[NDArray[np.float32]]
                           ) -> tuple[list[Any], list[Any]]:
    """(CLS rows, patch tokens) of each image from transformers' Dinov2 with our weights."""
    import torch
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

    config = engine.config
    common = {
        "hidden_size": config.dim, "num_hidden_layers": config.depth,
        "num_attention_heads": config.heads, "patch_size": config.patch_size,
        "image_size": config.pos_grid * config.patch_size, "layer_norm_eps":
        config.layer_norm_eps, "use_swiglu_ffn": config.mlp == "swiglu",
        # SwiGLU: transformers derives the hidden width from 4x as the official code does.
        "mlp_ratio": 4 if config.mlp == "swiglu" else config.mlp_hidden // config.dim,
        "hidden_act": "gelu", "qkv_bias": True,
    }
    if config.num_registers:
        hf_model: Any = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(
            num_register_tokens=config.num_registers, **common))
    else:
        hf_model = Dinov2Model(Dinov2Config(**common))
    # Module names differ between transformers versions (query/key/value, later q_proj/...):
    # take the naming that covers the model's own keys.
    wanted = set(hf_model.state_dict())
    namings = [engine.state_dict_hf(naming) for naming in ("modules", "disk")]
    chosen = max(namings, key=lambda named: len(wanted & set(named)))
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in chosen.items()}
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DomainError(f"the weights do not fit transformers' model: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}", code="invalid_weights")
    hf_model.eval()
    skip = 1 + config.num_registers
    cls_rows, patches = [], []
    with torch.inference_mode():
        for array in pixels:
            hidden = hf_model(pixel_values=torch.from_numpy(array[None])).last_hidden_state[0]
            hidden = hidden.numpy()
            cls_rows.append(hidden[0])
            patches.append(hidden[skip:])
    return cls_rows, patches


@click.command()
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Weights file (default: found as the service finds it).")
@click.option("--model", default=None, help="Model name (default: embedding.model).")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Stored (n, D) CLS features of the images, as .npy.")
@click.option("--image", "images", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Check these images (repeatable) instead of the bundled ones.")
@click.option("--save-reference", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write our (n, D) CLS features as .npy for later checks.")
@click.option("--transformers/--no-transformers", "use_transformers", default=True,
              show_default=True, help="Compare with transformers when it is installed.")
@click.option("--atol", type=float, default=1e-4, show_default=True,
              help="Largest allowed absolute difference of unit-length features.")
@click.option("--min-cosine", type=float, default=0.99999, show_default=True)
def selfcheck(weights: Path | None, model: str | None, reference: Path | None,
              images: tuple[Path, ...], save_reference: Path | None, use_transformers: bool,
              atol: float, min_cosine: float) -> None:
    """Check our engine against the reference implementation; prints PASS or FAIL."""
    from services.common.images import decode_image
    from services.common.settings import common_settings
    from services.embedding.config import EmbeddingSettings
    from services.embedding.engine import preprocess
    from services.embedding.weights_store.load import load_model

    settings = EmbeddingSettings()
    common = common_settings()
    paths = list(images) or bundled_images()
    try:
        loaded = load_model(model or settings.model, weights=weights or settings.weights_path(),
                            models_dir=common.models_dir, random_allowed=common.random_weights)
        pixels = []
        for path in paths:
            image, _ = decode_image(path.read_bytes(), max_bytes=settings.max_image_bytes,
                                    max_pixels=settings.max_image_pixels)
            pixels.append(preprocess(image, mode=settings.resize_mode, size=settings.image_size))
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    engine = loaded.model
    source = loaded.path or "random weights (IMGSEARCH_RANDOM_WEIGHTS=1)"
    click.echo(f"model {engine.model_id} from {source}; {counted(len(paths), 'image')}, "
               f"{settings.resize_mode} {settings.image_size}")
    ours_cls, ours_patch, served_cls = [], [], []
    for array in pixels:
        result = engine.embed(array[None], patch_tokens=True)
        ours_cls.append(result.cls[0])
        # what the service computes for CLS features alone: the CLS-only last block
        served_cls.append(engine.embed(array[None]).cls[0])
        ours_patch.append(result.patch[0].reshape(-1, engine.config.dim)
                          if result.patch is not None else None)
    if save_reference is not None:
        np.save(save_reference, np.stack(ours_cls).astype(np.float32))
        click.echo(f"saved our CLS features to {save_reference}")

    comparisons: list[Comparison] = []
    if use_transformers and importlib.util.find_spec("transformers") is not None:
        hf_cls, hf_patch = _transformers_features(engine, pixels)
        comparisons.append(compare("transformers (CLS)", ours_cls, hf_cls))
        comparisons.append(compare("transformers (CLS, CLS-only last block)", served_cls,
                                   hf_cls))
        comparisons.append(compare("transformers (patch tokens)",
                                   [p for p in ours_patch if p is not None], hf_patch))
    elif use_transformers:
        click.echo("transformers is not installed: skipping the reference implementation")
    if reference is not None:
        stored = np.load(reference)
        if stored.shape != (len(paths), engine.config.dim):
            click.echo(f"FAIL: {reference} holds shape {stored.shape}, expected "
                       f"({len(paths)}, {engine.config.dim}) for these images")
            raise SystemExit(1)
        comparisons.append(compare(f"reference {reference.name}", ours_cls, list(stored)))
        comparisons.append(compare(f"reference {reference.name} (CLS-only last block)",
                                   served_cls, list(stored)))
    if not comparisons:
        click.echo("FAIL: nothing to compare with: install transformers or give --reference")
        raise SystemExit(1)
    ok = True
    for c in comparisons:
        passed = c.passed(atol, min_cosine)
        ok &= passed
        click.echo(f"{'ok  ' if passed else 'BAD '} {c.against}: max abs error "
                   f"{c.max_abs_error:.3g}, min cosine {c.min_cosine:.8f}")
    worst = max(c.max_abs_error for c in comparisons)
    lowest = min(c.min_cosine for c in comparisons)
    click.echo(f"{'PASS' if ok else 'FAIL'}: max abs error {worst:.3g} (limit {atol:g}), "
               f"min cosine {lowest:.8f} (limit {min_cosine})")
    raise SystemExit(0 if ok else 1)
