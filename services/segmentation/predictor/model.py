"""Building MobileSAM vit_t: from a checkpoint file, or randomly initialised with a seed.

The checkpoint goes through `mobile_sam.sam_model_registry["vit_t"](checkpoint=path)`, the
publisher's own loading path (a `torch.save` of the state dict).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from services.common.cpu import available_cpus
from services.segmentation.predictor.errors import ModelUnavailable

logger = logging.getLogger(__name__)

ARCHITECTURE = "mobile_sam_vit_t"


@dataclass(frozen=True)
class LoadedModel:
    sam: Any  # mobile_sam.modeling.Sam (the package has no type hints)
    model_id: str
    random_weights: bool
    weights_path: Path | None
    weights_sha256: str | None


def _registry() -> Any:
    # timm warns about its own renamed modules when mobile_sam imports them: not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mobile_sam import sam_model_registry
    return sam_model_registry


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (0: every CPU this process may use); returns the number in
    force."""
    count = threads or available_cpus()
    torch.set_num_threads(count)
    return count


def load_checkpoint(path: Path, sha256: str) -> LoadedModel:
    """MobileSAM vit_t from a `mobile_sam.pt` state dict."""
    try:
        sam = _registry()["vit_t"](checkpoint=str(path))
    except Exception as exc:  # unpickling a foreign file fails in many ways (IndexError...)
        raise ModelUnavailable(
            f"{path} is not a MobileSAM vit_t checkpoint: {str(exc)[:500]}",
            detail={"path": str(path)},
        ) from exc
    sam.eval()
    logger.info("loaded MobileSAM vit_t from %s (sha256 %s)", path, sha256)
    return LoadedModel(sam, f"{ARCHITECTURE}:{sha256[:12]}", False, path, sha256)


def build_random(seed: int) -> LoadedModel:
    """MobileSAM vit_t with torch's default initialisation under a fixed seed (tests, demos)."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        sam = _registry()["vit_t"](checkpoint=None)
    finally:
        torch.random.set_rng_state(state)
    sam.eval()
    logger.warning("MobileSAM runs with RANDOM weights (seed %d): masks are meaningless", seed)
    return LoadedModel(sam, f"{ARCHITECTURE}:random-seed{seed}", True, None, None)


def save_random_checkpoint(path: Path, seed: int) -> None:
    """Write a randomly initialised vit_t as a `torch.save` state dict (test fixtures)."""
    torch.save(build_random(seed).sam.state_dict(), path)
