"""Child process of test_decoder.py (torch stays out of the pytest process): our click path
against `SamPredictor.predict` on a randomly initialised MobileSAM, every output compared
bit for bit. Prints one JSON line: {"compared": N, "mismatches": [...]}.

    python -m tests.segmentation.decoder_check SEED THREADS
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import numpy as np
import torch

from services.segmentation.predictor.model import build_random, set_threads
from services.segmentation.predictor.prompts import PromptArrays, Prompts, check_prompts
from services.segmentation.predictor.segmenter import ImageEmbedding, Segmenter

# Odd sizes too: the crop of SAM's padding and the last resize depend on them.
SIZES = [(480, 640), (97, 61), (64, 1000)]


def _prompts(rng: np.random.Generator, width: int, height: int, i: int) -> dict[str, Any]:
    points = [{"x": float(rng.uniform(0, width)), "y": float(rng.uniform(0, height)),
               "label": int(rng.integers(0, 2))} for _ in range(i % 3 + 1)]
    points[0]["label"] = 1
    box = [float(rng.uniform(0, width / 2)), float(rng.uniform(0, height / 2)),
           float(rng.uniform(width / 2 + 1, width)), float(rng.uniform(height / 2 + 1, height))]
    kinds: list[dict[str, Any]] = [
        {"points": points[:1]},  # one click: three candidates
        {"points": points},
        {"box": box},
        {"points": points, "box": box},
        {"points": points[:1], "multimask": True, "box": box},
        {"points": points[:1], "multimask": False},
    ]
    return kinds[i % len(kinds)]


def _no_image() -> np.ndarray:
    raise AssertionError("the embedding is cached: the image is not needed")


def main() -> None:
    seed, threads = int(sys.argv[1]), int(sys.argv[2])
    set_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mobile_sam import SamPredictor
    loaded = build_random(seed)
    reference = SamPredictor(loaded.sam)
    ours = Segmenter(loaded, cache_bytes=1 << 30)
    rng = np.random.default_rng(seed)
    compared, mismatches = 0, []
    for h, w in SIZES:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        reference.set_image(rgb)
        key = f"{h}x{w}"
        # One encoder pass for both: the encoder is SamPredictor's own in both paths.
        ours.cache.put(key, ImageEmbedding(reference.features, (h, w), reference.input_size))
        previous: np.ndarray | None = None
        for i in range(8):
            arrays = check_prompts(Prompts.model_validate(_prompts(rng, w, h, i)), width=w,
                                   height=h, max_points=64)
            if previous is not None and i % 4 == 3:  # refine the previous best mask
                arrays = PromptArrays(arrays.point_coords, arrays.point_labels, arrays.box,
                                      previous[None], arrays.multimask)
            with torch.inference_mode():
                masks, scores, low_res = reference.predict(
                    point_coords=arrays.point_coords, point_labels=arrays.point_labels,
                    box=arrays.box, mask_input=arrays.mask_input,
                    multimask_output=arrays.multimask)
            order = np.argsort(-scores, kind="stable")
            for candidates in (True, False):
                got = ours.segment(key, arrays, _no_image, candidates=candidates)
                found = [got.best, *got.others]
                want = order if candidates else order[:1]
                same = len(found) == len(want) and all(
                    np.array_equal(c.mask, masks[j]) and c.score == float(scores[j])
                    and np.array_equal(c.low_res_logits, low_res[j])
                    for c, j in zip(found, want, strict=False))
                compared += 1
                if not same:
                    mismatches.append({"size": [h, w], "click": i, "candidates": candidates})
            previous = low_res[order[0]]
    print(json.dumps({"compared": compared, "mismatches": mismatches}))


if __name__ == "__main__":
    main()
