"""Loading the model a process serves: the weights file found by `locate`, or random
weights when none is found and `IMGSEARCH_RANDOM_WEIGHTS=1` allows it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from services.embedding.engine import ARCHITECTURES, Dinov2Model
from services.embedding.weights_store.locate import WeightsNotFound, find_weights, verify_sidecar
from services.embedding.weights_store.sources import canonical_model_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    model: Dinov2Model
    path: Path | None  # None: random weights
    random_weights: bool


def engine_arch(model: str) -> str:
    """The engine's architecture name of a configured model name (`_reg4` read as `_reg`)."""
    name = canonical_model_name(model)
    if name not in ARCHITECTURES:
        raise ValueError(f"the engine has no architecture {name!r}")
    return name


def load_model(model: str, *, weights: Path | None, models_dir: Path, random_allowed: bool,
               cwd: Path | None = None, seed: int = 0, threads: int = 0) -> LoadedModel:
    """Find and load `model`'s weights; random ones only when none exist and it is allowed.

    `threads`: the engine's worker threads (0: every core).
    """
    name = canonical_model_name(model)
    try:
        path = find_weights(name, weights, models_dir, cwd or Path.cwd())
    except WeightsNotFound:
        if not random_allowed or weights is not None:
            raise
        logger.warning(
            "RANDOM WEIGHTS: no weights found for %s and IMGSEARCH_RANDOM_WEIGHTS=1; the "
            "features mean nothing (tests and offline demos only)", name)
        random_model = Dinov2Model.random(engine_arch(name), seed=seed, threads=threads)
        return LoadedModel(random_model, None, True)
    verify_sidecar(path)
    loaded = Dinov2Model.from_file(path, threads=threads)
    if loaded.config.name != engine_arch(name):
        # A file found under the model's name that holds another model is a mistake; an
        # explicitly given file simply decides the model.
        log = logger.info if weights is not None else logger.warning
        log("the weights in %s are %s, not the configured %s: serving %s",
            path, loaded.config.name, name, loaded.config.name)
    logger.info("loaded %s from %s", loaded.model_id, path)
    return LoadedModel(loaded, path, False)
