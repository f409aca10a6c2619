"""`imgsearch selfcheck`: PASS against transformers with the same weights; stored references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imgsearch.cli import cli
from imgsearch.commands.selfcheck import bundled_images
from services.embedding.engine import Dinov2Model, save_npz
from tests.helpers.requirements import require_module

pytestmark = pytest.mark.slow


def _weights(tmp_path: Path, arch: str) -> Path:
    path = tmp_path / f"{arch}.npz"
    model = Dinov2Model.random(arch, seed=5, threads=1)
    save_npz(model.state_dict(), path)
    model.close()
    return path


@pytest.fixture(autouse=True)
def _small_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_EMBEDDING_IMAGE_SIZE", "112")


def test_bundled_images_are_there() -> None:
    names = [p.name for p in bundled_images()]
    assert names == ["landscape.png", "shapes.jpg", "sketch.png", "stripes.png"]


@pytest.mark.torch
@pytest.mark.parametrize("arch", ["dinov2_vits14", "dinov2_vits14_reg"])
def test_selfcheck_passes_against_transformers(tmp_path: Path, arch: str) -> None:
    require_module("transformers")
    weights = _weights(tmp_path, arch)
    result = CliRunner().invoke(cli, ["selfcheck", "--weights", str(weights)])
    assert result.exit_code == 0, result.output
    assert "transformers (CLS)" in result.stdout and "transformers (patch tokens)" in result.stdout
    assert "ok   transformers (CLS, CLS-only last block)" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("PASS")


def test_selfcheck_against_stored_features(tmp_path: Path) -> None:
    weights = _weights(tmp_path, "dinov2_vits14")
    ref = tmp_path / "ref.npy"
    runner = CliRunner()
    # no reference at all is a failure, not a silent pass
    result = runner.invoke(cli, ["selfcheck", "--weights", str(weights), "--no-transformers",
                                 "--save-reference", str(ref)])
    assert result.exit_code == 1
    assert "nothing to compare" in result.stdout
    stored = np.load(ref)
    assert stored.shape == (4, 384)

    result = runner.invoke(cli, ["selfcheck", "--weights", str(weights), "--no-transformers",
                                 "--reference", str(ref)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("PASS")

    damaged = stored.copy()
    damaged[2, :10] += 0.01
    np.save(ref, damaged)
    result = runner.invoke(cli, ["selfcheck", "--weights", str(weights), "--no-transformers",
                                 "--reference", str(ref)])
    assert result.exit_code == 1
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("FAIL") and "max abs error" in last

    np.save(ref, stored[:3])
    result = runner.invoke(cli, ["selfcheck", "--weights", str(weights), "--no-transformers",
                                 "--reference", str(ref)])
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "(4, 384)" in result.stdout


def test_selfcheck_with_own_images(tmp_path: Path) -> None:
    weights = _weights(tmp_path, "dinov2_vits14")
    image = bundled_images()[0]
    ref = tmp_path / "one.npy"
    runner = CliRunner()
    runner.invoke(cli, ["selfcheck", "--weights", str(weights), "--no-transformers",
                        "--image", str(image), "--save-reference", str(ref)])
    result = runner.invoke(cli, ["selfcheck", "--weights", str(weights), "--no-transformers",
                                 "--image", str(image), "--reference", str(ref)])
    assert result.exit_code == 0, result.output
    assert "; 1 image," in result.stdout
