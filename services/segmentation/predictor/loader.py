"""Loading the model off the request path: a background thread finds (or downloads) the
weights and builds the predictor; until then requests get 503 `model_loading`, after a
failure 503 with the reason and what to do."""

from __future__ import annotations

import logging
import threading
from typing import Any

from services.common.errors import DomainError
from services.common.settings import CommonSettings
from services.segmentation.config import SegmentationSettings
from services.segmentation.predictor.errors import ModelLoading, ModelUnavailable
from services.segmentation.predictor.segmenter import Segmenter
from services.segmentation.predictor.weights import ensure_weights, find_weights

logger = logging.getLogger(__name__)


def load_segmenter(settings: SegmentationSettings, common: CommonSettings) -> Segmenter:
    """A weights file when there is one; random weights only when explicitly enabled and
    there is none; else download (or fail saying what to do)."""
    from services.segmentation.predictor.model import (
        build_random,
        load_checkpoint,
        set_threads,
    )

    threads = set_threads(settings.threads)
    decoder_threads = settings.decoder_threads or threads
    logger.info("torch uses %d threads (%d for the decoder)", threads, decoder_threads)
    if find_weights(settings, common) is None and common.random_weights:
        loaded = build_random(settings.random_seed)
    else:
        weights = ensure_weights(settings, common)
        loaded = load_checkpoint(weights.path, weights.sha256)
    return Segmenter(loaded, settings.cache_bytes, threads=threads,
                     decoder_threads=decoder_threads)


class ModelHolder:
    """The segmenter once loaded, or why it is not there (yet)."""

    def __init__(self, settings: SegmentationSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.common = common
        self._segmenter: Segmenter | None = None
        self._error: DomainError | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._load, name="mobile-sam-loader",
                                        daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            self._segmenter = load_segmenter(self.settings, self.common)
        except DomainError as exc:
            logger.error("MobileSAM not loaded: %s", exc.message)
            self._error = exc
        except Exception as exc:  # any other failure still has to reach /readyz and callers
            logger.exception("MobileSAM not loaded")
            self._error = ModelUnavailable(f"MobileSAM could not be loaded: {exc}")

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def segmenter(self) -> Segmenter | None:
        return self._segmenter

    def get(self) -> Segmenter:
        """The segmenter, or the reason there is none as a 503 error."""
        if self._segmenter is not None:
            return self._segmenter
        if self._error is not None:
            raise self._error
        raise ModelLoading("MobileSAM is still loading", headers={"Retry-After": "5"})

    def readiness(self) -> dict[str, Any]:
        if self._segmenter is not None:
            return {"model": True}
        if self._error is not None:
            return {"model": f"{self._error.code}: {self._error.message}"}
        return {"model": "loading"}
