"""`imgsearch search IMAGE`: the most similar images of the gallery (the original
search_cli.py), as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from imgsearch.commands._api import Api, api_options


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-k", "k", type=click.IntRange(1, 200), default=10, show_default=True)
@click.option("--tags", default="", help="Only images having all these tags (a,b).")
@click.option("--min-score", type=float, default=0.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result page as JSON.")
@click.option("--login", is_flag=True, help="Log in first (when search is not public).")
@api_options
def search(image: Path, k: int, tags: str, min_score: float, as_json: bool, login: bool,
           url: str, username: str | None) -> None:
    """Search the gallery with IMAGE."""
    api = Api(url, username)
    try:
        if login:
            api.login()
        page = api.call("POST", "/search",
                        files={"file": (image.name, image.read_bytes())},
                        data={"k": str(k), "tags": tags, "min_score": str(min_score)})
    finally:
        api.close()
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{image.name}: top {k} ({page['took_ms']} ms, "
                        f"model {page['query']['model']})")
    for column in ("#", "score", "id", "file", "size", "tags"):
        table.add_column(column, justify="right" if column in ("#", "score", "id") else "left")
    for rank, hit in enumerate(page["results"], start=1):
        table.add_row(str(rank), f"{hit['score']:.4f}", str(hit["id"]),
                      hit.get("original_filename") or "", f"{hit['width']}x{hit['height']}",
                      ",".join(hit.get("tags") or []))
    Console().print(table)
