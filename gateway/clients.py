"""The internal services as the gateway calls them: one `ServiceClient` each, and the few
catalog/index calls several routes share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common.errors import NotFound
from services.common.http import ServiceClient
from services.common.vocabulary import ImageStatus

# Ids per catalog lookup (under the catalog's `max_lookup_ids`, 10000 by default): a deep
# result page asks for more than one call carries.
LOOKUP_CHUNK = 2000


@dataclass
class Upstreams:
    catalog: ServiceClient
    index: ServiceClient
    embedding: ServiceClient
    segmentation: ServiceClient

    @classmethod
    def create(cls, urls: dict[str, str], token: str, *, timeout: float,
               attempts: int) -> Upstreams:
        def make(name: str) -> ServiceClient:
            return ServiceClient(name, urls[name], token, timeout=timeout, attempts=attempts)

        return cls(catalog=make("catalog"), index=make("index"), embedding=make("embedding"),
                   segmentation=make("segmentation"))

    async def aclose(self) -> None:
        for client in (self.catalog, self.index, self.embedding, self.segmentation):
            await client.aclose()

    async def get_image(self, image_id: int) -> dict[str, Any]:
        """The catalog row of `image_id`; 404 `image_not_found` when absent."""
        if image_id < 1 or image_id >= 2**63:
            raise NotFound(f"image {image_id} does not exist", code="image_not_found")
        response = await self.catalog.arequest("GET", f"/v1/images/{image_id}")
        image: dict[str, Any] = response.json()
        return image

    async def lookup(self, ids: list[int],
                     status: str | None = ImageStatus.indexed) -> list[dict[str, Any]]:
        """Catalog rows of `ids` in that order; missing (or other-status) ids left out."""
        images: list[dict[str, Any]] = []
        for start in range(0, len(ids), LOOKUP_CHUNK):
            body: dict[str, Any] = {"ids": ids[start:start + LOOKUP_CHUNK]}
            if status:
                body["status"] = status
            response = await self.catalog.arequest("POST", "/v1/images/lookup", json=body)
            images.extend(response.json()["images"])
        return images

    async def embedding_info(self) -> dict[str, Any]:
        info: dict[str, Any] = (await self.embedding.arequest("GET", "/v1/info")).json()
        return info
