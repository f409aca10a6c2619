"""`imgsearch segmentation download`: fetch MobileSAM's mobile_sam.pt ahead of time."""

from __future__ import annotations

from pathlib import Path

import click

from services.common.errors import DomainError


@click.group()
def segmentation() -> None:
    """MobileSAM weights of the segmentation service."""


@segmentation.command()
@click.option("--url", help="Download from this URL instead of segmentation.weights_url.")
@click.option("--sha256", "pinned", default=None,
              help="Expected SHA-256 (else segmentation.weights_sha256, else the recorded one).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Destination (default: segmentation.weights, else "
                   "$IMGSEARCH_DATA_DIR/models/mobile_sam.pt).")
@click.option("--force", is_flag=True, help="Download again even if the file is there.")
@click.option("--attempts", type=click.IntRange(min=1), default=None,
              help="Attempts before giving up (default: segmentation.download_attempts).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def download(url: str | None, pinned: str | None, out: Path | None, force: bool,
             attempts: int | None, progress: bool) -> None:
    """Download mobile_sam.pt (resumable, SHA-256 recorded at first download, checked after)."""
    from services.common.settings import common_settings
    from services.segmentation.config import SegmentationSettings
    from services.segmentation.predictor.weights import (
        download_weights,
        sidecar_path,
        verify_weights,
    )

    settings = SegmentationSettings()
    dest = out.expanduser().resolve() if out else settings.weights_path(common_settings())
    source = url or settings.weights_url
    digest = pinned if pinned is not None else settings.weights_sha256
    try:
        if dest.is_file() and not force:
            found = verify_weights(dest, pinned=digest)
            click.echo(f"{dest} is there (sha256 {found})")
            return
        if force:
            dest.unlink(missing_ok=True)
            sidecar_path(dest).unlink(missing_ok=True)
        click.echo(f"mobile_sam: {source} -> {dest}", err=True)
        result = download_weights(source, dest, pinned=digest,
                                  timeout=settings.download_timeout_s,
                                  attempts=attempts or settings.download_attempts,
                                  progress=progress)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    except Exception as exc:  # network errors after the last attempt
        raise click.ClickException(
            f"download of {source} failed: {exc}. Put mobile_sam.pt at {dest} by hand, or "
            "point IMGSEARCH_SEGMENTATION_WEIGHTS at it.") from exc
    click.echo(f"{result.path} sha256 {result.sha256}")
