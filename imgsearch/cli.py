"""`imgsearch`: one command for every task. Subcommands load lazily, so `imgsearch embed`
never imports the modules of another service (and never torch)."""

from __future__ import annotations

import importlib
from typing import Any

import click

# command name -> "module:attribute" of a click command; imported on first use.
COMMANDS: dict[str, str] = {
    "serve": "imgsearch.commands.serve:serve",
    "embed": "imgsearch.commands.embed:embed",
    "weights": "imgsearch.commands.weights:weights",
    "selfcheck": "imgsearch.commands.selfcheck:selfcheck",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="imgsearch")
def cli() -> None:
    """Self-hosted image search: DINOv2 (NumPy), Faiss, MySQL, MobileSAM."""


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="imgsearch")


if __name__ == "__main__":
    main()
