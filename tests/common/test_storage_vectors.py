from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from services.common.storage import InvalidStorageKey, image_key, resolve, write_atomic
from services.common.vectors import InvalidVectors, encode_b64, l2_normalize, parse_vectors


def test_keys_are_content_addressed(tmp_path: Path) -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    key = image_key(sha, "jpg")
    assert key == f"{sha[:2]}/{sha}.jpg"
    write_atomic(resolve(tmp_path, key), b"data")
    assert resolve(tmp_path, key).read_bytes() == b"data"


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "ab/../../x.jpg",
                                 "ab/" + "0" * 64 + ".exe", ""])
def test_hostile_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidStorageKey):
        resolve(tmp_path, key)


def test_vectors_both_forms() -> None:
    rng = np.random.default_rng(0)
    array = l2_normalize(rng.normal(size=(3, 8)).astype(np.float32))
    assert np.allclose(np.linalg.norm(array, axis=1), 1)
    from_b64 = parse_vectors(None, encode_b64(array), 8)
    from_json = parse_vectors(array.tolist(), None, None)
    assert np.array_equal(from_b64, array) and np.allclose(from_json, array)


@pytest.mark.parametrize(("vectors", "b64", "dim"), [
    (None, None, None), ([[1.0]], "AAAA", 1), (None, "AAA", 1), (None, "AAAAAA==", 3),
    ([[1.0, 2.0], [1.0]], None, None), ([[float("nan")]], None, None),
])
def test_invalid_vectors(vectors: list[list[float]] | None, b64: str | None,
                         dim: int | None) -> None:
    with pytest.raises(InvalidVectors):
        parse_vectors(vectors, b64, dim)
