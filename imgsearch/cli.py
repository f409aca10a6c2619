"""`imgsearch`: one command for every task. Subcommands load lazily, so `imgsearch embed`
never imports the modules of another service (and never torch)."""

from __future__ import annotations

import importlib
from typing import Any

import click

from services.common.cpu import choose_openblas_kernels

# Before any command imports NumPy (OpenBLAS reads the choice when it loads).
choose_openblas_kernels()

# command name -> ("module:attribute" of a click command, one-line help). Imported on use.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("imgsearch.commands.serve:serve", "Run one service (embedding, index, ...)."),
    "embed": ("imgsearch.commands.embed:embed", "DINOv2 features of images (JSON or .npy)."),
    "weights": ("imgsearch.commands.weights:weights", "Download or convert model weights."),
    "selfcheck": ("imgsearch.commands.selfcheck:selfcheck",
                  "Check the engine against the reference implementation."),
    "worker": ("imgsearch.commands.worker:worker",
               "Run the Celery workers (--beat for the periodic reconcile)."),
    "db": ("imgsearch.commands.db:db", "Catalog database: upgrade the schema, reset."),
    "users": ("imgsearch.commands.users:users", "Create and list users (admin, viewer)."),
    "segmentation": ("imgsearch.commands.segmentation:segmentation",
                     "MobileSAM weights: download mobile_sam.pt."),
    "up": ("imgsearch.commands.up:up",
           "Start everything locally, ingest the demo gallery, print the URL."),
    "ingest": ("imgsearch.commands.ingest:ingest",
               "Upload a folder of images through the gateway (--reset-db)."),
    "search": ("imgsearch.commands.search:search", "Search the gallery with an image."),
    "reindex": ("imgsearch.commands.reindex:reindex", "Rebuild the index (model change)."),
    "reconcile": ("imgsearch.commands.reconcile:reconcile",
                  "Repair drift between the catalog and the index."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing must not import every command's module (and so every service's dependencies).
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="imgsearch")
def cli() -> None:
    """Self-hosted image search: DINOv2 (NumPy), Faiss, MySQL, MobileSAM."""
    from services.common.permissions import private_files
    from services.common.settings import CommonSettings

    # Before any command creates a file: catalog.db, broker.sqlite, logs, images are private.
    private_files(CommonSettings().data_dir)


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="imgsearch")


if __name__ == "__main__":
    main()
