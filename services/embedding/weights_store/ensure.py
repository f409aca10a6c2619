"""The weights a process serves, downloaded on first start when none are on disk.

`imgsearch up` calls this in the foreground (a progress bar on the terminal); the embedding
service calls it in its start-up (the Compose deployment's first start). Either way a missing
file is fetched once from the official release into `$data_dir/models/<model>.pth`, resuming a
partial download and recording its SHA-256 for the checks of later starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from services.common.storage import exclusive_lock
from services.embedding.config import EmbeddingSettings
from services.embedding.weights_store.download import download
from services.embedding.weights_store.locate import WeightsNotFound, find_weights
from services.embedding.weights_store.sources import canonical_model_name, official_url


def download_target(settings: EmbeddingSettings, models_dir: Path) -> tuple[str, Path]:
    """(URL, destination) of the configured model's official checkpoint."""
    name = canonical_model_name(settings.model)
    return official_url(name, settings.weights_base_url), models_dir / f"{name}.pth"


def ensure_weights(settings: EmbeddingSettings, models_dir: Path, *, progress: bool,
                   on_download: Callable[[str, Path], None] | None = None,
                   cwd: Path | None = None) -> Path:
    """The weights file of the configured model: found on disk, else downloaded.

    Raises `WeightsNotFound` when none is found and downloading is off (or an explicitly
    configured file is missing: that is never replaced by a download), `DownloadError` when
    the download fails (its message says whether the network was unreachable).
    """
    name = canonical_model_name(settings.model)
    configured = settings.weights_path()
    try:
        return find_weights(name, configured, models_dir, cwd or Path.cwd())
    except WeightsNotFound:
        if configured is not None or not settings.download:
            raise
    url, dest = download_target(settings, models_dir)
    with exclusive_lock(dest):
        if not dest.is_file():  # else another process finished it while this one waited
            if on_download is not None:
                on_download(url, dest)
            download(url, dest, attempts=settings.download_attempts,
                     timeout=settings.download_timeout_s, progress=progress)
    return dest
