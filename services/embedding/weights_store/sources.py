"""Model names and the public DINOv2 release the official checkpoints come from.

Meta publishes the checkpoints as `<base>/<arch>/<arch>[_reg4]_pretrain.pth` and no digests,
so none is pinned here: the first download records one (see download.py).
"""

from __future__ import annotations

from services.common.errors import DomainError

ARCHS = ("dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14")
MODEL_NAMES = tuple(name for arch in ARCHS for name in (arch, f"{arch}_reg"))


class UnknownModel(DomainError):
    code = "unknown_model"
    status = 422


def canonical_model_name(name: str) -> str:
    """`dinov2_vitb14`, `dinov2_vitb14_reg` or `dinov2_vitb14_reg4` -> the config's spelling."""
    key = name.strip().lower()
    if key.endswith("_reg4"):
        key = key[: -len("4")]
    if key not in MODEL_NAMES:
        raise UnknownModel(
            f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}",
            detail={"known": list(MODEL_NAMES)},
        )
    return key


def official_url(name: str, base_url: str) -> str:
    """The release URL of a model's official `.pth` checkpoint under `base_url`."""
    model = canonical_model_name(name)
    arch = model.removesuffix("_reg")
    full = f"{arch}_reg4" if model.endswith("_reg") else arch
    return f"{base_url.rstrip('/')}/{arch}/{full}_pretrain.pth"
