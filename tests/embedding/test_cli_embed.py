"""`imgsearch embed` and `imgsearch weights convert`, in-process with generated weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imgsearch.cli import cli
from services.embedding.engine import Dinov2Model, preprocess, save_npz
from services.embedding.weights_store.locate import file_sha256, write_sidecar
from tests.embedding.service_helpers import png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "vits14.npz"
    model = Dinov2Model.random("dinov2_vits14", seed=3, threads=1)
    save_npz(model.state_dict(), path)
    model.close()
    return path


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setenv("IMGSEARCH_EMBEDDING_IMAGE_SIZE", "56")
    monkeypatch.setenv("IMGSEARCH_EMBEDDING_MODEL", "dinov2_vits14")
    paths = []
    for i, (w, h) in enumerate([(80, 60), (64, 64), (60, 90)]):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(png(w, h, seed=i))
        paths.append(path)
    return paths


def _expected(weights: Path, paths: list[Path]) -> tuple[str, np.ndarray]:
    from PIL import Image

    model = Dinov2Model.from_file(weights, threads=1)
    rows = []
    for path in paths:
        with Image.open(path) as image:
            pixels = preprocess(image.convert("RGB"), size=56)
        rows.append(model.embed(pixels[None]).cls[0])
    return model.model_id, np.stack(rows)


def test_embed_json_in_input_order(weights: Path, images: list[Path]) -> None:
    order = [images[2], images[0], images[1], images[0]]
    result = CliRunner().invoke(cli, ["embed", *map(str, order), "--weights", str(weights)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    model_id, expected = _expected(weights, order)
    assert body["model"] == model_id and body["dim"] == 384
    got = np.asarray(body["vectors"], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.linalg.norm(got, axis=1) == pytest.approx(1.0, abs=1e-5)


def test_embed_npy_to_file(weights: Path, images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "features.npy"
    result = CliRunner().invoke(cli, ["embed", *map(str, images), "--weights", str(weights),
                                      "--format", "npy", "--out", str(out)])
    assert result.exit_code == 0, result.output
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (3, 384)
    np.testing.assert_allclose(got, _expected(weights, images)[1], atol=1e-5)


def test_embed_finds_weights_in_the_models_dir(weights: Path, images: list[Path],
                                               tmp_path: Path) -> None:
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    (models / "dinov2_vits14.npz").write_bytes(weights.read_bytes())
    result = CliRunner().invoke(cli, ["embed", str(images[0])])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == _expected(weights, images[:1])[0]
    # a recorded digest that no longer matches stops it
    write_sidecar(models / "dinov2_vits14.npz", "0" * 64)
    result = CliRunner().invoke(cli, ["embed", str(images[0])])
    assert result.exit_code == 1
    assert "SHA-256" in result.stderr


def test_embed_without_weights_says_how_to_get_them(images: list[Path]) -> None:
    result = CliRunner().invoke(cli, ["embed", str(images[0])])
    assert result.exit_code == 1
    assert "imgsearch weights download dinov2_vits14" in result.stderr


def test_embed_with_random_weights_warns(images: list[Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_RANDOM_WEIGHTS", "1")
    result = CliRunner().invoke(cli, ["embed", str(images[0])])
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" in result.stderr
    assert len(json.loads(result.stdout)["vectors"][0]) == 384


def test_embed_rejects_a_file_that_is_no_image(weights: Path, images: list[Path],
                                               tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    result = CliRunner().invoke(cli, ["embed", str(images[0]), str(bad), "--weights",
                                      str(weights)])
    assert result.exit_code == 1
    assert "notes.png" in result.stderr


def test_convert_safetensors_to_npz_keeps_the_model_id(weights: Path, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    model = Dinov2Model.from_file(weights, threads=1)
    src = tmp_path / "hf.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in model.state_dict_hf().items()}, str(src))
    dst = tmp_path / "out" / "converted.npz"
    result = CliRunner().invoke(cli, ["weights", "convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(dst), model.model_id]
    assert Dinov2Model.from_file(dst, threads=1).model_id == model.model_id
    assert file_sha256(dst) != file_sha256(src)


def test_convert_refuses_bad_input(weights: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["weights", "convert", str(weights),
                                      str(tmp_path / "x.pth")])
    assert result.exit_code == 2
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 nonsense")
    result = CliRunner().invoke(cli, ["weights", "convert", str(garbage),
                                      str(tmp_path / "x.npz")])
    assert result.exit_code == 1
    assert not (tmp_path / "x.npz").exists()
    result = CliRunner().invoke(cli, ["weights", "convert", str(weights),
                                      str(tmp_path / "y.npz"), "--model", "dinov2_vitb14"])
    assert result.exit_code == 1
    assert "shape" in result.stderr
