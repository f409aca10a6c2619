"""The built web app (web/dist) at `/`, with the SPA fallback to index.html; a plain page
saying how to build it when it is not built. API paths never fall back to the app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

from gateway.apidoc import method_not_allowed
from gateway.headers import WEB_CSP
from services.common.errors import NotFound

NOT_BUILT = """<!doctype html><html><head><meta charset="utf-8"><title>imgsearch</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>imgsearch is running</h1>
<p>The web app is not built yet. Build it with <code>make web</code>
(or <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>) and reload this page.</p>
<p>The API answers meanwhile: <a href="/api/docs">/api/docs</a>.</p>
</body></html>"""

# Paths the gateway itself serves; never the web app's.
RESERVED = ("healthz", "readyz", "metrics", "docs", "openapi.json")


def mount(app: FastAPI, dist: Path, *, api_prefix: str) -> None:
    root = dist.resolve()
    prefix = api_prefix.strip("/")

    @app.get("/{path:path}", include_in_schema=False, response_model=None)
    async def web_app(path: str) -> Response:
        if path == prefix or path.startswith(prefix + "/") or path in RESERVED:
            # An API path that takes other methods (a GET of a POST route) is a 405.
            raise method_not_allowed(app, "/" + path, "GET") or \
                NotFound(f"no route {path!r}", code="not_found")
        if "\x00" in path:
            # No file name holds a null byte (the OS would refuse it): nothing to serve.
            raise NotFound(f"no file {path!r}", code="not_found")
        index = root / "index.html"
        csp = {"Content-Security-Policy": WEB_CSP}
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, headers=csp)
        if path:
            candidate = (root / path).resolve()
            # A path escaping dist (../) is served the app, never the file it names.
            if candidate.is_relative_to(root) and candidate.is_file():
                return FileResponse(candidate, headers=csp)
        return FileResponse(index, headers={"Cache-Control": "no-cache", **csp})
