"""Where DINOv2 weights come from: finding a local file, and downloading the official ones."""

from services.embedding.weights_store.download import DownloadError, download
from services.embedding.weights_store.locate import (
    ChecksumMismatch,
    WeightsNotFound,
    find_weights,
    verify_sidecar,
)
from services.embedding.weights_store.sources import (
    MODEL_NAMES,
    canonical_model_name,
    official_url,
)

__all__ = [
    "MODEL_NAMES",
    "ChecksumMismatch",
    "DownloadError",
    "WeightsNotFound",
    "canonical_model_name",
    "download",
    "find_weights",
    "official_url",
    "verify_sidecar",
]
