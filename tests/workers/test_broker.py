"""What the broker configuration guarantees, proved with real worker processes (no other
service needed): a task whose worker dies is run again, on Redis and on the embedded SQLite
broker; and no worker process loads torch or faiss."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.common.queue import QueueSettings, make_producer
from services.common.settings import CommonSettings
from tests.helpers.worker import WorkerProcess, worker_env

pytestmark = pytest.mark.integration


def _broker(kind: str, redis_url: str | None, data_dir: Path) -> str:
    """The Redis URL, or "" for the embedded broker (`services.common.sqlbroker`)."""
    return redis_url or "" if kind == "redis" else ""


def _send_probe(env: dict[str, str], data_dir: Path, path: Path, seconds: float) -> None:
    settings = QueueSettings(broker_url=env["IMGSEARCH_WORKERS_BROKER_URL"],
                             redis_key_prefix=env["IMGSEARCH_WORKERS_REDIS_KEY_PREFIX"],
                             queue=env["IMGSEARCH_WORKERS_QUEUE"],
                             visibility_timeout_s=int(env.get(
                                 "IMGSEARCH_WORKERS_VISIBILITY_TIMEOUT_S", "3600")))
    producer = make_producer(settings, CommonSettings(data_dir=data_dir))
    producer.send_task("probe.record", kwargs={"path": str(path), "seconds": seconds},
                       queue=settings.queue)
    producer.close()


def _wait_lines(path: Path, word: str, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().split("\n") if path.exists() else []
        found = [line for line in lines if line.startswith(word)]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {count} {word!r} lines in {path}")


@pytest.fixture(params=["sqlite", "redis"])
def broker_env(request: pytest.FixtureRequest, data_dir: Path) -> dict[str, str]:
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        return worker_env(broker_url=redis_url, redis_prefix=prefix, data_dir=data_dir)
    return worker_env(broker_url=_broker("sqlite", None, data_dir), data_dir=data_dir)


def test_task_of_a_killed_pool_process_runs_again(broker_env: dict[str, str], data_dir: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    worker = WorkerProcess(broker_env, tmp_path, concurrency=1,
                           app="tests.workers.probe_app").start()
    try:
        _send_probe(broker_env, data_dir, out, seconds=3.0)
        first = _wait_lines(out, "start", 1, 30)[0].split()[1]
        worker.kill_child(int(first))
        done = _wait_lines(out, "done", 1, 60)
        starts = _wait_lines(out, "start", 2, 1)
        assert len(done) == 1 and done[0].split()[1] != first
        assert len(starts) == 2
    finally:
        worker.stop()


def test_redis_redelivers_the_task_of_a_killed_worker(redis_url: str, redis_prefix: str,
                                                      data_dir: Path, tmp_path: Path) -> None:
    env = worker_env(broker_url=redis_url, redis_prefix=redis_prefix, data_dir=data_dir,
                     extra={"IMGSEARCH_WORKERS_VISIBILITY_TIMEOUT_S": "3"})
    out = tmp_path / "runs.txt"
    worker = WorkerProcess(env, tmp_path, concurrency=1, app="tests.workers.probe_app").start()
    try:
        _send_probe(env, data_dir, out, seconds=6.0)
        _wait_lines(out, "start", 1, 30)
        worker.kill()  # main process and pool together: no shutdown code runs
        worker = WorkerProcess(env, tmp_path, concurrency=1,
                               app="tests.workers.probe_app").start()
        _wait_lines(out, "done", 1, 60)
    finally:
        worker.stop()


def _mapped_libraries(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def test_worker_processes_load_no_torch_or_faiss(redis_url: str, redis_prefix: str,
                                                 data_dir: Path, tmp_path: Path,
                                                 internal_token: str) -> None:
    env = worker_env(broker_url=redis_url, redis_prefix=redis_prefix, data_dir=data_dir,
                     internal_token=internal_token)
    worker = WorkerProcess(env, tmp_path, concurrency=2, beat=True).start()
    try:
        pids = [worker.pid, *worker.child_pids()]
        assert len(pids) >= 3
        for pid in pids:
            maps = _mapped_libraries(pid).lower()
            assert maps, f"no memory map for {pid}"
            assert "libtorch" not in maps and "/torch/" not in maps
            assert "faiss" not in maps
    finally:
        worker.stop()
