"""The Milvus backend pointed at a Milvus server URI (milvus-lite's gRPC server, the same
pymilvus client a Milvus cluster is reached with): the service's guarantees hold across a
SIGKILL of the server: every acknowledged write is there after it restarts, and a delete
never comes back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.index.config import IndexSettings
from services.index.store.factory import open_generation
from services.index.store.protocol import VectorIndex
from tests.helpers.procs import MilvusServer
from tests.helpers.requirements import missing
from tests.index.conftest import GEN, MODEL, SMALL, Data, K, milvus_available
from tests.index.data import brute_force, recall_at_k


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MilvusServer]:
    reason = milvus_available(tmp_path)
    if reason:
        missing("milvus-lite", reason)
    srv = MilvusServer(tmp_path / "milvus-data", tmp_path / "milvus.log")
    srv.start()
    yield srv
    srv.kill()


def _open(server: MilvusServer, root: Path) -> VectorIndex:
    settings = IndexSettings(backend="milvus", type="flat", milvus_uri=server.uri, **SMALL)
    return open_generation(settings, root / GEN)


def test_server_uri_keeps_acknowledged_writes_and_deletes_across_sigkill(
        server: MilvusServer, data: Data, tmp_path: Path) -> None:
    index = _open(server, tmp_path)
    for start in range(0, len(data.ids), 500):
        index.upsert(data.ids[start : start + 500], data.xb[start : start + 500], MODEL)
    _, I = index.search(data.xq, K)
    assert recall_at_k(I, brute_force(data.xq, data.xb, data.ids, K)) == 1.0
    gone = data.ids[:300]
    assert index.remove(gone) == 300
    replaced = data.ids[300]
    index.upsert(np.array([replaced]), data.xq[:1], MODEL)
    # Acknowledged: no flush, no snapshot, no clean close before the kill.
    server.kill()
    server.start()
    again = _open(server, tmp_path)
    try:
        assert again.count == len(data.ids) - 300 and again.model == MODEL
        found, vectors = again.get(data.ids)
        assert found.tolist() == data.ids[300:].tolist()
        np.testing.assert_allclose(vectors[0], data.xq[0], rtol=1e-6)
        np.testing.assert_allclose(vectors[1:], data.xb[301:], rtol=1e-6)
        _, I = again.search(data.xb[:50], K)  # the deleted vectors' own neighbourhoods
        assert not np.isin(I, gone).any(), "a deleted vector came back"
        live = np.isin(data.ids, gone, invert=True)
        xb = data.xb.copy()
        xb[300] = data.xq[0]
        _, I = again.search(data.xq, K)
        assert recall_at_k(I, brute_force(data.xq, xb[live], data.ids[live], K)) == 1.0
        # Filtered search (allowed ids) over the server, small and large sets.
        allowed = data.ids[::3]
        _, I = again.search(data.xq[:5], K, allowed_ids=allowed)
        ok = np.isin(data.ids, allowed) & live
        np.testing.assert_array_equal(I, brute_force(data.xq[:5], xb[ok], data.ids[ok], K))
    finally:
        again.close(snapshot=False)
        index.close(snapshot=False)
