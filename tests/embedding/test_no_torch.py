"""The embedding service holds no torch, transformers or ONNX Runtime: not in its import graph,
not in its dependency group (ONNX Runtime is only the benchmark's peer, in the dev group)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib

from tests.helpers.procs import REPO

SCRIPT = textwrap.dedent("""
    import io, os, sys
    import numpy as np
    from PIL import Image
    from fastapi.testclient import TestClient

    import services.embedding.main as main

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), np.uint8))
    data = io.BytesIO()
    image.save(data, format="PNG")
    with TestClient(main.create_app()) as client:
        response = client.post("/v1/embed", content=data.getvalue(),
                               headers={"X-Internal-Token": os.environ["IMGSEARCH_INTERNAL_TOKEN"],
                                        "Content-Type": "image/png"})
        assert response.status_code == 200, response.text
        assert len(response.json()["vectors"][0]) == 384
    heavy = sorted(m for m in sys.modules
                   if m.split(".")[0] in ("torch", "transformers", "onnxruntime", "onnx"))
    print("HEAVY:" + ",".join(heavy))
""")


def test_service_never_imports_torch(tmp_path: object) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "IMGSEARCH_RANDOM_WEIGHTS": "1",
        "IMGSEARCH_EMBEDDING_MODEL": "dinov2_vits14",
        "IMGSEARCH_EMBEDDING_IMAGE_SIZE": "56",
        "IMGSEARCH_INTERNAL_TOKEN": "a-test-token-of-enough-length",
        "IMGSEARCH_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("HEAVY:"))
    assert line == "HEAVY:", f"imported: {line[6:]}"


HEAVY = ("torch", "torchvision", "transformers", "onnx", "onnxruntime")


def _names(specs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in specs}


def test_embedding_group_has_no_torch_and_no_onnxruntime() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = project["optional-dependencies"]
    embedding = _names(groups["embedding"]) | _names(project["dependencies"])
    assert embedding and not embedding & set(HEAVY), sorted(embedding & set(HEAVY))
    # the benchmark's peer is declared where the benchmark runs: the dev group
    assert {"onnxruntime", "onnx"} <= _names(groups["dev"])
