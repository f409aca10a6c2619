"""Settings of the embedding service (section `embedding` of config.yaml, IMGSEARCH_EMBEDDING_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from services.common.peers import port_field
from services.common.settings import SectionSettings


class EmbeddingSettings(SectionSettings, section="embedding"):
    """Model choice, preprocessing, micro-batching and input limits of the embedding service."""

    port: int = port_field("embedding")
    # dinov2_vits14 | dinov2_vitb14 | dinov2_vitl14 | dinov2_vitg14, "_reg" for registers.
    model: str = "dinov2_vitb14"
    # An explicit weights file; empty: searched under $data_dir/models (see weights_store).
    weights: Path | None = None
    resize_mode: Literal["resize_short_side", "center_crop"] = "resize_short_side"
    image_size: int = Field(default=224, ge=14, le=2048)
    # Images per model call; requests waiting longer than max_wait_ms are run anyway.
    max_batch: int = Field(default=8, ge=1, le=256)
    max_wait_ms: float = Field(default=5.0, ge=0)
    # Requests waiting for the model; one more is answered 503 overloaded.
    queue_size: int = Field(default=64, ge=1)
    # BLAS threads of the model; 0: every core.
    threads: int = Field(default=0, ge=0)
    max_image_bytes: int = Field(default=20_000_000, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    # The model sees image_size pixels: an image whose short side is at least twice this is
    # reduced while decoding (JPEG at 1/2..1/8 scale), never below it; 0: decode full size.
    decode_min_side: int = Field(default=896, ge=0)
    max_files_per_request: int = Field(default=64, ge=1)
    # Where the official DINOv2 checkpoints come from (first start, `imgsearch weights download`).
    weights_base_url: str = "https://dl.fbaipublicfiles.com/dinov2"
    # No weights file found (and no explicit one configured): download the official one on
    # start, into $data_dir/models/<model>.pth. Off: a missing file stops the service at once.
    download: bool = True
    download_attempts: int = Field(default=5, ge=1)
    download_timeout_s: float = Field(default=60.0, gt=0)

    def weights_path(self) -> Path | None:
        """The configured weights file, or None (an empty string in YAML means none)."""
        if self.weights is None or str(self.weights) in ("", "."):
            return None
        return self.weights.expanduser()
