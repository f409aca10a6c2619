"""`imgsearch embed IMAGE...`: DINOv2 CLS features of image files, computed in this process."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click
import numpy as np
from numpy.typing import NDArray

from imgsearch.commands._words import counted
from services.common.errors import DomainError


def embed_files(paths: list[Path], model: str | None, weights: Path | None,
                batch: int) -> tuple[str, NDArray[np.float32]]:
    """(model id, (n, D) L2-normalised CLS features of `paths`, in order)."""
    from services.common.images import decode_image
    from services.common.settings import common_settings
    from services.embedding.config import EmbeddingSettings
    from services.embedding.engine import preprocess
    from services.embedding.weights_store.load import load_model

    settings = EmbeddingSettings()
    common = common_settings()
    loaded = load_model(model or settings.model, weights=weights or settings.weights_path(),
                        models_dir=common.models_dir, random_allowed=common.random_weights)
    if loaded.random_weights:
        click.echo("warning: RANDOM WEIGHTS (IMGSEARCH_RANDOM_WEIGHTS=1): the features mean "
                   "nothing", err=True)
    pixels = []
    for path in paths:
        try:
            image, _ = decode_image(path.read_bytes(), max_bytes=settings.max_image_bytes,
                                    max_pixels=settings.max_image_pixels)
        except DomainError as exc:
            raise DomainError(f"{path}: {exc.message}", code=exc.code) from exc
        pixels.append(preprocess(image, mode=settings.resize_mode, size=settings.image_size))
    # Equal shapes share a model call; rows go back to input order.
    out = np.zeros((len(paths), loaded.model.config.dim), dtype=np.float32)
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, array in enumerate(pixels):
        groups.setdefault(array.shape, []).append(index)
    for members in groups.values():
        for start in range(0, len(members), batch):
            chunk = members[start:start + batch]
            result = loaded.model.embed(np.stack([pixels[i] for i in chunk]))
            out[chunk] = result.cls
    return loaded.model.model_id, out


@click.command()
@click.argument("images", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", default=None, help="Model name (default: embedding.model).")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Weights file (default: found as the service finds it).")
@click.option("--format", "fmt", type=click.Choice(["json", "npy"]), default="json",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file (default: standard output).")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images per model call.")
def embed(images: tuple[Path, ...], model: str | None, weights: Path | None, fmt: str,
          out: Path | None, batch: int) -> None:
    """L2-normalised DINOv2 CLS features of IMAGE files, in input order.

    JSON: {"model": "<model id>", "dim": D, "vectors": [[...], ...]}; npy: an (n, D) float32
    array.
    """
    try:
        model_id, vectors = embed_files(list(images), model, weights, batch)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    if fmt == "json":
        text = json.dumps({"model": model_id, "dim": int(vectors.shape[1]),
                           "vectors": vectors.tolist()})
        if out is None:
            click.echo(text)
        else:
            out.write_text(text + "\n")
    else:
        buffer = io.BytesIO()
        np.save(buffer, vectors)
        if out is None:
            sys.stdout.buffer.write(buffer.getvalue())
            sys.stdout.buffer.flush()
        else:
            out.write_bytes(buffer.getvalue())
    if out is not None:
        click.echo(f"{counted(len(images), 'vector')} of {model_id} -> {out}", err=True)
