"""`imgsearch weights download MODEL` and `imgsearch weights convert SRC DST`."""

from __future__ import annotations

from pathlib import Path

import click

from services.common.errors import DomainError

_KNOWN_SUFFIXES = (".pth", ".pt", ".safetensors", ".npz")


@click.group()
def weights() -> None:
    """Download or convert DINOv2 model weights."""


def _dest_name(model: str, url: str) -> str:
    """`<model><suffix>`, the suffix taken from the URL (the official files are .pth)."""
    tail = url.split("?", 1)[0].rsplit("/", 1)[-1]
    suffix = next((s for s in _KNOWN_SUFFIXES if tail.endswith(s)), ".pth")
    return f"{model}{'.pth' if suffix == '.pt' else suffix}"


@weights.command()
@click.argument("model")
@click.option("--url", help="Download from this URL instead of the public DINOv2 release.")
@click.option("--sha256", "pinned", help="Expected SHA-256 (else the recorded one, if any).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Destination file (default: $IMGSEARCH_DATA_DIR/models/<model>.pth).")
@click.option("--force", is_flag=True, help="Download again even if the file is there.")
@click.option("--attempts", type=click.IntRange(min=1), default=None,
              help="Attempts before giving up (default: embedding.download_attempts).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def download(model: str, url: str | None, pinned: str | None, out: Path | None, force: bool,
             attempts: int | None, progress: bool) -> None:
    """Download MODEL's weights (resumable, SHA-256 verified) into the models folder.

    MODEL: dinov2_vits14, dinov2_vitb14, dinov2_vitl14, dinov2_vitg14, each also with _reg.
    """
    from services.common.settings import common_settings
    from services.embedding.config import EmbeddingSettings
    from services.embedding.weights_store import (
        DownloadError,
        canonical_model_name,
        download,
        official_url,
    )
    from services.embedding.weights_store.locate import sidecar

    settings = EmbeddingSettings()
    try:
        name = canonical_model_name(model)
        source = url or official_url(name, settings.weights_base_url)
        dest = out or common_settings().models_dir / _dest_name(name, source)
        click.echo(f"{name}: {source} -> {dest}", err=True)
        result = download(source, dest, sha256=pinned, force=force,
                          attempts=attempts or settings.download_attempts,
                          timeout=settings.download_timeout_s, progress=progress)
    except DownloadError as exc:
        raise click.ClickException(exc.message) from exc
    except DomainError as exc:
        raise click.BadParameter(exc.message, param_hint="MODEL") from exc
    if not result.downloaded:
        click.echo(f"already present and verified: {result.path}", err=True)
    if result.recorded:
        click.echo(f"SHA-256 recorded in {sidecar(result.path)} (checked on later use)", err=True)
    click.echo(f"{result.path} sha256={result.sha256} bytes={result.size}")


@weights.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "arch", default=None,
              help="Architecture (default: inferred from the weights).")
def convert(src: Path, dst: Path, arch: str | None) -> None:
    """Convert weights SRC (.safetensors, .pth, .npz) to our .npz DST; prints the model id."""
    from services.embedding.engine import Dinov2Model, read_state_dict, save_npz, to_canonical
    from services.embedding.weights_store import canonical_model_name

    if dst.suffix != ".npz":
        raise click.BadParameter("the destination must end in .npz", param_hint="DST")
    try:
        name = canonical_model_name(arch) if arch else None
        model = Dinov2Model.from_file(src, arch=name)  # validates every key and shape
        _, canonical = to_canonical(read_state_dict(src), model.config)
        dst.parent.mkdir(parents=True, exist_ok=True)
        save_npz(canonical, dst)
        converted = Dinov2Model.from_file(dst, arch=model.config.name)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"{dst} {converted.model_id}")
