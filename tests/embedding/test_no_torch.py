"""The embedding service's import graph holds no torch (and no transformers)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
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
