"""Image routes: create (one or a batch), read, list, lookup, transitions, tags, stats."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.catalog.api.deps import (
    DbDep,
    SettingsDep,
    check_count,
    page_limit,
)
from services.catalog.repository import images as repo
from services.catalog.repository import tags as tag_repo
from services.catalog.repository.images import ImageRecord, Move, NewImage
from services.catalog.repository.session import read, transact
from services.catalog.schemas import (
    BulkTransition,
    BulkTransitionResult,
    Ids,
    IdsByTags,
    ImageCreate,
    ImageCreateBatch,
    ImageCreated,
    ImageList,
    ImageOut,
    Images,
    ImagesCreated,
    Lookup,
    ModelUpdate,
    ModelUpdateResult,
    Order,
    Stats,
    TagCount,
    TagList,
    TagsBody,
    Transition,
    TransitionBatch,
    TransitionBatchResult,
)
from services.common.errors import InvalidRequest
from services.common.vocabulary import ImageStatus

router = APIRouter(tags=["images"])


def _out(record: ImageRecord) -> ImageOut:
    return ImageOut.model_validate(asdict(record))


@router.post("/v1/images", status_code=201, response_model=ImageCreated)
def create_image(body: ImageCreate, response: Response, db: DbDep,
                 settings: SettingsDep) -> ImageCreated:
    """Create a pending image row, or return the existing row of the same sha256."""
    check_count("tags", len(body.tags), settings.max_tags_per_request)
    record, created = transact(db, repo.create_image, **body.model_dump())
    if not created:
        response.status_code = 200
    return ImageCreated(image=_out(record), created=created)


@router.post("/v1/images/batch", response_model=ImagesCreated)
def create_images(body: ImageCreateBatch, db: DbDep, settings: SettingsDep) -> ImagesCreated:
    """`POST /v1/images` for many images in one transaction: each gets a new pending row or
    the existing row of its sha256, with `created` saying which."""
    check_count("images", len(body.images), settings.max_lookup_ids)
    for image in body.images:
        check_count("tags", len(image.tags), settings.max_tags_per_request)
    results = transact(db, repo.create_images,
                       images=[NewImage(**image.model_dump()) for image in body.images])
    return ImagesCreated(results=[ImageCreated(image=_out(record), created=created)
                                  for record, created in results])


@router.get("/v1/images/stale", response_model=Images)
def stale_images(
    db: DbDep,
    settings: SettingsDep,
    status: ImageStatus = ImageStatus.pending,
    older_than_s: Annotated[float, Query(ge=0)] = 900.0,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Images:
    """Rows stuck in a status for longer than older_than_s seconds, oldest first."""
    limit = page_limit(limit, settings.max_page_size, default=100)
    records = read(db, repo.stale, status=status.value, older_than_s=older_than_s, limit=limit)
    return Images(images=[_out(r) for r in records])


@router.get("/v1/images/{image_id}", response_model=ImageOut)
def get_image(image_id: int, db: DbDep) -> ImageOut:
    """One image by id."""
    return _out(read(db, repo.get_image, image_id=image_id))


@router.get("/v1/images", response_model=ImageList)
def list_images(
    db: DbDep,
    settings: SettingsDep,
    status: Annotated[list[ImageStatus] | None, Query()] = None,
    tag: Annotated[list[str] | None, Query()] = None,
    uploader: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    q: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    after: Annotated[str | None, Query(max_length=200)] = None,
    total: bool = True,
    order: Order = Order.desc,
) -> ImageList:
    """A page of images with filters (status and tag repeatable; a date range; `q` a
    case-insensitive substring of the original filename). Deep pages: pass the previous
    page's `next` as `after` (constant time at any depth) and `total=false`."""
    limit = page_limit(limit, settings.max_page_size)
    if created_from and created_to and created_from > created_to:
        raise InvalidRequest("created_from is after created_to")
    records, count = read(
        db, repo.list_images, statuses=[s.value for s in status or []], tags=tag or [],
        uploader=uploader, created_from=created_from, created_to=created_to, q=q, limit=limit,
        offset=offset, after=repo.decode_cursor(after) if after else None,
        descending=order is Order.desc, with_total=total,
    )
    following = repo.encode_cursor(records[-1]) if len(records) == limit else None
    return ImageList(images=[_out(r) for r in records], total=count, next=following)


@router.post("/v1/images/lookup", response_model=Images)
def lookup_images(body: Lookup, db: DbDep, settings: SettingsDep) -> Images:
    """Images by ids in the order given; missing or other-status ids are left out."""
    check_count("ids", len(body.ids), settings.max_lookup_ids)
    records = read(db, repo.lookup, ids=body.ids,
                   status=body.status.value if body.status else None)
    return Images(images=[_out(r) for r in records])


@router.post("/v1/images/ids", response_model=Ids)
def ids_by_tags(body: IdsByTags, db: DbDep, settings: SettingsDep) -> Ids:
    """Ids of images having all the tags (for filtered search)."""
    check_count("tags", len(body.tags), settings.max_tags_per_request)
    ids = read(db, repo.ids_with_tags, tags=body.tags,
               status=body.status.value if body.status else None)
    return Ids(ids=ids)


@router.post("/v1/images/transition", response_model=BulkTransitionResult)
def bulk_transition(body: BulkTransition, db: DbDep,
                    settings: SettingsDep) -> BulkTransitionResult:
    """Move many images from any of the given statuses to one (bulk delete marking)."""
    check_count("ids", len(body.ids), settings.max_lookup_ids)
    changed, unchanged = transact(db, repo.bulk_transition, ids=body.ids,
                                  from_=[s.value for s in body.from_], to=body.to.value)
    return BulkTransitionResult(changed=changed, unchanged=unchanged)


@router.post("/v1/images/transitions", response_model=TransitionBatchResult)
def transition_batch(body: TransitionBatch, db: DbDep,
                     settings: SettingsDep) -> TransitionBatchResult:
    """Compare-and-set many images `from` -> `to`, each with its own fields; a row not in
    `from` is reported with its status and left as it is."""
    check_count("items", len(body.items), settings.max_lookup_ids)
    moved = transact(db, repo.transition_batch, from_=body.from_.value, to=body.to.value,
                     moves=[Move(**item.model_dump()) for item in body.items])
    return TransitionBatchResult.model_validate({"results": [asdict(m) for m in moved]})


@router.post("/v1/images/model", response_model=ModelUpdateResult)
def set_model(body: ModelUpdate, db: DbDep, settings: SettingsDep) -> ModelUpdateResult:
    """Record the model id of indexed images (after a reindex); other statuses unchanged."""
    check_count("ids", len(body.ids), settings.max_lookup_ids)
    updated, unchanged = transact(db, repo.set_model, ids=body.ids, model_id=body.model_id)
    return ModelUpdateResult(updated=updated, unchanged=unchanged)


@router.post("/v1/images/{image_id}/transition", response_model=ImageOut)
def transition(image_id: int, body: Transition, db: DbDep) -> ImageOut:
    """Compare-and-set one image's status; 409 status_conflict when it is not in `from`."""
    record = transact(
        db, repo.transition, image_id=image_id, from_=body.from_.value, to=body.to.value,
        model_id=body.model_id, error=body.error, thumbnail_key=body.thumbnail_key,
        near_duplicate_of=body.near_duplicate_of,
    )
    return _out(record)


@router.delete("/v1/images/{image_id}")
def delete_image(image_id: int, db: DbDep) -> dict[str, object]:
    """Remove a row that is deleting or removed."""
    transact(db, repo.delete_image, image_id=image_id)
    return {"id": image_id, "deleted": True}


@router.post("/v1/images/{image_id}/tags", response_model=ImageOut)
def add_tags(image_id: int, body: TagsBody, db: DbDep, settings: SettingsDep) -> ImageOut:
    """Add tags to an image (tags are trimmed and lower-cased)."""
    check_count("tags", len(body.tags), settings.max_tags_per_request)
    return _out(transact(db, repo.add_tags, image_id=image_id, tags=body.tags))


@router.delete("/v1/images/{image_id}/tags", response_model=ImageOut)
def remove_tags(image_id: int, body: TagsBody, db: DbDep, settings: SettingsDep) -> ImageOut:
    """Remove tags from an image."""
    check_count("tags", len(body.tags), settings.max_tags_per_request)
    return _out(transact(db, repo.remove_tags, image_id=image_id, tags=body.tags))


@router.get("/v1/tags", response_model=TagList)
def list_tags(db: DbDep) -> TagList:
    """Every tag with its image count."""
    counts = read(db, tag_repo.tag_counts)
    return TagList(tags=[TagCount(name=name, count=n) for name, n in counts])


@router.get("/v1/stats", response_model=Stats)
def stats(db: DbDep) -> Stats:
    """Image counts per status."""
    counts = read(db, repo.status_counts)
    return Stats(images=counts, total=sum(counts.values()))
