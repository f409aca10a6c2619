"""Segmentation benchmark -> docs/benchmarks.md, section "segmentation".

On a 640x480 image: the first click (image encoder + mask decoder) and each later click
(decoder only, the encoder output cached; target <= 100 ms), in-process and through the real
HTTP service. Later clicks over HTTP two ways, interleaved click by click so that load from
other processes hits both, each with the previous answer's mask as input: as the web app
sends them now (the image named by its hash, only the RLE and the low-res logits asked for)
and as it did before (the image's bytes with every click, every output). Then the cost of
the two object-query modes side by side: (a) masked crop -> a DINOv2 ViT-B/14 forward of the
crop (NumPy engine), (b) the query image's patch tokens pooled under the mask (no second
forward).

    python bench/segmentation.py            # full run, writes the section
    python bench/segmentation.py --quick    # a few repetitions, prints only (smoke test)
    python bench/segmentation.py --quick --clicks-only   # the click rows only

Random MobileSAM weights unless --weights is given: timings do not depend on the values.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import markdown_table, write_section  # noqa: E402

WIDTH, HEIGHT = 640, 480
TARGET_MS = 100.0


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 80, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    blob = ((yy - 260) / 120.0) ** 2 + ((xx - 300) / 170.0) ** 2 < 1
    pixels[blob] = (200, 150, 60)
    return Image.fromarray(pixels, "RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Later clicks of one session: more points, a box, the previous mask.
CLICKS: list[dict[str, Any]] = [
    {"points": [{"x": 300, "y": 260, "label": 1}]},
    {"points": [{"x": 300, "y": 260, "label": 1}, {"x": 420, "y": 250, "label": 1}]},
    {"points": [{"x": 300, "y": 260, "label": 1}, {"x": 40, "y": 40, "label": 0}]},
    {"box": [130, 140, 470, 380]},
    {"points": [{"x": 300, "y": 260, "label": 1}], "box": [130, 140, 470, 380]},
]


def _stats(times: list[float]) -> tuple[float, float]:
    ms = sorted(t * 1000 for t in times)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


# What the web app asks for on every click (web/src/components/ObjectSelector.vue).
WEB_OUTPUTS = "rle,low_res"


def bench_in_process(weights: str | None, images: int, clicks: int, threads: int
                     ) -> tuple[list[float], list[float], list[float], np.ndarray]:
    """-> first clicks, later clicks (every candidate), later clicks as the web app makes
    them (best mask only, the previous mask as input), a mask for the object modes."""
    from services.segmentation.predictor.model import build_random, load_checkpoint, set_threads
    from services.segmentation.predictor.prompts import PromptArrays, Prompts, check_prompts
    from services.segmentation.predictor.segmenter import Segmenter
    from services.segmentation.predictor.weights import sha256_file

    set_threads(threads)
    loaded = (load_checkpoint(Path(weights), sha256_file(Path(weights))) if weights
              else build_random(0))
    segmenter = Segmenter(loaded, cache_bytes=1 << 30)
    arrays = [check_prompts(Prompts.model_validate(c), width=WIDTH, height=HEIGHT,
                            max_points=64) for c in CLICKS]
    rgb = np.asarray(_image(0))
    segmenter.segment("warm-up", arrays[0], lambda: rgb)  # first-call overheads
    first = []
    for i in range(images):
        start = time.perf_counter()
        result = segmenter.segment(f"image-{i}", arrays[0], lambda: rgb)
        first.append(time.perf_counter() - start)
    later: list[float] = []
    web: list[float] = []
    previous = result.best.low_res_logits
    for i in range(clicks):
        start = time.perf_counter()
        segmenter.segment("image-0", arrays[i % len(arrays)], lambda: rgb)
        later.append(time.perf_counter() - start)
        a = arrays[i % len(arrays)]
        refine = PromptArrays(a.point_coords, a.point_labels, a.box, previous[None], False)
        start = time.perf_counter()
        result = segmenter.segment("image-0", refine, lambda: rgb, candidates=False)
        web.append(time.perf_counter() - start)
        previous = result.best.low_res_logits
    mask = segmenter.segment("image-0", arrays[3], lambda: rgb).best.mask
    return first, later, web, mask


def bench_http(images: int, clicks: int, threads: int
               ) -> tuple[list[float], list[float], list[float], int, int]:
    """-> first clicks, later clicks by bytes with every output, later clicks as the web app
    makes them, and the answer sizes (bytes) of the two kinds of later click."""
    import httpx

    from tests.helpers.procs import ServiceProcess

    with tempfile.TemporaryDirectory() as tmp:
        token = secrets.token_urlsafe(24)
        env = {"IMGSEARCH_DATA_DIR": tmp, "IMGSEARCH_INTERNAL_TOKEN": token,
               "IMGSEARCH_RANDOM_WEIGHTS": "1", "IMGSEARCH_LOG_FORMAT": "text",
               "IMGSEARCH_SEGMENTATION_THREADS": str(threads),
               "IMGSEARCH_SEGMENTATION_DOWNLOAD": "false"}
        proc = ServiceProcess("segmentation", env=env, log_dir=Path(tmp)).start(timeout=300)
        try:
            client = httpx.Client(base_url=proc.url, timeout=300,
                                  headers={"X-Internal-Token": token})

            def click(data: bytes, prompts: dict[str, Any]) -> dict[str, Any]:
                response = client.post("/v1/segment", files={"file": ("q.png", data)},
                                       data={"prompts": json.dumps(prompts)})
                response.raise_for_status()
                answer: dict[str, Any] = response.json()
                return answer

            def by_hash(sha256: str, prompts: dict[str, Any]) -> dict[str, Any]:
                # Multipart, as the browser's FormData and the gateway send it.
                response = client.post("/v1/segment", files={
                    "image_sha256": (None, sha256), "prompts": (None, json.dumps(prompts)),
                    "outputs": (None, WEB_OUTPUTS)})
                response.raise_for_status()
                answer: dict[str, Any] = response.json()
                return answer

            pngs = [_png(_image(seed)) for seed in range(images + 1)]
            click(pngs[-1], CLICKS[0])  # warm-up
            first = [_timed(lambda d=data: click(d, CLICKS[0]), 1)[0] for data in pngs[:-1]]
            answer = click(pngs[0], CLICKS[0])
            sha256 = answer["image_sha256"]
            old_low_res = web_low_res = answer["low_res_mask_b64"]
            old: list[float] = []
            web: list[float] = []
            sizes = [0, 0]
            for i in range(clicks):
                prompts = CLICKS[i % len(CLICKS)]
                start = time.perf_counter()
                full = click(pngs[0], {**prompts, "mask_input_b64": old_low_res})
                old.append(time.perf_counter() - start)
                start = time.perf_counter()
                answer = by_hash(sha256, {**prompts, "mask_input_b64": web_low_res})
                web.append(time.perf_counter() - start)
                old_low_res = full["low_res_mask_b64"]
                web_low_res = answer["low_res_mask_b64"]
                sizes = [len(json.dumps(full)), len(json.dumps(answer))]
            client.close()
        finally:
            proc.stop()
    return first, old, web, sizes[0], sizes[1]


def bench_object_modes(mask: np.ndarray, repeat: int, arch: str
                       ) -> tuple[list[float], list[float], list[float], list[float]]:
    from gateway.objects import masked_crop, pool_patch_tokens
    from services.embedding.engine import Dinov2Model, preprocess

    model = Dinov2Model.random(arch)
    image = _image(0)
    if not mask.any():  # random weights may give an empty mask: use the drawn object
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
        mask = ((yy - 260) / 120.0) ** 2 + ((xx - 300) / 170.0) ** 2 < 1
    query = model.embed(preprocess(image)[None], patch_tokens=True)
    assert query.patch is not None
    patch = query.patch[0]  # (gh, gw, D): computed once for the query image

    def crop_only() -> object:
        return masked_crop(image, mask)

    def crop_and_embed() -> object:
        return model.embed(preprocess(masked_crop(image, mask))[None]).cls[0]

    def pool() -> object:
        return pool_patch_tokens(patch, mask)

    def full_forward() -> object:
        return model.embed(preprocess(image)[None], patch_tokens=True).patch

    crop_and_embed()
    return (_timed(crop_only, repeat * 5), _timed(crop_and_embed, repeat),
            _timed(pool, repeat * 20), _timed(full_forward, repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, print only")
    parser.add_argument("--write", action="store_true", help="write the section with --quick")
    parser.add_argument("--clicks-only", action="store_true",
                        help="the click rows only (no object modes; print only)")
    parser.add_argument("--weights", help="a mobile_sam.pt (default: random weights)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all)")
    parser.add_argument("--arch", default="dinov2_vitb14", help="DINOv2 of the object modes")
    args = parser.parse_args()
    images, clicks, repeat = (2, 10, 2) if args.quick else (5, 50, 5)

    load_before = os.getloadavg()[0]
    first_ip, later_ip, web_ip, mask = bench_in_process(args.weights, images, clicks,
                                                        args.threads)
    first_http, old_http, web_http, old_size, web_size = bench_http(images, clicks,
                                                                    args.threads)
    load_after = os.getloadavg()[0]

    def row(name: str, where: str, times: list[float], target: bool = False) -> list[object]:
        median, p90 = _stats(times)
        verdict = ("yes" if median <= TARGET_MS else "no") if target else ""
        return [name, where, f"{median:.1f}", f"{p90:.1f}", len(times), verdict]

    clicks_table = markdown_table(
        ["click", "path", "median ms", "p90 ms", "n", f"<= {TARGET_MS:.0f} ms"],
        [row("first (encoder + decoder)", "in-process", first_ip),
         row("first (encoder + decoder)", "HTTP", first_http),
         row("later (decoder only), every candidate", "in-process", later_ip, True),
         row("later, as the web app: best mask, previous mask as input", "in-process",
             web_ip, True),
         row("later, as before: the image's bytes every click, every output, previous mask "
             "as input", "HTTP", old_http, True),
         row(f"later, as the web app: by image_sha256, outputs {WEB_OUTPUTS}, previous mask "
             "as input", "HTTP", web_http, True)])
    weights = args.weights or "random weights"
    clicks_text = (
        f"MobileSAM vit_t ({weights}), {WIDTH}x{HEIGHT} PNG, torch threads "
        f"{args.threads or 'all'}. A first click encodes the image (SAM resizes every image "
        f"to 1024 on the long side, so the encoder's cost hardly depends on the image size); "
        f"later clicks on the same image vary the prompts (points, negative points, box) and "
        f"reuse the cached encoder output. HTTP times are client-side round trips to the "
        f"segmentation service. The two kinds of later click over HTTP alternate click by "
        f"click, both sending the previous mask's logits (350 kB of base64): before, the web "
        f"app also uploaded the image ({len(_png(_image(0))) // 1000} kB) and got every "
        f"output back ({old_size // 1000} kB of JSON with random weights' noisy masks); now "
        f"it sends the hash and gets the RLE and the logits ({web_size // 1000} kB). "
        f"Load average (1 min) "
        f"{load_before:.1f} before, {load_after:.1f} after.\n\n{clicks_table}\n")
    if args.clicks_only:
        print("**Clicks only (print only).**\n\n" + clicks_text)
        return

    crop, crop_embed, pool, forward = bench_object_modes(mask, repeat, args.arch)
    pool_ms = _stats(pool)[0]
    modes_table = markdown_table(
        ["object query", "median ms", "p90 ms", "n", "x pooling"],
        [[name, f"{_stats(t)[0]:.2f}", f"{_stats(t)[1]:.2f}", len(t),
          f"{_stats(t)[0] / pool_ms:.1f}x"]
         for name, t in [("(a) masked crop only", crop),
                         (f"(a) masked crop + {args.arch} forward", crop_embed),
                         ("(b) pool patch tokens under the mask", pool),
                         (f"(for reference) {args.arch} forward of the whole query image "
                          "with patch tokens", forward)]])
    body = (
        f"{clicks_text}\n"
        f"Object queries, given the mask (area {int(mask.sum())} px): (a) costs one more "
        f"DINOv2 forward per query; (b) reuses the query image's patch tokens, which the "
        f"search by image computes anyway (the last row).\n\n{modes_table}\n")
    if args.quick:
        body = "**Quick run (few repetitions, noisy): not for comparison.**\n\n" + body
    print(body)
    if args.write or not args.quick:
        write_section("segmentation", "Segmentation: clicks and object queries", body)


if __name__ == "__main__":
    main()
