"""The CLI's side of the public API: login with a cached token, job progress bars."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click
import httpx

from services.common.vocabulary import JOB_FINISHED, JobStatus


class ApiError(click.ClickException):
    """An error answer of the gateway, printed as `code: message`."""


def raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        text = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = f"HTTP {response.status_code}: {response.text[:300]}"
    raise ApiError(text)


def token_path() -> Path:
    from services.common.settings import common_settings

    return common_settings().data_dir / ".token"


def _read_cache(url: str, username: str) -> str | None:
    try:
        cached = json.loads(token_path().read_text())
    except (OSError, ValueError):
        return None
    if cached.get("url") == url and cached.get("username") == username:
        token = cached.get("token")
        return token if isinstance(token, str) else None
    return None


def _write_cache(url: str, username: str, token: str) -> None:
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: the token is a credential.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "username": username, "token": token}, handle)
    os.chmod(path, 0o600)


class Api:
    """An httpx client of the gateway, logged in on demand."""

    def __init__(self, url: str, username: str | None, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.http = httpx.Client(base_url=self.url + "/api/v1", timeout=timeout)

    def login(self) -> None:
        """Use the cached token if it still works, else log in (IMGSEARCH_PASSWORD or prompt)."""
        if not self.username:
            raise click.UsageError("give --username (or IMGSEARCH_USERNAME)")
        cached = _read_cache(self.url, self.username)
        if cached:
            self.http.headers["Authorization"] = f"Bearer {cached}"
            if self.http.get("/me").status_code == 200:
                return
            del self.http.headers["Authorization"]
        password = os.environ.get("IMGSEARCH_PASSWORD") or click.prompt(
            f"Password for {self.username}", hide_input=True)
        response = self.http.post("/auth/login",
                                  json={"username": self.username, "password": password})
        raise_for(response)
        token = response.json()["access_token"]
        _write_cache(self.url, self.username, token)
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        raise_for(response)
        return response.json()

    def follow(self, job_id: int, *, label: str, quiet: bool = False,
               poll_s: float = 0.5) -> dict[str, Any]:
        """Poll a job with a progress bar until it ends; returns the final job."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), disable=quiet,
                      transient=False) as bar:
            task = bar.add_task(label, total=None)
            while True:
                job: dict[str, Any] = self.call("GET", f"/jobs/{job_id}")
                settled = job["done"] + job["failed"] + job["skipped"]
                bar.update(task, total=job["total"] or None, completed=settled,
                           description=f"{label} ({job['status']})")
                if job["status"] in JOB_FINISHED:
                    return job
                time.sleep(poll_s)

    def close(self) -> None:
        self.http.close()


def _gateway_url() -> str:
    from services.common.peers import peer_url

    return peer_url("gateway")


def api_options(func: Any) -> Any:
    """--url and --username, shared by every command that talks to the gateway."""
    func = click.option("--username", "-u", envvar="IMGSEARCH_USERNAME", default=None,
                        help="Admin user (env IMGSEARCH_USERNAME); the password comes from "
                             "IMGSEARCH_PASSWORD or a prompt.")(func)
    func = click.option("--url", envvar="IMGSEARCH_URL", default=_gateway_url,
                        show_default="the gateway section's host and port",
                        help="The gateway (env IMGSEARCH_URL).")(func)
    return func


def report_job(job: dict[str, Any]) -> None:
    click.echo(f"job {job['id']} {job['status']}: {job['done']} done, {job['failed']} failed, "
               f"{job['skipped']} skipped of {job['total']}")
    for item in job.get("items_failed", [])[:20]:
        click.echo(f"  image {item.get('image_id')}: {item.get('error')}", err=True)


def run_admin_job(kind: str, url: str, username: str | None, *, wait: bool) -> None:
    """Start the admin job `kind` (reindex, reconcile) and follow it with a progress bar;
    exit status 1 when it does not succeed."""
    api = Api(url, username)
    try:
        api.login()
        job_id = api.call("POST", f"/admin/{kind}")["job_id"]
        click.echo(f"{kind} job {job_id}")
        if wait:
            job = api.follow(job_id, label=kind)
            report_job(job)
            if job["status"] != JobStatus.succeeded:
                raise SystemExit(1)
    finally:
        api.close()
