"""Deleting images: the catalog marks the rows `deleting` at once (they vanish from search
in the same instant), one delete job records them, and one `delete` task per image removes
the vector, the file and the row (services/workers/tasks/delete.py)."""

from __future__ import annotations

from gateway.deps import GatewayState, enqueue
from gateway.ingest import start_job
from gateway.schemas import DeleteAnswer
from gateway.security import Principal
from services.common.errors import NotFound
from services.common.queue import DELETE
from services.common.vocabulary import IMAGE_EDGES, ImageStatus, JobKind

# Rows in these states may be deleted; `deleting` ones are already on their way.
DELETABLE = [s for s, targets in IMAGE_EDGES.items() if ImageStatus.deleting in targets]
MAX_ID = 2**63 - 1


async def delete_images(state: GatewayState, principal: Principal,
                        ids: list[int]) -> DeleteAnswer:
    """Ids that do not exist or are already being deleted are skipped (not in `ids`)."""
    wanted = list(dict.fromkeys(i for i in ids if 0 < i <= MAX_ID))
    marked: list[int] = (await state.upstreams.catalog.arequest(
        "POST", "/v1/images/transition",
        json={"ids": wanted, "from": DELETABLE, "to": ImageStatus.deleting})).json()["changed"]
    job = await start_job(state, JobKind.delete, marked, creator=principal.username,
                          params={"ids": marked})
    for image_id in marked:
        await enqueue(state, DELETE, {"image_id": image_id, "job_id": job["id"]})
    return DeleteAnswer(job_id=job["id"], ids=marked)


async def delete_image(state: GatewayState, principal: Principal,
                       image_id: int) -> DeleteAnswer:
    """One image; 404 `image_not_found` when there is no such image (or it is gone)."""
    image = await state.upstreams.get_image(image_id)
    if image.get("status") == ImageStatus.removed:
        raise NotFound(f"image {image_id} does not exist", code="image_not_found")
    return await delete_images(state, principal, [image_id])
