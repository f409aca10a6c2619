"""The images, built from deploy/*.Dockerfile and run, without a Docker engine.

podman builds each image from its Dockerfile as `docker compose build` would (chroot isolation,
host network, the build cache shared between images), FROM local stand-ins of python:3.11-slim
and node:20-slim (tests/deploy/standin_bases.sh: a debootstrapped Debian bookworm with this
machine's CPython 3.11 and Node.js 20), since base images cannot be pulled here. Each service
then runs from its image's own filesystem, as the image's user, with the image's environment
and command plus the service's environment from docker-compose.yml (peers on 127.0.0.1 and free
ports instead of compose's network; this machine's MariaDB and Redis under fresh names), with
`buildah run` (chroot isolation: this machine's crun cannot start containers on its hybrid
cgroup hierarchy). Each named volume starts as Docker starts a fresh one: an empty root-owned
directory that takes the owner, mode and content of the image's directory at the mount path
when the image has one.

What the segmentation image needs, PyTorch's CPU index, is unreachable here: its tests show
what can be shown without it (docs/deploy.md says what is verified where).

Under CI=true a missing prerequisite fails these tests; elsewhere they skip with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import re
import secrets
import shutil
import signal
import socketserver
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers.procs import free_port
from tests.helpers.redis_keys import drop_prefix
from tests.helpers.requirements import missing

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).with_name("standin_bases.sh")
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
# compose service -> Dockerfile (deploy/NAME.Dockerfile) of the images this test builds and runs.
RUN = {"catalog": "catalog", "index": "index", "embedding": "embedding", "worker": "workers",
       "gateway": "gateway"}
HTTP_SERVICES = ("embedding", "segmentation", "index", "catalog", "gateway")
TAG = "localhost/imgsearch-deploytest/{}:latest"
CPU_WHEELS = sorted(Path("/opt/wheels").glob("torch-*+cpu-cp311-*.whl"))


def _unavailable(reason: str) -> None:
    missing("the deployment test's tools", reason)


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root (podman build --isolation=chroot, buildah run, debootstrap)"
    for tool in ("podman", "buildah", "debootstrap", "node", "npm"):
        if shutil.which(tool) is None:
            return f"no {tool} command (apt-get install podman debootstrap; Node.js 20)"
    if sys.version_info[:2] != (3, 11):
        return "the stand-in python:3.11-slim takes the running CPython, which is not 3.11"
    return None


def _run(argv: list[str], *, timeout: float, check: bool = True,
         log: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:4])}... exited {done.returncode}:\n"
                             f"{(done.stdout + done.stderr)[-4000:]}")
    return done


def _build(dockerfile: str, tag: str, log: Path, *build_args: str,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    # --format docker keeps HEALTHCHECK (the OCI format has no such field).
    argv = ["podman", "build", "--isolation=chroot", "--network", "host", "--pull=never",
            "--format", "docker", "-f", f"deploy/{dockerfile}.Dockerfile", "-t", tag]
    for arg in build_args:
        argv += ["--build-arg", arg]
    return _run([*argv, "."], timeout=1800, check=check, log=log)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """compose service -> tag of its freshly built image."""
    reason = _missing_prerequisite()
    if reason:
        _unavailable(reason)
    logs = tmp_path_factory.mktemp("build-logs")
    _run(["bash", str(STANDIN), sys.executable], timeout=1200, log=logs / "standin.log")
    # Two builds at a time: most of a build waits on downloads.
    tags = {dockerfile: TAG.format(dockerfile) for dockerfile in set(RUN.values())}
    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(_build, dockerfile, tag, logs / f"{dockerfile}.log")
                     for dockerfile, tag in sorted(tags.items())]:
            done.result()
    return {service: tags[dockerfile] for service, dockerfile in RUN.items()}


def _image_config(tag: str) -> dict[str, Any]:
    """The image's Config (User, Env, Cmd, WorkingDir) and its Healthcheck."""
    image = json.loads(_run(["podman", "image", "inspect", tag], timeout=60).stdout)[0]
    config: dict[str, Any] = image["Config"]
    return {**config, "Healthcheck": image.get("Healthcheck")}


class Container:
    """A working container of an image: its filesystem, run as the image's user."""

    def __init__(self, tag: str, volumes: dict[str, Path], log: Path,
                 ports: dict[int, int] | None = None) -> None:
        self.tag = tag
        self.config = _image_config(tag)
        self.name = f"imgsearch-dt-{uuid.uuid4().hex[:10]}"
        _run(["buildah", "from", "--pull-never", "--name", self.name, tag], timeout=120)
        # Its own hostname, the start of its id, as Docker gives each container.
        self.hostname = _run(["buildah", "inspect", "--format", "{{.ContainerID}}", self.name],
                             timeout=60).stdout.strip()[:12]
        # The image's port -> the port it listens on here (host network, shared machine).
        self.ports = ports or {}
        self.rootfs = Path(_run(["buildah", "mount", self.name], timeout=60).stdout.strip())
        self.volumes = volumes
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self, command: list[str], env: dict[str, str]) -> list[str]:
        argv = ["buildah", "run", "--isolation", "chroot", "--network", "host",
                "--hostname", self.hostname, "--user", self.config.get("User") or "root"]
        for target, source in self.volumes.items():
            argv += ["-v", f"{source}:{target}"]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, self.name, "--", *command]

    def start(self, env: dict[str, str]) -> Container:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv(list(self.config["Cmd"]), env), stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def exec(self, command: list[str], env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(command, env or {}), capture_output=True, text=True,
                              timeout=timeout)

    def healthcheck(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """The image's own HEALTHCHECK command, run in this container (at the port the
        service listens on here)."""
        test = list(self.config["Healthcheck"]["Test"])
        for image_port, port in self.ports.items():
            test = [part.replace(f"127.0.0.1:{image_port}/", f"127.0.0.1:{port}/")
                    for part in test]
        command = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        return self.exec(command, env, timeout=60)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        subprocess.run(["buildah", "rm", self.name], capture_output=True, timeout=120)


def fresh_volume(directory: Path, rootfs: Path, target: str) -> Path:
    """A new named volume, as Docker makes one on first mount: an empty directory owned by
    root, which takes the owner, mode and content of the image's directory at `target` when
    the image has one (and stays root's when it does not)."""
    directory.mkdir(parents=True)
    os.chown(directory, 0, 0)
    directory.chmod(0o755)
    source = rootfs / target.lstrip("/")
    if source.is_dir():
        st = source.stat()
        os.chown(directory, st.st_uid, st.st_gid)
        directory.chmod(st.st_mode & 0o7777)
        subprocess.run(["cp", "-a", f"{source}/.", f"{directory}/"], check=True)
    return directory


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} in one value."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if op == ":?" and not variables.get(name):
            raise AssertionError(f"compose requires {name}: {arg}")
        if op == ":-" and not variables.get(name):
            return arg
        return variables.get(name, "")
    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", one, value)


@pytest.fixture(scope="module")
def stack(built: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[dict[str, Any]]:
    import redis
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    mysql = os.environ.get("IMGSEARCH_TEST_MYSQL_URL")
    redis_url = os.environ.get("IMGSEARCH_TEST_REDIS_URL")
    if not mysql or not redis_url:
        _unavailable("IMGSEARCH_TEST_MYSQL_URL and IMGSEARCH_TEST_REDIS_URL must be set")
        raise AssertionError  # unreachable: _unavailable raises
    tmp = tmp_path_factory.mktemp("stack")
    run_id = uuid.uuid4().hex[:8]
    database = f"imgsearch_dt_{run_id}"
    server = make_url(mysql)
    admin_engine = sa.create_engine(server.set(database=""))
    with admin_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    prefix = f"imgsearch-dt-{run_id}:"
    # The .env a user writes, with the demo's random weights and the small model.
    dotenv = {
        "IMGSEARCH_INTERNAL_TOKEN": secrets.token_urlsafe(24),
        "IMGSEARCH_GATEWAY_JWT_SECRET": secrets.token_urlsafe(48),
        "MYSQL_ROOT_PASSWORD": secrets.token_urlsafe(12),
        "MYSQL_PASSWORD": secrets.token_urlsafe(12),
        "IMGSEARCH_GATEWAY_ADMIN_USERNAME": "admin",
        "IMGSEARCH_GATEWAY_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "IMGSEARCH_RANDOM_WEIGHTS": "1",
        "IMGSEARCH_EMBEDDING_MODEL": "dinov2_vits14",
        # Not the default (2): the worker must run what .env says.
        "IMGSEARCH_WORKERS_CONCURRENCY": "3",
    }
    ports = {name: free_port() for name in HTTP_SERVICES}
    # Host networking on a shared machine: every peer on 127.0.0.1 at a free port, the
    # machine's MariaDB and Redis under this run's database name, key prefix and queue.
    host_network = {
        **{f"IMGSEARCH_{name.upper()}_HOST": "127.0.0.1" for name in HTTP_SERVICES},
        **{f"IMGSEARCH_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        "IMGSEARCH_DATABASE_URL": server.set(database=database).render_as_string(
            hide_password=False),
        "IMGSEARCH_WORKERS_BROKER_URL": redis_url,
        "IMGSEARCH_WORKERS_RESULT_BACKEND": redis_url,
        "IMGSEARCH_WORKERS_REDIS_KEY_PREFIX": prefix,
        "IMGSEARCH_WORKERS_QUEUE": f"q-{run_id}",
        "IMGSEARCH_GATEWAY_REDIS_URL": redis_url,
        "IMGSEARCH_GATEWAY_REDIS_PREFIX": prefix + "gw:",
    }
    containers: dict[str, Container] = {}
    volumes: dict[str, Path] = {}
    envs: dict[str, dict[str, str]] = {}
    try:
        for service in ("catalog", "index", "embedding", "worker", "gateway"):
            spec = COMPOSE["services"][service]
            mounts: dict[str, Path] = {}
            exposed = {int(p.split("/")[0]) for p in
                       (_image_config(built[service]).get("ExposedPorts") or {})}
            container = Container(built[service], mounts, tmp / f"{service}.log",
                                  {port: ports[service] for port in exposed})
            for entry in spec.get("volumes", []):
                volume, target = entry.split(":")[:2]
                if volume not in volumes:  # the first container to mount it creates it
                    volumes[volume] = fresh_volume(tmp / "volumes" / volume, container.rootfs,
                                                   target)
                mounts[target] = volumes[volume]
            env = {key: _interpolate(str(value), dotenv)
                   for key, value in (spec.get("environment") or {}).items()}
            env = {key: value for key, value in env.items()
                   if not key.startswith("IMGSEARCH_DATABASE_")}
            envs[service] = {**env, **host_network}
            containers[service] = container
        for service in ("catalog", "index", "embedding"):
            containers[service].start(envs[service])
        for service in ("catalog", "index", "embedding"):
            _wait_ready(containers[service], ports[service], 300)
        containers["worker"].start(envs["worker"])
        containers["gateway"].start(envs["gateway"])
        _wait_ready(containers["gateway"], ports["gateway"], 180)
        yield {"containers": containers, "ports": ports, "volumes": volumes, "envs": envs,
               "dotenv": dotenv, "gateway": f"http://127.0.0.1:{ports['gateway']}"}
    finally:
        for container in reversed(list(containers.values())):
            container.stop()
        with admin_engine.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{database}`"))
        admin_engine.dispose()
        drop_prefix(redis_url, prefix)
        client = redis.Redis.from_url(redis_url)
        client.delete(f"q-{run_id}")
        client.close()


def _wait_ready(container: Container, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if container.proc is not None and container.proc.poll() is not None:
            raise AssertionError(f"{container.tag} exited {container.proc.returncode}:\n"
                                 f"{container.tail()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{container.tag} not ready after {timeout}s:\n{container.tail()}")


def _png(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(blocks).resize((120, 100), Image.Resampling.NEAREST).save(out, "PNG")
    return out.getvalue()


# --- the stack


def test_every_service_is_healthy_by_its_own_healthcheck(stack: dict[str, Any]) -> None:
    for service, container in stack["containers"].items():
        assert container.proc is not None and container.proc.poll() is None, container.tail()
        result = container.healthcheck(stack["envs"][service])
        assert result.returncode == 0, f"{service} healthcheck:\n{result.stdout}{result.stderr}"


def test_gateway_serves_the_web_app_at_root(stack: dict[str, Any]) -> None:
    gateway = stack["containers"]["gateway"]
    index = (gateway.rootfs / "app/web/dist/index.html").read_text()
    response = httpx.get(stack["gateway"] + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == index and '<div id="app">' in index
    assert "not built yet" not in response.text


def test_an_upload_through_the_gateway_becomes_searchable(stack: dict[str, Any]) -> None:
    base = stack["gateway"] + "/api/v1"
    dotenv = stack["dotenv"]
    deadline = time.monotonic() + 60
    while True:  # the gateway creates the first admin in the background at start
        login = httpx.post(base + "/auth/login", timeout=10, json={
            "username": dotenv["IMGSEARCH_GATEWAY_ADMIN_USERNAME"],
            "password": dotenv["IMGSEARCH_GATEWAY_ADMIN_PASSWORD"]})
        if login.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        upload = client.post("/admin/images", files=[
            ("file", (f"img-{i}.png", _png(i))) for i in range(3)])
        assert upload.status_code == 202, upload.text
        ids = [image["id"] for image in upload.json()["images"]]
        job_id = upload.json()["job_id"]
        deadline = time.monotonic() + 300
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = client.get(f"/jobs/{job_id}").json()
            if job.get("status") in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.5)
        assert job.get("status") == "succeeded", (
            f"{job}\n{stack['containers']['worker'].tail()}")
        hits = client.post("/search", files={"file": ("q.png", _png(1))},
                           data={"k": "3"}).json()["results"]
        assert hits and hits[0]["id"] == ids[1], hits
        thumb = client.get(f"/images/{ids[1]}/thumbnail")
        assert thumb.status_code == 200 and thumb.content
    # What the services wrote is on their volumes, owned by the images' user.
    volumes = stack["volumes"]
    assert any(p.is_file() for p in (volumes["images"] / "images").rglob("*"))
    assert any((volumes["index"]).iterdir())
    for volume in volumes.values():
        assert volume.stat().st_uid == 10001, volume


def test_the_worker_healthcheck_answers_for_its_own_worker_only(
        stack: dict[str, Any], built: dict[str, str], tmp_path: Path) -> None:
    env = stack["envs"]["worker"]
    assert stack["containers"]["worker"].healthcheck(env).returncode == 0
    # Another container of the same image (its own hostname) with no worker of its own
    # fails, although a worker answers on the same broker and queue.
    other = Container(built["worker"], {}, tmp_path / "other.log")
    try:
        result = other.healthcheck(env)
        assert result.returncode != 0, result.stdout + result.stderr
    finally:
        other.stop()


def test_the_worker_runs_the_concurrency_it_is_given(stack: dict[str, Any]) -> None:
    worker = stack["containers"]["worker"]
    env = stack["envs"]["worker"]
    assert env["IMGSEARCH_WORKERS_CONCURRENCY"] == "3"
    stats = worker.exec(["sh", "-c", "celery -A services.workers.app:app inspect stats --json "
                         "--timeout 8 -d \"celery@$(hostname)\""], env, timeout=60)
    assert stats.returncode == 0, stats.stdout + stats.stderr
    reply = json.loads(stats.stdout.strip().splitlines()[-1])
    [node] = reply.values()
    assert node["pool"]["max-concurrency"] == 3


def test_a_volume_on_a_path_the_image_lacks_is_not_writable(
        built: dict[str, str], tmp_path: Path) -> None:
    """The failure the mount points guard against, reproduced: the index service on a fresh
    volume at /index, a path its image does not create, cannot write it."""
    container = Container(built["index"], {}, tmp_path / "index.log")
    try:
        volume = fresh_volume(tmp_path / "vol", container.rootfs, "/index")
        assert volume.stat().st_uid == 0
        container.volumes["/index"] = volume
        port = free_port()
        container.start({"IMGSEARCH_INTERNAL_TOKEN": secrets.token_urlsafe(24),
                         "IMGSEARCH_INDEX_DIR": "/index", "IMGSEARCH_INDEX_PORT": str(port),
                         "IMGSEARCH_INDEX_HOST": "127.0.0.1"})
        assert container.proc is not None
        container.proc.wait(120)
        assert "PermissionError" in container.tail(20000)
    finally:
        container.stop()


def test_the_embedding_image_holds_no_torch(built: dict[str, str]) -> None:
    container = Container(built["embedding"], {}, Path(os.devnull))
    try:
        probe = container.exec(["python", "-c", (
            "import importlib.metadata as m, importlib.util as u; "
            "names = sorted(d.metadata['Name'].lower() for d in m.distributions()); "
            "print(u.find_spec('torch') is None, names)")])
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.startswith("True ")
        assert not [n for n in probe.stdout.split("'") if n.startswith(("torch", "nvidia"))]
    finally:
        container.stop()


# --- the segmentation image: what can be shown without PyTorch's CPU index


def _site_packages_of(dist: str) -> Path | None:
    import importlib.metadata

    try:
        found = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    return Path(str(found.locate_file(""))).resolve()


def test_the_cpu_check_rejects_cuda_torch_and_accepts_the_cpu_wheel(tmp_path: Path) -> None:
    check = [sys.executable, str(REPO / "deploy" / "check_cpu_torch.py")]
    site = _site_packages_of("torch")
    if site is None or not CPU_WHEELS:
        _unavailable("needs an installed torch (the segmentation group) and a +cpu torch "
                     "wheel in /opt/wheels")
        return
    # The torch installed here: PyPI's (the CUDA build with nvidia-*, what the old two-step
    # recipe ended with) is rejected.
    import importlib.metadata

    installed = importlib.metadata.version("torch")
    verdict = subprocess.run([*check, str(site)], capture_output=True, text=True, timeout=60)
    if installed.endswith("+cpu"):
        assert verdict.returncode == 0, verdict.stderr
    else:
        assert verdict.returncode == 1, verdict.stdout
        assert "is a CUDA build" in verdict.stderr and "nvidia-" in verdict.stderr
    # The CPU wheel's own files (its metadata and torch/version.py).
    wheel = CPU_WHEELS[-1]
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target, [n for n in archive.namelist()
                                    if n == "torch/version.py" or ".dist-info/" in n])
    accepted = subprocess.run([*check, str(target)], capture_output=True, text=True, timeout=60)
    assert accepted.returncode == 0, accepted.stderr
    # ...and the same tree plus one CUDA-only distribution is rejected.
    (target / "nvidia_cublas-13.1.1.3.dist-info").mkdir()
    (target / "nvidia_cublas-13.1.1.3.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nvidia-cublas\nVersion: 13.1.1.3\n")
    mixed = subprocess.run([*check, str(target)], capture_output=True, text=True, timeout=60)
    assert mixed.returncode == 1 and "nvidia-cublas" in mixed.stderr


@contextlib.contextmanager
def _local_index(wheels: list[Path], root: Path) -> Iterator[str]:
    """A PEP 503 simple index of `wheels` over HTTP on 127.0.0.1."""
    for wheel in wheels:
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        (root / "simple" / project).mkdir(parents=True, exist_ok=True)
        (root / "files").mkdir(exist_ok=True)
        link = root / "files" / wheel.name
        if not link.exists():
            link.symlink_to(wheel)
        (root / "simple" / project / "index.html").write_text(
            f'<!DOCTYPE html><html><body><a href="../../files/{wheel.name}">{wheel.name}</a>'
            "</body></html>\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_segmentation_recipe_never_falls_back_to_pypi_cuda_torch(
        built: dict[str, str], tmp_path: Path) -> None:
    """The recipe, built for real with its torch index pointed at a local index that lacks
    torch 2.14.1+cpu (as when PyTorch's index is unreachable), fails at the resolver: PyPI's
    CUDA build of the same version is never taken, nothing of CUDA is downloaded."""
    if not CPU_WHEELS:
        _unavailable("needs a +cpu torch wheel in /opt/wheels for the local index")
    with _local_index(CPU_WHEELS, tmp_path / "index") as url:
        result = _build("segmentation", "localhost/imgsearch-deploytest/segmentation:refused",
                        tmp_path / "segmentation.log", f"TORCH_INDEX_URL={url}", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    # pip's resolver: the group's torch==2.14.1 exists only as PyPI's CUDA build, which the
    # +cpu constraint excludes.
    assert "(constraint) torch==2.14.1+cpu" in output, output[-3000:]
    assert re.search(r"ResolutionImpossible|No matching distribution found for torch", output), \
        output[-3000:]
    assert not re.search(r"(Downloading|Collecting) (nvidia|triton|torch-2\.14\.1-)", output), \
        output[-3000:]


def test_the_one_resolver_run_takes_torch_from_the_cpu_index_and_no_cuda(tmp_path: Path,
                                                                          ) -> None:
    """The segmentation recipe's pip options (its torch index, PyPI as the extra index, the
    +cpu constraint), resolved for the CPU wheel this machine has: torch comes from the CPU
    index, and nothing of CUDA is in the resolution."""
    if not CPU_WHEELS:
        _unavailable("needs a +cpu torch wheel in /opt/wheels for the local index")
    wheel = CPU_WHEELS[-1]
    version = wheel.name.split("-")[1]  # e.g. 2.13.0+cpu
    constraint = tmp_path / "torch-cpu.txt"
    constraint.write_text(f"torch=={version}\n")
    report = tmp_path / "report.json"
    with _local_index([wheel], tmp_path / "index") as url:
        done = subprocess.run([
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
            "--quiet", "--report", str(report), "--index-url", url,
            "--extra-index-url", "https://pypi.org/simple", "--constraint", str(constraint),
            f"torch=={version.split('+')[0]}"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    names = {item["metadata"]["name"].lower(): item for item in installs}
    assert names["torch"]["metadata"]["version"] == version
    assert names["torch"]["download_info"]["url"].startswith(url.removesuffix("simple/"))
    assert not [n for n in names if n.startswith(("nvidia", "triton", "pytorch-triton"))]
