"""One MobileSAM predictor shared by every request, with a per-image encoder cache.

SamPredictor keeps the current image's embedding as mutable state, so every use of it holds
one lock: restore (or compute) the image's embedding, then decode the prompts. The cache maps
the image's SHA-256 to its embedding, so a further click on the same image skips the encoder
(~1.5 s on 2 cores) and pays only for the prompt encoder and mask decoder (~70 ms).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray

from services.segmentation.predictor.cache import ByteLRU
from services.segmentation.predictor.masks import mask_box
from services.segmentation.predictor.model import LoadedModel
from services.segmentation.predictor.prompts import PromptArrays

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageEmbedding:
    """The encoder's output for one image: features (1, 256, 64, 64) float32, plus the sizes
    SamPredictor needs to map prompts and masks: original (H, W) and resized input (h, w)."""

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return int(self.features.element_size() * self.features.nelement())


@dataclass(frozen=True)
class MaskCandidate:
    mask: NDArray[np.bool_]  # (H, W) at the original image size
    score: float  # the decoder's predicted IoU
    box: list[int] | None  # [x0, y0, x1, y1], exclusive ends; None when empty
    low_res_logits: NDArray[np.float32]  # (256, 256)


@dataclass(frozen=True)
class Segmentation:
    best: MaskCandidate
    others: list[MaskCandidate] = field(default_factory=list)  # best score first
    encoder_cached: bool = False


class Segmenter:
    """Thread-safe masks from prompts; the encoder runs once per cached image."""

    def __init__(self, loaded: LoadedModel, cache_bytes: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mobile_sam import SamPredictor
        self.loaded = loaded
        self.predictor = SamPredictor(loaded.sam)
        self.cache: ByteLRU[ImageEmbedding] = ByteLRU(cache_bytes)
        self._lock = threading.Lock()
        self.encoder_runs = 0
        self.decoder_runs = 0

    def cached_size(self, key: str) -> tuple[int, int] | None:
        """(H, W) of a cached image, or None."""
        entry = self.cache.peek(key)
        return entry.original_size if entry is not None else None

    def _encode(self, rgb: NDArray[np.uint8]) -> ImageEmbedding:
        self.predictor.set_image(rgb, image_format="RGB")
        self.encoder_runs += 1
        h, w = self.predictor.original_size
        ih, iw = self.predictor.input_size
        return ImageEmbedding(self.predictor.features, (int(h), int(w)), (int(ih), int(iw)))

    def _restore(self, entry: ImageEmbedding) -> None:
        # The state set_image would leave behind, without running the encoder.
        self.predictor.reset_image()
        self.predictor.features = entry.features
        self.predictor.original_size = entry.original_size
        self.predictor.input_size = entry.input_size
        self.predictor.is_image_set = True

    def segment(self, key: str, prompts: PromptArrays,
                load_rgb: Callable[[], NDArray[np.uint8]]) -> Segmentation:
        """Masks for `prompts` on the image with content hash `key`.

        `load_rgb` gives the (H, W, 3) uint8 image; it is called only on a cache miss.
        """
        with self._lock:
            entry = self.cache.get(key)
            cached = entry is not None
            if entry is None:
                entry = self._encode(load_rgb())
                self.cache.put(key, entry)
            else:
                self._restore(entry)
            with torch.inference_mode():
                masks, scores, low_res = self.predictor.predict(
                    point_coords=prompts.point_coords,
                    point_labels=prompts.point_labels,
                    box=prompts.box,
                    mask_input=prompts.mask_input,
                    multimask_output=prompts.multimask,
                )
            self.decoder_runs += 1
        order = np.argsort(-scores, kind="stable")
        candidates = [
            MaskCandidate(masks[i].astype(bool), float(scores[i]), mask_box(masks[i]),
                          low_res[i].astype(np.float32))
            for i in order
        ]
        return Segmentation(candidates[0], candidates[1:], cached)
