"""The backend suite: every Faiss index type and Milvus against brute force on a seeded
Gaussian mixture, plus deletes, replaces, filters, model/dimension refusal and reopening.

Tests that only read use the module's shared `filled` index; tests that write take a
`filled_copy` of their own."""

from __future__ import annotations

import numpy as np
import pytest

from services.index.store.errors import DimensionMismatch, ModelMismatch
from services.index.store.protocol import VectorIndex
from tests.index.conftest import MODEL, D, Data, K, N, OpenIndex, stored
from tests.index.data import brute_force, recall_at_k


def test_recall_against_brute_force(filled: VectorIndex, kind: str, data: Data) -> None:
    assert filled.count == N
    D_, I = filled.search(data.xq, K)
    recall = recall_at_k(I, brute_force(data.xq, data.xb, data.ids, K))
    if kind == "flat":
        assert recall == 1.0
    else:
        assert recall >= 0.95, f"{kind} recall@10 = {recall}"
    # Scores are inner products, best first.
    assert np.all(np.diff(D_, axis=1) <= 1e-6)
    row = {int(i): r for r, i in enumerate(data.ids)}
    np.testing.assert_allclose(D_[0], data.xb[[row[int(i)] for i in I[0]]] @ data.xq[0],
                               atol=2e-2)


def test_deleted_ids_never_return_and_k_results_remain(filled_copy: VectorIndex,
                                                       data: Data) -> None:
    index, ids, xq = filled_copy, data.ids, data.xq
    gone = ids[: int(N * 0.9)]
    assert index.remove(np.concatenate([gone, [999999999]])) == len(gone)
    assert index.remove(gone[:10]) == 0  # idempotent
    assert index.count == N - len(gone)
    _, I = index.search(xq, K)
    assert not np.isin(I, gone).any()
    assert (I >= 0).all(), "fewer than k results while k live vectors exist"
    live = ids[len(gone):]
    assert recall_at_k(I, brute_force(xq, data.xb[len(gone):], live, K)) >= 0.95
    found, _ = index.get(gone[:5])
    assert len(found) == 0
    index.remove(ids[len(gone) + 3 :])  # 3 left: fewer than k, so pads
    _, I = index.search(xq[:3], K)
    assert sorted(set(I[0][I[0] >= 0].tolist())) == sorted(ids[len(gone) : len(gone) + 3].tolist())
    assert (I[:, 3:] == -1).all()


def test_upsert_replaces_the_vector_of_an_existing_id(filled_copy: VectorIndex,
                                                      kind: str, data: Data) -> None:
    index, ids, xq = filled_copy, data.ids, data.xq
    target = ids[7]
    index.upsert(np.array([target]), xq[:1], MODEL)
    assert index.count == N
    _found, vectors = index.get(np.array([target]))
    np.testing.assert_allclose(vectors[0], stored(kind, xq[0]), rtol=1e-6)
    _, I = index.search(xq[:1], K)
    assert I[0, 0] == target
    assert list(I[0]).count(target) == 1
    # A batch naming one id twice keeps the last vector.
    index.upsert(np.array([ids[8], ids[8]]), xq[1:3], MODEL)
    _, vectors = index.get(np.array([ids[8]]))
    np.testing.assert_allclose(vectors[0], stored(kind, xq[2]), rtol=1e-6)


def test_filtered_search_small_set_is_exact(filled: VectorIndex, data: Data) -> None:
    xb, ids, xq = data.xb, data.ids, data.xq
    rng = np.random.default_rng(5)
    rows = rng.choice(N, 40, replace=False)
    _, I = filled.search(xq, K, allowed_ids=np.concatenate([ids[rows], [123456789]]))
    np.testing.assert_array_equal(I, brute_force(xq, xb[rows], ids[rows], K))
    _, I = filled.search(xq, K, allowed_ids=ids[rows[:4]])
    assert (I[:, 4:] == -1).all() and set(I[0, :4].tolist()) == set(ids[rows[:4]].tolist())
    _, I = filled.search(xq, K, allowed_ids=np.array([], dtype=np.int64))
    assert (I == -1).all()


def test_filtered_search_large_set_is_correct(filled_copy: VectorIndex, data: Data) -> None:
    xb, ids, xq = data.xb, data.ids, data.xq
    rows = np.arange(0, N, 2)  # 1000 allowed: above filter_exact_max, the approximate path
    filled_copy.remove(ids[rows[:100]])  # and some of them deleted
    alive = rows[100:]
    _, I = filled_copy.search(xq, K, allowed_ids=ids[rows])
    assert np.isin(I, ids[alive]).all()
    assert recall_at_k(I, brute_force(xq, xb[alive], ids[alive], K)) >= 0.95


def test_model_and_dimension_are_refused(filled: VectorIndex, data: Data) -> None:
    with pytest.raises(ModelMismatch) as err:
        filled.upsert(np.array([1]), data.xb[:1], "another:model")
    assert err.value.code == "model_mismatch" and err.value.status == 409
    with pytest.raises(DimensionMismatch) as derr:
        filled.upsert(np.array([1]), np.ones((1, D + 1), np.float32), MODEL)
    assert derr.value.code == "dimension_mismatch" and derr.value.status == 422
    with pytest.raises(DimensionMismatch):
        filled.search(np.ones((1, D - 1), np.float32), K)
    assert filled.count == N and filled.model == MODEL and filled.dim == D


def test_empty_index_adopts_the_first_model(open_index: OpenIndex) -> None:
    index = open_index()
    assert index.count == 0 and index.model is None
    _, I = index.search(np.ones((1, 8), np.float32), 5)
    assert (I == -1).all()
    index.upsert(np.array([5]), np.ones((1, 8), np.float32), "m:a")
    assert index.model == "m:a" and index.dim == 8


def test_ids_pages_in_ascending_order(filled: VectorIndex, data: Data) -> None:
    seen: list[int] = []
    after = -1
    while True:
        page = filled.ids(after, 700)
        seen.extend(page.tolist())
        if len(page) < 700:
            break
        after = int(page[-1])
    assert seen == sorted(data.ids.tolist())


def test_reopen_keeps_everything(filled_copy: VectorIndex, open_index: OpenIndex, kind: str,
                                 data: Data) -> None:
    index, ids, xq = filled_copy, data.ids, data.xq
    index.remove(ids[:100])
    index.upsert(ids[100:101], xq[:1], MODEL)
    _, before = index.search(xq, K)
    index.close(snapshot=kind == "hnsw")  # hnsw from a new snapshot, the others from the log
    again = open_index()
    assert again.count == N - 100 and again.model == MODEL
    _, after = again.search(xq, K)
    assert recall_at_k(after, before) >= 0.99
    _, vectors = again.get(ids[100:101])
    np.testing.assert_allclose(vectors[0], stored(kind, xq[0]), rtol=1e-6)


def test_rebuild_to_every_type(kind: str, data: Data, request: pytest.FixtureRequest) -> None:
    index: VectorIndex = request.getfixturevalue("filled_copy")
    ids = data.ids
    index.remove(ids[:50])
    truth = brute_force(data.xq, data.xb[50:], ids[50:], K)
    # From each type to every other (and back to flat): training on a live index.
    # milvus-lite builds only its own (flat) index: Milvus re-creates that one in place.
    others = [] if kind == "milvus" else [t for t in ("hnsw", "ivf_sq8", "ivf_pq") if t != kind]
    for target in [*others, "flat"]:
        index.rebuild(target, {})
        assert index.stats().type == target and index.count == N - 50
        _, I = index.search(data.xq, K)
        assert recall_at_k(I, truth) >= 0.95, target


def test_compressed_types_keep_their_vectors_on_disk(filled: VectorIndex, kind: str) -> None:
    """IVF types hold only codes in RAM; the float16 rows are in the working file."""
    stats = filled.stats()
    if kind in ("ivf_sq8", "ivf_pq"):
        assert N * D * 2 <= stats.disk_bytes < N * D * 4  # float16 rows
    elif kind != "milvus":
        assert stats.disk_bytes == 0
