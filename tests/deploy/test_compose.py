"""What can be checked of the deployment by reading it: the compose file against the Compose
Specification's JSON schema, commands and modules, environment, copied paths, ports, volumes
(each mount point created and owned by its image), dependencies, limits, log rotation and
health checks. tests/deploy/test_images.py builds the images and runs them; with a Docker
engine, the stack is also built and smoke-tested here."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from imgsearch.commands.serve import SERVICES
from services.common.settings import CommonSettings
from tests.helpers.requirements import optional

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DOCKERFILES = sorted((REPO / "deploy").glob("*.Dockerfile"))
# `make venv` downloads it into the virtualenv's share/ (the one running the tests).
SCHEMA_WHEEL = sorted((Path(sys.prefix) / "share").glob("docker_compose-*.whl"))
# Compose services built from our Dockerfiles, and the settings section of each.
OURS = {name: svc for name, svc in COMPOSE["services"].items() if "build" in svc}
PORTS = {"embedding": 8101, "segmentation": 8102, "index": 8103, "catalog": 8104, "gateway": 8000}
# Dependencies a service starts beside but does not wait to be healthy for: search works
# without segmentation (`imgsearch up` treats it the same way).
OPTIONAL_DEPENDENCIES = {("gateway", "segmentation")}


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {str(k): str(v) for k, v in env.items()}


def _dockerfile(service: dict[str, Any]) -> Path:
    return REPO / service["build"]["dockerfile"]


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage(path: Path) -> list[tuple[str, str]]:
    steps = _instructions(path)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def _image_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in _final_stage(path):
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def _volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """Named volume -> mount path in the container."""
    out = {}
    for vol in service.get("volumes", []):
        source, target = vol.split(":")[:2]
        if not source.startswith((".", "/")):
            out[source] = target
    return out


def _command(service: dict[str, Any]) -> list[str]:
    if "command" in service:
        cmd = service["command"]
        return cmd if isinstance(cmd, list) else shlex.split(cmd)
    cmds = [rest for word, rest in _instructions(_dockerfile(service)) if word == "CMD"]
    return list(json.loads(cmds[-1]))


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert SCHEMA_WHEEL, "run `make venv`: it puts the Compose schema into .venv/share"
    with zipfile.ZipFile(SCHEMA_WHEEL[-1]) as wheel:
        schema = json.loads(wheel.read("compose/config/compose_spec.json"))
    jsonschema.Draft201909Validator(schema).validate(COMPOSE)


def test_expected_services_exist() -> None:
    assert set(COMPOSE["services"]) >= {"mysql", "redis", "embedding", "segmentation", "index",
                                        "catalog", "worker", "beat", "gateway"}
    assert COMPOSE["services"]["mysql"]["image"].startswith("mysql:8")
    assert COMPOSE["services"]["redis"]["image"].startswith("redis:7")


@pytest.mark.parametrize("name", sorted(OURS))
def test_command_and_module_exist(name: str) -> None:
    argv = _command(OURS[name])
    if argv[:2] == ["imgsearch", "worker"]:
        from imgsearch.commands.worker import worker

        assert worker.name == "worker"
        assert "--concurrency" not in argv and "-c" not in argv, \
            "the worker's concurrency comes from IMGSEARCH_WORKERS_CONCURRENCY"
    elif argv[:2] == ["imgsearch", "serve"]:
        factory, settings_cls = SERVICES[argv[2]]
        for target in (factory, settings_cls):
            module, attr = target.split(":")
            assert hasattr(importlib.import_module(module), attr), target
    elif argv[0] == "celery":
        module, attr = argv[argv.index("-A") + 1].split(":")
        assert hasattr(importlib.import_module(module), attr)
        assert argv[argv.index("-A") + 2] in ("worker", "beat")
    else:
        pytest.fail(f"{name}: unexpected command {argv}")


def _settings_classes() -> dict[str, type]:
    classes: dict[str, type] = {}
    for _factory, settings_cls in SERVICES.values():
        module, attr = settings_cls.split(":")
        cls = getattr(importlib.import_module(module), attr)
        classes[cls.yaml_section] = cls
    for module, attr in (("services.workers.config", "WorkersSettings"),
                         ("services.catalog.config", "DatabaseSettings")):
        cls = getattr(importlib.import_module(module), attr)
        classes[cls.yaml_section] = cls
    return classes


def test_every_environment_variable_is_one_a_service_reads() -> None:
    """A typo in an IMGSEARCH_ variable would be silently ignored: catch it here."""
    classes = _settings_classes()
    known = {f"IMGSEARCH_{field.upper()}" for field in CommonSettings.model_fields}
    for section, cls in classes.items():
        known |= {f"IMGSEARCH_{section.upper()}_{field.upper()}" for field in cls.model_fields}
    for name, service in OURS.items():
        unknown = {key for key in _env(service) if key.startswith("IMGSEARCH_")} - known
        assert not unknown, f"{name} sets variables no settings class reads: {sorted(unknown)}"


def test_every_secret_a_service_needs_is_provided_without_a_default() -> None:
    for name, service in OURS.items():
        env = _env(service)
        token = env.get("IMGSEARCH_INTERNAL_TOKEN", "")
        assert token.startswith("${IMGSEARCH_INTERNAL_TOKEN:?"), name
    gateway = _env(OURS["gateway"])
    assert gateway["IMGSEARCH_GATEWAY_JWT_SECRET"].startswith("${IMGSEARCH_GATEWAY_JWT_SECRET:?")
    catalog = _env(OURS["catalog"])
    assert catalog["IMGSEARCH_DATABASE_DRIVER"] == "mysql+pymysql"
    assert catalog["IMGSEARCH_DATABASE_PASSWORD"].startswith("${MYSQL_PASSWORD:?")
    mysql_env = COMPOSE["services"]["mysql"]["environment"]
    assert mysql_env["MYSQL_ROOT_PASSWORD"].startswith("${MYSQL_ROOT_PASSWORD:?")
    example = (REPO / ".env.example").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", (REPO / "docker-compose.yml").read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", example, re.M))
    assert interpolated <= documented, f"undocumented in .env.example: {interpolated - documented}"
    assert not re.search(r"^(?!#)[A-Z_]*(PASSWORD|SECRET|TOKEN)=\S", example, re.M), \
        ".env.example must not ship a secret"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_exists(dockerfile: Path) -> None:
    for word, rest in _instructions(dockerfile):
        if word != "COPY" or "--from=" in rest:
            continue
        *sources, _dest = shlex.split(rest)
        for source in sources:
            assert (REPO / "web" / source).exists() if dockerfile.name.startswith("gateway") \
                and source in ("package.json", "package-lock.json", "./") else \
                (REPO / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_slim_multistage_and_unprivileged(dockerfile: Path) -> None:
    steps = _instructions(dockerfile)
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2 and froms[-1].startswith("python:3.11-slim")
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(word == "HEALTHCHECK" for word, _ in steps)
    installs = " ".join(rest for word, rest in steps if word == "RUN" and "pip install" in rest)
    group = re.findall(r'"\.\[(\w+)\]"', installs)
    assert len(group) == 1, "each image installs exactly one dependency group"
    has_torch = "torch" in installs
    assert has_torch == (group[0] == "segmentation"), "torch only in the segmentation image"


@pytest.mark.parametrize("name", sorted(PORTS))
def test_ports_and_healthchecks_agree(name: str) -> None:
    service = OURS[name]
    port = PORTS[name]
    steps = _instructions(_dockerfile(service))
    assert f"{port}" in [rest for word, rest in steps if word == "EXPOSE"]
    health = " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/" in health
    settings_cls = _settings_classes()[name]
    assert settings_cls.model_fields["port"].default == port or settings_cls().port == port


def test_only_the_gateway_publishes_a_port_and_dependencies_are_healthy() -> None:
    services = COMPOSE["services"]
    published = [name for name, svc in services.items() if svc.get("ports")]
    assert published == ["gateway"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if (name, dep) in OPTIONAL_DEPENDENCIES:
                assert cond == {"condition": "service_started"}, f"{name} must not wait for {dep}"
                continue
            assert cond == {"condition": "service_healthy"}, f"{name} -> {dep}"
            dep_hc = services[dep].get("healthcheck")
            has_own = dep_hc and not dep_hc.get("disable")
            assert has_own or "build" in services[dep], f"{dep} has no healthcheck"


def test_volumes_are_declared_and_data_is_shared() -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    for svc in COMPOSE["services"].values():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared
    # Every process that reads or writes image files sees the same volume at the data dir.
    for name in ("gateway", "worker", "segmentation"):
        assert _volume_targets(OURS[name])["images"] == "/data", name
    # The weights, where the services look for them (the models dir under the data dir).
    for name in ("embedding", "segmentation"):
        assert _volume_targets(OURS[name])["models"] == "/data/models", name
    assert _volume_targets(OURS["index"])["index"] == "/data/index"


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_volume_mount_point_is_created_and_owned_by_the_image_user(name: str) -> None:
    """A fresh named volume takes the owner of the image's directory at its mount path, and is
    root's when the image has no such directory: a non-root service then cannot write it."""
    service = OURS[name]
    stage = _final_stage(_dockerfile(service))
    user = [rest for word, rest in stage if word == "USER"][-1]
    runs = " && ".join(rest for word, rest in stage if word == "RUN")
    created = set()
    for cmd in re.split(r"&&|;", runs):
        argv = shlex.split(cmd)
        if argv[:2] == ["mkdir", "-p"]:
            for path in argv[2:]:
                parts = Path(path).parts
                created |= {str(Path(*parts[:n])) for n in range(2, len(parts) + 1)}
    chowned = [argv[-1] for argv in (shlex.split(c) for c in re.split(r"&&|;", runs))
               if argv[:2] == ["chown", "-R"] and argv[2].split(":")[0] == user]
    for volume, target in _volume_targets(service).items():
        assert target in created, f"{name}: the image does not create {target} ({volume})"
        assert any(target == root or target.startswith(root.rstrip("/") + "/")
                   for root in chowned), f"{name}: {target} is not chowned to {user}"


@pytest.mark.parametrize("name", sorted(OURS))
def test_compose_environment_agrees_with_the_image(name: str) -> None:
    service = OURS[name]
    image_env = _image_env(_dockerfile(service))
    env = {**image_env, **_env(service)}
    assert env["IMGSEARCH_DATA_DIR"] == "/data"
    assert image_env["IMGSEARCH_DATA_DIR"] == "/data"
    if name == "index":
        assert env["IMGSEARCH_INDEX_DIR"] == _volume_targets(service)["index"]
    if name == "gateway":
        copies = [shlex.split(rest)[-1] for word, rest in _final_stage(_dockerfile(service))
                  if word == "COPY" and "--from=web" in rest]
        assert copies == [env["IMGSEARCH_GATEWAY_WEB_DIST"]], \
            "the gateway must serve the web app its image holds"


def test_every_service_has_limits_and_rotated_logs() -> None:
    for name, svc in COMPOSE["services"].items():
        limits = svc["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and limits["memory"], name
        logging = svc["logging"]
        assert logging["driver"] == "json-file", name
        assert logging["options"]["max-size"] and int(logging["options"]["max-file"]) >= 1, name


def test_worker_concurrency_and_healthcheck_are_its_own() -> None:
    worker = OURS["worker"]
    assert "IMGSEARCH_WORKERS_CONCURRENCY" in _env(worker)
    health = [rest for word, rest in _final_stage(_dockerfile(worker)) if word == "HEALTHCHECK"]
    assert len(health) == 1 and "worker" not in worker.get("healthcheck", {})
    # The worker's default node name is celery@<hostname>: ping that one node only.
    assert "inspect ping" in health[0] and '-d "celery@$(hostname)"' in health[0]


def test_segmentation_installs_cpu_torch_in_one_resolver_run() -> None:
    dockerfile = REPO / "deploy" / "segmentation.Dockerfile"
    runs = [rest for word, rest in _instructions(dockerfile)
            if word == "RUN" and "pip install" in rest]
    assert len(runs) == 1 and runs[0].count("pip install") == 1, "one resolver run"
    run = runs[0]
    assert '--index-url "$TORCH_INDEX_URL"' in run and "--constraint deploy/torch-cpu.txt" in run
    assert "deploy/check_cpu_torch.py --import" in run
    args = dict(rest.split("=", 1) for word, rest in _instructions(dockerfile) if word == "ARG")
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    import tomllib

    group = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["segmentation"]
    pins = {r.split("==")[0]: r.split("==")[1] for r in group
            if r.startswith(("torch==", "torchvision=="))}
    constraints = [line for line in (REPO / "deploy" / "torch-cpu.txt").read_text().splitlines()
                   if line and not line.startswith("#")]
    assert sorted(constraints) == sorted(f"{name}=={version}+cpu"
                                         for name, version in pins.items())


def test_database_sql_initialises_mysql() -> None:
    mounts = COMPOSE["services"]["mysql"]["volumes"]
    assert "./config/database.sql:/docker-entrypoint-initdb.d/01-schema.sql:ro" in mounts
    assert (REPO / "config" / "database.sql").is_file()


def _docker_engine() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return "no Docker engine answers (docker info failed)"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if compose.returncode != 0:
        return "no docker compose plugin"
    return None


@pytest.mark.slow
@pytest.mark.integration
def test_stack_builds_and_answers(tmp_path: Path) -> None:
    reason = _docker_engine()
    if reason:
        optional("a Docker engine", reason)
    env_file = tmp_path / ".env"
    import secrets

    env_file.write_text("\n".join([
        f"IMGSEARCH_INTERNAL_TOKEN={secrets.token_urlsafe(24)}",
        f"IMGSEARCH_GATEWAY_JWT_SECRET={secrets.token_urlsafe(40)}",
        f"MYSQL_ROOT_PASSWORD={secrets.token_urlsafe(16)}",
        f"MYSQL_PASSWORD={secrets.token_urlsafe(16)}",
        "IMGSEARCH_RANDOM_WEIGHTS=1",
        "IMGSEARCH_EMBEDDING_MODEL=dinov2_vits14",
    ]))
    project = f"imgsearch-smoke-{secrets.token_hex(3)}"
    base = ["docker", "compose", "-p", project, "--env-file", str(env_file)]
    try:
        subprocess.run([*base, "up", "-d", "--build", "--wait"], cwd=REPO, check=True,
                       timeout=3600)
        port = subprocess.run([*base, "port", "gateway", "8000"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip().rsplit(":", 1)[1]
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/config", timeout=10).status_code == 200
    finally:
        subprocess.run([*base, "down", "-v"], cwd=REPO, timeout=600)
