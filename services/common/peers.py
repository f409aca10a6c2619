"""Where every service listens, and the one way the others find it.

Each service's default port is defined here and nowhere else; its settings section
(`catalog:`, `index:`, ..., env `IMGSEARCH_<SECTION>_HOST` / `_PORT`) may move it. A peer's URL
is derived from that section, so a process that moves the catalog with
`IMGSEARCH_CATALOG_PORT` moves it for every caller at once. An explicit URL (the compose file's
`http://catalog:8104`) still wins where a caller is given one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.settings import SectionSettings

Peer = Literal["gateway", "embedding", "segmentation", "index", "catalog"]

# Default ports (the design's local ports); config.yaml and the environment may move them.
PORTS: dict[Peer, int] = {
    "gateway": 8000,
    "embedding": 8101,
    "segmentation": 8102,
    "index": 8103,
    "catalog": 8104,
}


def port_field(peer: Peer) -> int:
    """A service settings class's `port` field, defaulting to the peer's port."""
    default: int = Field(default=PORTS[peer], ge=0, le=65535)
    return default


class _GatewayAddress(SectionSettings, section="gateway"):
    port: int = port_field("gateway")


class _EmbeddingAddress(SectionSettings, section="embedding"):
    port: int = port_field("embedding")


class _SegmentationAddress(SectionSettings, section="segmentation"):
    port: int = port_field("segmentation")


class _IndexAddress(SectionSettings, section="index"):
    port: int = port_field("index")


class _CatalogAddress(SectionSettings, section="catalog"):
    port: int = port_field("catalog")


_ADDRESSES: dict[Peer, type[SectionSettings]] = {
    "gateway": _GatewayAddress,
    "embedding": _EmbeddingAddress,
    "segmentation": _SegmentationAddress,
    "index": _IndexAddress,
    "catalog": _CatalogAddress,
}


def address(peer: Peer) -> tuple[str, int]:
    """(host, port) the peer binds, read from its own settings section."""
    settings = _ADDRESSES[peer]()
    return settings.host, settings.port


def peer_url(peer: Peer, explicit: str = "") -> str:
    """The base URL other processes use to reach `peer`; `explicit` (a configured URL) wins."""
    if explicit:
        return explicit.rstrip("/")
    host, port = address(peer)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}"
