"""The pure-NumPy DINOv2 engine: architectures, weight loading, preprocessing, the model.

No torch at run time: NumPy only (and threadpoolctl to pin BLAS threads).
"""

from services.embedding.engine.config import ARCHITECTURES, Dinov2Config
from services.embedding.engine.errors import WeightsError
from services.embedding.engine.keymap import infer_config, to_canonical, to_hf
from services.embedding.engine.model import Dinov2Model, EmbedResult
from services.embedding.engine.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESIZE_MODES,
    preprocess,
    target_size,
)
from services.embedding.engine.readers import read_state_dict
from services.embedding.engine.weights import save_npz, weights_sha256

__all__ = [
    "ARCHITECTURES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESIZE_MODES",
    "Dinov2Config",
    "Dinov2Model",
    "EmbedResult",
    "WeightsError",
    "infer_config",
    "preprocess",
    "read_state_dict",
    "save_npz",
    "target_size",
    "to_canonical",
    "to_hf",
    "weights_sha256",
]
