"""`imgsearch up`: every service as a local process, the demo gallery ingested, one URL.

Embedded defaults (SQLite catalog, the workers' SQLite broker) unless MySQL/Redis are
configured. Order of a start: the ports are checked free (two stacks never share a service);
the DINOv2 weights are downloaded when none are on disk (progress bar, resumable; offline, one
screen says the two ways on); secrets (an internal token and a JWT secret) are generated into
$IMGSEARCH_DATA_DIR/secrets.env (0600) when none is configured; the services start; the first
admin is created through the catalog before the gateway starts (from
IMGSEARCH_GATEWAY_ADMIN_USERNAME/_PASSWORD, or generated and its password printed once); the
worker runs with beat (the periodic reconcile); the demo gallery is ingested on a fresh data
dir. Ctrl-C stops everything.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

from imgsearch.commands._words import counted
from imgsearch.commands.supervise import GaveUp, Supervisor
from services.common.peers import Peer, address, peer_url
from services.common.settings import REPO_ROOT
from services.common.vocabulary import Role

SECRETS_FILE = "secrets.env"
SUPERVISE_EVERY_S = 0.5
DEMO_GALLERY = REPO_ROOT / "gallery" / "demo"


@dataclass
class Child:
    name: str
    command: list[str]
    log_path: Path
    url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def out_path(self) -> Path:
        """What the child prints outside its logging (a crash before logging is set up)."""
        return self.log_path.with_suffix(".out")

    def start(self, env: dict[str, str]) -> None:
        # The child writes its log itself, rotated (common `log_max_bytes`, `log_backups`).
        self.env = {**env, "IMGSEARCH_LOG_FILE": str(self.log_path)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.out_path.open("ab") as out:
            self.proc = subprocess.Popen(self.command, cwd=REPO_ROOT, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def restart(self) -> None:
        """Start again with the same environment, after killing what is left of the old
        process group (a worker killed with -9 can leave its pool processes behind)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.start(self.env)

    def tail(self, lines: int = 25) -> str:
        """The last lines of its log, then of its printed output (a traceback comes last)."""
        text = []
        for path in (self.log_path, self.out_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text[-lines:])

    def failure(self) -> str:
        """Why the child stopped: its logged errors (JSON or text lines), else its log tail."""
        errors = []
        for line in self.tail(60).splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                if " ERROR " in line or " CRITICAL " in line:
                    errors.append(line)
                continue
            if isinstance(record, dict) and record.get("level") in ("ERROR", "CRITICAL"):
                message = str(record.get("msg", "")).splitlines()[0]
                if not message.startswith("Traceback") and message not in errors:
                    errors.append(message)
        return "\n".join(errors) if errors else self.tail()

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


@dataclass
class Stack:
    children: list[Child] = field(default_factory=list)

    def stop(self) -> None:
        # Gateway and worker first, so nothing new reaches the services as they stop.
        for child in reversed(self.children):
            child.stop()


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def ensure_secrets(data_dir: Path, configured: dict[str, bool]) -> dict[str, str]:
    """Secrets from secrets.env, generating the missing ones that nothing else configures."""
    path = data_dir / SECRETS_FILE
    values = read_env_file(path)
    changed = False
    wanted = {"IMGSEARCH_INTERNAL_TOKEN": 32, "IMGSEARCH_GATEWAY_JWT_SECRET": 48}
    for key, size in wanted.items():
        if not configured[key] and key not in values:
            values[key] = secrets.token_urlsafe(size)
            changed = True
    if changed:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("# Generated by `imgsearch up` on first start. Keep it private.\n")
            for key, value in values.items():
                handle.write(f"{key}={value}\n")
        os.chmod(path, 0o600)
    return values


def wait_ready(child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise click.ClickException(f"{child.name} stopped while starting:\n{child.failure()}"
                                       f"\n(full log: {child.log_path})")
        try:
            ready = httpx.get(f"{child.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            ready = False
        # Ready and still alive: a child that failed to bind may exit just after another
        # process answered on its port.
        if ready and child.alive():
            return
        time.sleep(0.3)
    raise click.ClickException(f"{child.name} not ready after {timeout:.0f} s:\n{child.tail()}")


def port_taken(host: str, port: int) -> bool:
    """Whether (host, port) cannot be bound now, as uvicorn binds it (SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def check_ports(wanted: dict[str, tuple[str, int]]) -> None:
    """Refuse to start when a port is taken: a child would fail to bind while the process
    already there answers its readiness check (two stacks silently sharing services)."""
    taken = {name: hp for name, hp in wanted.items() if port_taken(*hp)}
    if not taken:
        return
    lines = [f"  {name}: {host}:{port}  (move it: IMGSEARCH_{name.upper()}_PORT=...)"
             for name, (host, port) in taken.items()]
    raise click.ClickException(
        "these ports are already in use, by another imgsearch or another program:\n"
        + "\n".join(lines) + "\nStop what listens there, or move the ports (config/config.yaml "
        "or the variables above); `imgsearch up --port N` moves the gateway.")


def ensure_embedding_weights(random_weights: bool) -> None:
    """Download the DINOv2 weights on a fresh machine; offline, one screen and exit 1."""
    from services.common.settings import common_settings
    from services.embedding.config import EmbeddingSettings
    from services.embedding.weights_store import ChecksumMismatch, DownloadError, WeightsNotFound
    from services.embedding.weights_store.ensure import download_target, ensure_weights

    if random_weights:
        return
    settings = EmbeddingSettings()
    models_dir = common_settings().models_dir

    def announce(url: str, dest: Path) -> None:
        click.echo(f"First start: downloading the {settings.model} weights (once; an "
                   f"interrupted download resumes)\n  {url}\n  -> {dest}", err=True)

    try:
        ensure_weights(settings, models_dir, progress=True, on_download=announce,
                       cwd=REPO_ROOT)
    except (DownloadError, WeightsNotFound, ChecksumMismatch) as exc:
        url, dest = download_target(settings, models_dir)
        banner(
            f"No DINOv2 weights for {settings.model}, and none could be had:\n"
            f"  {exc.message.split('. ', 1)[0]}\n\n"
            "Two ways on:\n"
            "  1. Real search: fetch the file on a machine with network access\n"
            f"       {url}\n"
            f"     and copy it to {dest}\n"
            "     (or set IMGSEARCH_EMBEDDING_WEIGHTS=/path/to/file: .pth, .safetensors or\n"
            "     .npz), then start again. A partial download is kept and resumes.\n"
            "  2. A demo with random weights (the search results mean nothing):\n"
            "       IMGSEARCH_RANDOM_WEIGHTS=1 make run", "red")
        raise SystemExit(1) from None


def first_admin(catalog_url: str, token: str, username: str,
                password: str) -> tuple[str, str, bool, bool]:
    """Create the first admin through the catalog when there is none, before the gateway
    starts: a login right after the gateway is ready always finds it.

    Returns (username, password, created, generated); the credentials are empty when an admin
    exists and none are configured here.
    """
    users = catalog_call(catalog_url, token, "GET", "/v1/users")["users"]
    if any(u.get("role") == Role.admin for u in users):
        return username, password, False, False
    generated = not (username and password)
    if generated:
        username, password = "admin", secrets.token_urlsafe(12)
    catalog_call(catalog_url, token, "POST", "/v1/users",
                 json={"username": username, "password": password, "role": Role.admin})
    return username, password, True, generated


def service(name: Peer, log_dir: Path) -> Child:
    """A service child on its own settings' host and port (where its peers look for it)."""
    return Child(name, [sys.executable, "-m", "imgsearch.cli", "serve", name],
                 log_dir / f"{name}.log", url=peer_url(name))


def catalog_call(url: str, token: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, url + path, headers={"X-Internal-Token": token},
                             timeout=30, **kwargs)
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            text = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            text = response.text[:300]
        raise click.ClickException(f"catalog {method} {path} answered "
                                   f"{response.status_code}: {text}")
    return response.json()


def banner(text: str, colour: str) -> None:
    line = "=" * 72
    click.secho(f"\n{line}\n{text}\n{line}\n", fg=colour, bold=True, err=True)


@click.command()
@click.option("--port", type=int, default=None, help="Gateway port (default: gateway.port).")
@click.option("--host", default=None, help="Gateway bind address (default: gateway.host).")
@click.option("--gallery", "gallery", type=click.Path(file_okay=False, path_type=Path),
              default=DEMO_GALLERY, show_default=True,
              help="Folder ingested on first start (when the gallery is empty).")
@click.option("--no-gallery", is_flag=True, help="Do not ingest anything.")
@click.option("--segmentation/--no-segmentation", default=True, show_default=True,
              help="Start the MobileSAM service (object search).")
def up(port: int | None, host: str | None, gallery: Path, no_gallery: bool,
       segmentation: bool) -> None:
    """Start every service locally, ingest the demo gallery, print the URL; Ctrl-C stops."""
    from gateway.config import GatewaySettings
    from services.common.settings import common_settings
    from services.embedding.config import EmbeddingSettings

    common = common_settings()
    data_dir = common.data_dir
    gw = GatewaySettings()
    values = ensure_secrets(data_dir, {
        "IMGSEARCH_INTERNAL_TOKEN": bool(common.internal_token.get_secret_value()),
        "IMGSEARCH_GATEWAY_JWT_SECRET": bool(gw.jwt_secret.get_secret_value()),
    })
    env = {**os.environ, **values, "IMGSEARCH_DATA_DIR": str(data_dir)}
    os.environ.update(values)
    common_settings.cache_clear()
    token = common_settings().require_internal_token()
    gw_port = port or gw.port
    log_dir = data_dir / "logs"
    random_weights = common.random_weights

    stack = Stack()
    names: list[Peer] = ["catalog", "index", "embedding"]
    if segmentation:
        names.append("segmentation")
    binds: dict[str, tuple[str, int]] = {name: address(name) for name in names}
    binds["gateway"] = (host or gw.host, gw_port)
    check_ports(binds)
    ensure_embedding_weights(random_weights)

    stopping = False

    def on_signal(signum: int, _: Any) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    # SIGINT too: a shell that starts `up` in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for name in names:
            child = service(name, log_dir)
            stack.children.append(child)
            child.start(env)
        for child in list(stack.children):
            try:
                wait_ready(child, 300)
            except click.ClickException:
                if child.name != "segmentation":
                    raise
                click.secho(f"segmentation did not start (object search off):\n{child.tail(8)}",
                            fg="yellow", err=True)
                child.stop()
                stack.children.remove(child)
        if random_weights:
            banner(f"RANDOM WEIGHTS ({EmbeddingSettings().model}): IMGSEARCH_RANDOM_WEIGHTS=1 "
                   "is set and no weights were found.\nSearch results are MEANINGLESS. Get real "
                   "weights: imgsearch weights download", "red")

        catalog_url = stack.children[0].url or ""
        username, password, created, generated = first_admin(
            catalog_url, token, gw.admin_username.strip(), gw.admin_password.get_secret_value())

        # The worker runs beat too: the periodic reconcile that repairs what a killed worker
        # left behind (one beat per install).
        worker = Child("worker", [sys.executable, "-m", "imgsearch.cli", "worker", "--beat"],
                       log_dir / "worker.log")
        stack.children.append(worker)
        worker.start(env)
        gateway_cmd = [sys.executable, "-m", "imgsearch.cli", "serve", "gateway", "--port",
                       str(gw_port)] + (["--host", host] if host else [])
        gateway = Child("gateway", gateway_cmd, log_dir / "gateway.log",
                        url=f"http://127.0.0.1:{gw_port}")
        stack.children.append(gateway)
        gateway.start(env)
        wait_ready(gateway, 120)
        if generated:
            banner(f"First admin created: username {username}  password {password}\n"
                   "Shown once: write it down (or create another: imgsearch users create "
                   "--admin NAME).", "green")
        elif created:
            click.echo(f"First admin: {username} (from IMGSEARCH_GATEWAY_ADMIN_USERNAME)")

        if not no_gallery:
            ingest_gallery(gateway.url or "", catalog_url, token, gallery, username, password)
        public = f"http://{host or '127.0.0.1'}:{gw_port}"
        if host in ("0.0.0.0", "::"):
            public = f"http://127.0.0.1:{gw_port}"
        click.secho(f"\nimgsearch is running at {public}  (Ctrl-C stops it; logs in "
                    f"{log_dir})", fg="green", bold=True)
        sys.stdout.flush()
        supervisor = Supervisor(stack.children, optional=frozenset({"segmentation"}),
                                say=lambda text: click.secho(text, fg="yellow", err=True))
        while True:
            try:
                supervisor.check()
            except GaveUp as exc:
                raise click.ClickException(f"{exc}\n(logs in {log_dir}); stopping") from None
            time.sleep(SUPERVISE_EVERY_S)
    except KeyboardInterrupt:
        click.echo("\nstopping...")
    finally:
        stack.stop()
    click.echo("stopped")


def ingest_gallery(gateway_url: str, catalog_url: str, token: str, folder: Path,
                   username: str, password: str) -> None:
    """Upload `folder` when the gallery is empty (first start) and wait for indexing."""
    from imgsearch.commands._api import Api
    from imgsearch.commands.ingest import follow_all, image_files, upload_files

    total = catalog_call(catalog_url, token, "GET", "/v1/stats")["total"]
    files = image_files(folder) if folder.is_dir() else []
    if total or not files:
        return
    if not (username and password):
        click.secho("The gallery is empty and was not ingested: an admin exists, and its "
                    "password is not known here. Run "
                    f"`imgsearch ingest {folder} --username ADMIN`", fg="yellow", err=True)
        return
    api = Api(gateway_url, username)
    try:
        login = api.http.post("/auth/login", json={"username": username, "password": password})
        if login.status_code != 200:
            click.secho(f"The gallery is empty and was not ingested: logging in as {username} "
                        f"failed ({login.status_code}: {login.text[:200]}). Run "
                        f"`imgsearch ingest {folder} --username ADMIN`", fg="yellow", err=True)
            return
        api.http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        click.echo(f"ingesting {counted(len(files), 'image')} from {folder} ...")
        job_ids, new, _, rejected = upload_files(api, files, tags="demo", quiet=True)
        jobs = follow_all(api, job_ids, label="indexing the demo gallery")
        done = sum(j["done"] for j in jobs)
        click.echo(f"demo gallery: {done} of {new} indexed, {len(rejected)} rejected")
        if done < new:
            click.secho(f"{counted(new - done, 'image')} of the demo gallery not indexed: see "
                        "Admin > Jobs in the web app, or the worker's log", fg="yellow",
                        err=True)
    finally:
        api.close()
