"""Peer addresses: one definition of every default port, every caller derives URLs from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import GatewaySettings
from services.common.peers import PORTS, address, peer_url
from services.segmentation.config import SegmentationSettings
from services.workers.config import WorkersSettings

REPO = Path(__file__).resolve().parents[2]


def test_a_moved_catalog_is_followed_by_every_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_CATALOG_PORT", "9104")
    monkeypatch.setenv("IMGSEARCH_INDEX_HOST", "0.0.0.0")
    expected = "http://127.0.0.1:9104"
    assert GatewaySettings().urls()["catalog"] == expected
    assert WorkersSettings().resolved_catalog_url() == expected
    assert SegmentationSettings().resolved_catalog_url() == expected
    # A wildcard bind address is reached on loopback.
    assert WorkersSettings().resolved_index_url() == f"http://127.0.0.1:{PORTS['index']}"


def test_an_explicit_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_SEGMENTATION_CATALOG_URL", "http://catalog:8104/")
    assert SegmentationSettings().resolved_catalog_url() == "http://catalog:8104"
    assert peer_url("embedding", "http://embedding:1") == "http://embedding:1"


def test_each_service_binds_where_its_peers_look(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_SEGMENTATION_PORT", "9102")
    assert SegmentationSettings().port == 9102 == address("segmentation")[1]
    assert GatewaySettings().port == PORTS["gateway"]


def test_no_service_port_is_written_anywhere_else() -> None:
    pattern = re.compile(r"\b(8000|810[1-4])\b")
    found = []
    for folder in ("services", "gateway", "imgsearch"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "peers.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
