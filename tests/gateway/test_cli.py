"""`imgsearch ingest`, `search`, `reconcile` against the running stack."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from imgsearch.cli import cli
from tests.helpers.procs import REPO
from tests.helpers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_ingest_search_reset(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             ) -> None:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    demo = sorted((REPO / "gallery" / "demo").glob("*.jpg"))
    for path in demo[:4]:
        shutil.copy(path, folder / path.name)
    shutil.copy(demo[4], folder / "nested" / demo[4].name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setenv("IMGSEARCH_PASSWORD", stack.admin_password)
    runner = CliRunner()
    common = ["--url", stack.url, "--username", stack.admin_username]

    result = runner.invoke(cli, ["ingest", str(folder), "--tags", "cli", "--quiet", *common])
    assert result.exit_code == 0, result.output
    assert "5 new, 0 already in the gallery, 1 rejected" in result.output
    assert "broken.jpg: not_an_image" in result.output
    assert "indexed 5, failed 0" in result.output
    token_file = Path(str(tmp_path / "data" / ".token"))
    assert token_file.stat().st_mode & 0o777 == 0o600

    result = runner.invoke(cli, ["search", str(demo[0]), "-k", "3", "--json", "--url",
                                 stack.url])
    assert result.exit_code == 0, result.output
    page = json.loads(result.output)
    assert page["results"][0]["original_filename"] == demo[0].name
    table = runner.invoke(cli, ["search", str(demo[0]), "-k", "3", "--url", stack.url])
    assert table.exit_code == 0 and demo[0].name in table.output

    # Again: everything is a duplicate now.
    result = runner.invoke(cli, ["ingest", str(folder), "--quiet", *common])
    assert "0 new, 5 already in the gallery" in result.output

    result = runner.invoke(cli, ["reconcile", *common])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output

    # --reset-db asks first; "n" changes nothing.
    refused = runner.invoke(cli, ["ingest", str(folder), "--reset-db", "--quiet", *common],
                            input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    result = runner.invoke(cli, ["ingest", str(folder / "nested"), "--reset-db", "--yes",
                                 "--quiet", *common])
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output
    with stack.admin_client() as admin:
        images = admin.get("/api/v1/images", params={"limit": 500}).json()["images"]
    live = [img for img in images if img["status"] not in ("deleting", "removed")]
    assert [img["original_filename"] for img in live] == [demo[4].name]


def test_ingest_resumes_after_an_interruption(stack: Stack, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from imgsearch.commands import ingest as command
    from tests.gateway.conftest import png_bytes

    folder = tmp_path / "many"
    folder.mkdir()
    names = [f"resume-{i:02d}.png" for i in range(7)]
    for i, name in enumerate(names):
        (folder / name).write_bytes(png_bytes(7100 + i))
    monkeypatch.setenv("IMGSEARCH_PASSWORD", stack.admin_password)
    runner = CliRunner()
    common = ["--url", stack.url, "--username", stack.admin_username, "--batch", "2",
              "--window", "1", "--quiet"]
    send = command.Ingestion.send
    calls = 0

    def interrupted(self: command.Ingestion, *args: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # Ctrl-C before the third request
        send(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(command.Ingestion, "send", interrupted)
    result = runner.invoke(cli, ["ingest", str(folder), *common])
    assert result.exit_code == 1 and "Aborted" in result.output  # click's answer to Ctrl-C
    state = command.state_path(stack.url, folder)
    assert json.loads(state.read_text())["cursor"] == [names[3]]

    monkeypatch.setattr(command.Ingestion, "send", send)
    result = runner.invoke(cli, ["ingest", str(folder), *common])
    assert result.exit_code == 0, result.output
    assert f"resuming after {names[3]} (4 files sent" in result.output
    assert "7 new, 0 already in the gallery, 0 rejected" in result.output
    assert "indexed 7, failed 0" in result.output
    assert not state.exists()
    with stack.admin_client() as admin:
        images = admin.get("/api/v1/images", params={"limit": 500}).json()["images"]
    assert sorted(img["original_filename"] for img in images
                  if img["original_filename"].startswith("resume-")) == names
