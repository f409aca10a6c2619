"""Settings of the segmentation service (section `segmentation:` of config.yaml)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.peers import peer_url, port_field
from services.common.settings import CommonSettings, SectionSettings

# The publisher gives no digest for this file: it is recorded at first download (sidecar
# `mobile_sam.pt.sha256`) and checked on every later start.
MOBILE_SAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
WEIGHTS_FILENAME = "mobile_sam.pt"


class SegmentationSettings(SectionSettings, section="segmentation"):
    """Every URL, path, limit and threshold of the segmentation service."""

    port: int = port_field("segmentation")
    # A mobile_sam.pt file; empty: $data_dir/models/mobile_sam.pt (downloaded on first use).
    weights: str = ""
    weights_url: str = MOBILE_SAM_URL
    # A digest to pin (hex); empty: the one recorded at first download is checked.
    weights_sha256: str = ""
    # Download the weights when they are missing (off: a missing file is an error at once).
    download: bool = True
    download_timeout_s: float = Field(default=60.0, gt=0)
    download_attempts: int = Field(default=5, ge=1)
    # Seed of the randomly initialised model (only with random_weights: tests, offline demos).
    random_seed: int = 0
    # torch intra-op threads; 0: every core.
    threads: int = Field(default=0, ge=0)
    # torch threads of a click's prompt and mask decoder; 0: as `threads`. Its many small
    # operations suffer most when other processes take the cores away (docs/segmentation.md).
    decoder_threads: int = Field(default=0, ge=0)
    # Memory limit of the per-image encoder cache (one 1024px image: 4 MiB of features).
    cache_bytes: int = Field(default=1_000_000_000, ge=0)
    # Memory limit of the selections: each click's low-resolution mask (256 KiB), kept so the
    # next click names it (`selection_id`) instead of sending it back.
    selection_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    max_image_bytes: int = Field(default=20_000_000, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_points: int = Field(default=64, ge=1)
    # Where images given by catalog id are looked up; empty: the catalog section's host/port.
    catalog_url: str = ""
    catalog_timeout_s: float = Field(default=10.0, gt=0)

    def weights_path(self, common: CommonSettings) -> Path:
        """The configured weights file, else the default place under the models folder."""
        if self.weights:
            return Path(self.weights).expanduser().resolve()
        return common.models_dir / WEIGHTS_FILENAME

    def resolved_catalog_url(self) -> str:
        return peer_url("catalog", self.catalog_url)

    def is_default_weights_path(self) -> bool:
        return not self.weights
