"""One MobileSAM model shared by every request, with a per-image encoder cache.

The cache maps the image's SHA-256 to its embedding, so a further click on the same image
skips the encoder (~1.5 s on 2 cores) and pays only for the prompt encoder and mask decoder
(~50 ms, `ClickDecoder`). SamPredictor runs the encoder (it keeps the image as mutable
state); every use of the model holds one lock, so clicks run one after the other instead of
fighting over the same cores.
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

from services.common.masks import mask_box
from services.segmentation.predictor.cache import ByteLRU
from services.segmentation.predictor.decoder import ClickDecoder
from services.segmentation.predictor.model import LoadedModel
from services.segmentation.predictor.prompts import PromptArrays

logger = logging.getLogger(__name__)


def _use_threads(count: int) -> None:
    # torch's thread count is per process; every use of the model holds the segmenter's
    # lock, so switching it between encoder and decoder affects no one else.
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


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

    def __init__(self, loaded: LoadedModel, cache_bytes: int, *, threads: int = 0,
                 decoder_threads: int = 0) -> None:
        """`threads` for the encoder, `decoder_threads` for each click's decoder (0: torch's
        current count, and the encoder's)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mobile_sam import SamPredictor
        self.loaded = loaded
        self.predictor = SamPredictor(loaded.sam)
        self.decoder = ClickDecoder(loaded.sam)
        self.cache: ByteLRU[ImageEmbedding] = ByteLRU(cache_bytes)
        self.threads = threads or torch.get_num_threads()
        self.decoder_threads = decoder_threads or self.threads
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
        entry = ImageEmbedding(self.predictor.features, (int(h), int(w)), (int(ih), int(iw)))
        self.predictor.reset_image()  # the cache holds the embedding now
        return entry

    def encode(self, key: str, load_rgb: Callable[[], NDArray[np.uint8]]) -> tuple[
            tuple[int, int], bool]:
        """Put the image's encoder output in the cache ahead of its first click: its (H, W)
        and whether it was cached already."""
        with self._lock:
            entry = self.cache.get(key)
            if entry is not None:
                return entry.original_size, True
            _use_threads(self.threads)
            entry = self._encode(load_rgb())
            self.cache.put(key, entry)
            return entry.original_size, False

    def segment(self, key: str, prompts: PromptArrays,
                load_rgb: Callable[[], NDArray[np.uint8]], *,
                candidates: bool = True) -> Segmentation:
        """Masks for `prompts` on the image with content hash `key`.

        `load_rgb` gives the (H, W, 3) uint8 image; it is called only on a cache miss.
        `candidates=False` leaves the other masks out (`others` is empty): only the best one
        is upscaled to the image size.
        """
        with self._lock:
            entry = self.cache.get(key)
            cached = entry is not None
            if entry is None:
                _use_threads(self.threads)
                entry = self._encode(load_rgb())
                self.cache.put(key, entry)
            _use_threads(self.decoder_threads)
            with torch.inference_mode():
                decoded = self.decoder.decode(entry.features, entry.original_size, prompts)
                # Best score first; a stable sort keeps the decoder's order among equals.
                order = np.argsort(-decoded.scores, kind="stable")
                if not candidates:
                    order = order[:1]
                low_res = decoded.low_res[torch.from_numpy(order)]  # (K, 256, 256)
                masks = self.decoder.upscale(low_res, entry.input_size, entry.original_size)
                logits = low_res.numpy()
            self.decoder_runs += 1
        found = [MaskCandidate(masks[k], float(decoded.scores[i]), mask_box(masks[k]),
                               logits[k])
                 for k, i in enumerate(order)]
        return Segmentation(found[0], found[1:], cached)
