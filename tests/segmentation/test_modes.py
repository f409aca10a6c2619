"""How the service starts: random weights only when asked, and without weights a clear 503
that says what to do (never a silent fallback)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers.procs import ServiceProcess, free_port
from tests.segmentation.conftest import png_bytes

pytestmark = [pytest.mark.torch, pytest.mark.integration, pytest.mark.slow]

Start = Callable[..., tuple[ServiceProcess, str, Path]]


def _wait_settled(proc: ServiceProcess, token: str) -> httpx.Response:
    """/v1/info once the model has either loaded or failed (not while loading)."""
    import time

    deadline = time.monotonic() + 180
    while True:
        response = httpx.get(proc.url + "/v1/info", headers={"X-Internal-Token": token})
        if response.status_code != 503 or response.json()["error"]["code"] != "model_loading":
            return response
        if time.monotonic() > deadline:
            raise TimeoutError(proc.tail())
        time.sleep(0.5)


def test_random_weights_only_when_enabled_and_said(start_segmentation: Start) -> None:
    # One decoder thread beside two for the encoder: torch switches between the two counts.
    proc, token, _ = start_segmentation(IMGSEARCH_RANDOM_WEIGHTS="1",
                                        IMGSEARCH_SEGMENTATION_RANDOM_SEED="7",
                                        IMGSEARCH_SEGMENTATION_DECODER_THREADS="1")
    info = _wait_settled(proc, token).json()
    assert info["random_weights"] is True
    assert info["model"] == "mobile_sam_vit_t:random-seed7"
    assert info["weights_sha256"] is None
    assert (info["threads"], info["decoder_threads"]) == (2, 1)
    response = httpx.post(proc.url + "/v1/segment", headers={"X-Internal-Token": token},
                          files={"file": ("x.png", png_bytes(32, 24), "image/png")},
                          data={"prompts": '{"box": [4, 4, 20, 20]}'}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "mobile_sam_vit_t:random-seed7"
    again = httpx.post(proc.url + "/v1/segment", headers={"X-Internal-Token": token},
                       data={"image_sha256": response.json()["image_sha256"],
                             "prompts": '{"box": [4, 4, 20, 20]}'}, timeout=120)
    assert again.status_code == 200, again.text
    assert again.json()["encoder_cached"] is True
    assert again.json()["mask_rle"] == response.json()["mask_rle"]


def test_without_weights_the_service_says_what_to_do(start_segmentation: Start) -> None:
    # No file, random weights off, the download source unreachable.
    proc, token, data_dir = start_segmentation(
        ready_path="/healthz", IMGSEARCH_SEGMENTATION_DOWNLOAD="true",
        IMGSEARCH_SEGMENTATION_DOWNLOAD_ATTEMPTS="1",
        IMGSEARCH_SEGMENTATION_WEIGHTS_URL=f"http://127.0.0.1:{free_port()}/mobile_sam.pt")
    response = _wait_settled(proc, token)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "weights_unavailable"
    assert str(data_dir / "models" / "mobile_sam.pt") in error["message"]
    assert "imgsearch segmentation download" in error["message"]
    ready = httpx.get(proc.url + "/readyz")
    assert ready.status_code == 503 and "weights_unavailable" in ready.json()["error"]["detail"][
        "model"]
    segment = httpx.post(proc.url + "/v1/segment", headers={"X-Internal-Token": token},
                         files={"file": ("x.png", png_bytes(32, 24), "image/png")},
                         data={"prompts": '{"box": [4, 4, 20, 20]}'})
    assert segment.status_code == 503
    assert segment.json()["error"]["code"] == "weights_unavailable"


def test_a_file_that_is_not_a_checkpoint_is_refused(start_segmentation: Start,
                                                    tmp_path: Path) -> None:
    bogus = tmp_path / "mobile_sam.pt"
    bogus.write_bytes(b"these bytes are not a torch checkpoint")
    proc, token, _ = start_segmentation(ready_path="/healthz",
                                        IMGSEARCH_SEGMENTATION_WEIGHTS=str(bogus))
    response = _wait_settled(proc, token)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"
    assert "not a MobileSAM vit_t checkpoint" in response.json()["error"]["message"]
