"""Finding the weights file of a model, and checking it against its recorded SHA-256.

Order: the configured file; `<models_dir>/<model>.npz`, `.safetensors`, `.pth`; for ViT-B/14
the original layout's `./vit-dinov2-base.npz` in the working directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from services.common.errors import DomainError
from services.embedding.weights_store.sources import canonical_model_name

SUFFIXES = (".npz", ".safetensors", ".pth")
LEGACY_VITB = "vit-dinov2-base.npz"
SIDECAR_SUFFIX = ".sha256"


class WeightsNotFound(DomainError):
    code = "weights_not_found"
    status = 503


class ChecksumMismatch(DomainError):
    code = "checksum_mismatch"
    status = 503


def candidates(model: str, models_dir: Path, cwd: Path) -> list[Path]:
    """Every path looked at for `model` when no file is configured, in order."""
    name = canonical_model_name(model)
    paths = [models_dir / f"{name}{suffix}" for suffix in SUFFIXES]
    if name == "dinov2_vitb14":
        paths.append(cwd / LEGACY_VITB)
    return paths


def how_to_get(model: str) -> str:
    return (
        f"get them with `imgsearch weights download {model}`, or point to a file with "
        "IMGSEARCH_EMBEDDING_WEIGHTS=/path/to/weights (.npz, .safetensors or .pth); "
        "IMGSEARCH_RANDOM_WEIGHTS=1 runs with random weights (tests and offline demos only)"
    )


def find_weights(model: str, configured: Path | None, models_dir: Path, cwd: Path) -> Path:
    """The weights file to load; `WeightsNotFound` (with what to do) when there is none."""
    if configured is not None:
        if configured.is_file():
            return configured
        raise WeightsNotFound(
            f"the configured weights file {configured} does not exist; {how_to_get(model)}",
            detail={"looked": [str(configured)]},
        )
    looked = candidates(model, models_dir, cwd)
    for path in looked:
        if path.is_file():
            return path
    raise WeightsNotFound(
        f"no weights for {model} (looked in {', '.join(str(p) for p in looked)}); "
        f"{how_to_get(model)}",
        detail={"looked": [str(p) for p in looked]},
    )


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_sidecar(path: Path) -> str | None:
    """The digest recorded beside `path` (first word of `<path>.sha256`), or None."""
    try:
        text = sidecar(path).read_text().strip()
    except FileNotFoundError:
        return None
    return text.split()[0].lower() if text else None


def write_sidecar(path: Path, digest: str) -> None:
    sidecar(path).write_text(f"{digest}  {path.name}\n")


def verify_sidecar(path: Path) -> str | None:
    """Check `path` against its recorded digest when there is one; returns the digest."""
    expected = read_sidecar(path)
    if expected is None:
        return None
    actual = file_sha256(path)
    if actual != expected:
        raise ChecksumMismatch(
            f"{path} has SHA-256 {actual} but {sidecar(path).name} records {expected}: the "
            "file is damaged or was replaced; download it again "
            f"(`imgsearch weights download ... --force`) or remove {sidecar(path).name}",
            detail={"expected": expected, "actual": actual},
        )
    return actual
