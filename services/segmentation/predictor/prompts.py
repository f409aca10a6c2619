"""Prompts of one click: parsed from JSON, checked against the image, turned into arrays.

Coordinates are original image pixels (x right, y down), floats allowed; a point may lie on
the far edge (0 <= x <= width, 0 <= y <= height). A box is `[x0, y0, x1, y1]` with
0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.segmentation.predictor.errors import InvalidPrompts
from services.segmentation.predictor.masks import decode_logits


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: float = Field(allow_inf_nan=False)
    y: float = Field(allow_inf_nan=False)
    # 1: the object includes this point; 0: it does not. Checked by hand for a clear error.
    label: int


class Prompts(BaseModel):
    """The `prompts` form field of `POST /v1/segment`."""

    model_config = ConfigDict(extra="forbid")

    points: list[Point] = Field(default_factory=list)
    box: list[float] | None = None
    # `low_res_mask_b64` of the previous answer on the same image: refines that mask.
    mask_input_b64: str | None = None
    # `selection_id` of the previous answer: the same, with the mask kept on the server.
    selection_id: str | None = Field(default=None, max_length=64)
    # None: several candidate masks when a single point leaves the object ambiguous.
    multimask: bool | None = None


@dataclass(frozen=True)
class PromptArrays:
    """What SamPredictor.predict takes: coords (N, 2) float32 pixels, labels (N,) int32,
    box (4,) float32 pixels, mask_input (1, 256, 256) float32 logits."""

    point_coords: NDArray[np.float32] | None
    point_labels: NDArray[np.int32] | None
    box: NDArray[np.float32] | None
    mask_input: NDArray[np.float32] | None
    multimask: bool


def parse_prompts(text: str | None) -> Prompts:
    """The JSON text of the form field -> Prompts; anything malformed is `invalid_prompts`."""
    if text is None or not text.strip():
        raise InvalidPrompts("give prompts: at least one point or a box")
    try:
        raw: Any = json.loads(text)
    except ValueError as exc:
        raise InvalidPrompts(f"prompts is not valid JSON: {exc}") from exc
    try:
        return Prompts.model_validate(raw)
    except ValidationError as exc:
        detail = [{"loc": [str(p) for p in err["loc"]], "msg": err["msg"]}
                  for err in exc.errors()]
        raise InvalidPrompts("prompts do not have the expected shape", detail=detail) from exc


def check_prompts(prompts: Prompts, *, width: int, height: int, max_points: int,
                  mask_input: NDArray[np.float32] | None = None) -> PromptArrays:
    """Check `prompts` against a `width` x `height` image; raise `invalid_prompts` if wrong.

    `mask_input`: the (1, 256, 256) logits of the selection `selection_id` names."""
    if prompts.mask_input_b64 and mask_input is not None:
        raise InvalidPrompts("give mask_input_b64 or selection_id, not both")
    if not prompts.points and prompts.box is None:
        raise InvalidPrompts("give prompts: at least one point or a box")
    if len(prompts.points) > max_points:
        raise InvalidPrompts(f"{len(prompts.points)} points; the limit is {max_points}",
                             detail={"max_points": max_points})
    for i, point in enumerate(prompts.points):
        if point.label not in (0, 1):
            raise InvalidPrompts(f"point {i} has label {point.label}; labels are 1 (object) "
                                 "or 0 (background)", detail={"point": i})
        if not (0 <= point.x <= width and 0 <= point.y <= height):
            raise InvalidPrompts(
                f"point {i} ({point.x:g}, {point.y:g}) is outside the {width}x{height} image",
                detail={"point": i, "width": width, "height": height})
    if prompts.points and not any(p.label == 1 for p in prompts.points) and prompts.box is None:
        raise InvalidPrompts("give at least one object point (label 1) or a box")
    box = None
    if prompts.box is not None:
        if len(prompts.box) != 4 or not all(np.isfinite(prompts.box)):
            raise InvalidPrompts("box must be four finite numbers [x0, y0, x1, y1]")
        x0, y0, x1, y1 = prompts.box
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise InvalidPrompts(
                f"box {prompts.box} is inverted or outside the {width}x{height} image",
                detail={"box": prompts.box, "width": width, "height": height})
        box = np.asarray(prompts.box, dtype=np.float32)
    coords = labels = None
    if prompts.points:
        coords = np.asarray([[p.x, p.y] for p in prompts.points], dtype=np.float32)
        labels = np.asarray([p.label for p in prompts.points], dtype=np.int32)
    if prompts.mask_input_b64:
        mask_input = decode_logits(prompts.mask_input_b64)
    multimask = prompts.multimask
    if multimask is None:
        # One click is ambiguous (part or whole?): offer candidates. More prompts settle it.
        multimask = len(prompts.points) == 1 and box is None and mask_input is None
    return PromptArrays(coords, labels, box, mask_input, multimask)
