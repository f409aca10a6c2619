"""`imgsearch serve NAME`: run one service with uvicorn."""

from __future__ import annotations

import importlib

import click

# service name -> (app factory "module:function", settings class "module:Class")
SERVICES: dict[str, tuple[str, str]] = {
    "embedding": (
        "services.embedding.main:create_app",
        "services.embedding.config:EmbeddingSettings",
    ),
    "segmentation": (
        "services.segmentation.main:create_app",
        "services.segmentation.config:SegmentationSettings",
    ),
    "index": ("services.index.main:create_app", "services.index.config:IndexSettings"),
    "catalog": ("services.catalog.main:create_app", "services.catalog.config:CatalogSettings"),
    "gateway": ("gateway.main:create_app", "gateway.config:GatewaySettings"),
}


def _load(target: str) -> object:
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


@click.command()
@click.argument("name", type=click.Choice(sorted(SERVICES)))
@click.option("--host", default=None, help="Bind address (default: the service's settings).")
@click.option("--port", type=int, default=None, help="Port (default: the service's settings).")
@click.option("--log-level", default="info", show_default=True)
def serve(name: str, host: str | None, port: int | None, log_level: str) -> None:
    """Run service NAME (embedding, segmentation, index, catalog, gateway)."""
    import uvicorn

    from services.common.logging import configure_logging
    from services.common.server import uvicorn_options
    from services.common.settings import common_settings

    factory, settings_cls = SERVICES[name]
    settings = _load(settings_cls)()  # type: ignore[operator]
    common = common_settings()
    configure_logging(common.log_level, common.log_format, log_file=common.log_path,
                      max_bytes=common.log_max_bytes, backups=common.log_backups)
    uvicorn.run(
        factory,
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        log_level=log_level,
        log_config=None,
        access_log=False,
        **uvicorn_options(settings),
    )
