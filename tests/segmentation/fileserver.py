"""A local HTTP server serving one generated file, with Range support and scripted failures,
for testing the weights download (no network here)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Script:
    """What the server does: `payload` at /file; the first `fail_with_503` requests get 503;
    the first full-body answer stops after `cut_after` bytes when set (connection dropped)."""

    payload: bytes
    ranges: bool = True
    fail_with_503: int = 0
    cut_after: int | None = None
    requests: list[str | None] = field(default_factory=list)  # Range header of each request


@contextmanager
def serve_file(script: Script) -> Iterator[str]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:
            with lock:
                script.requests.append(self.headers.get("Range"))
                fail = script.fail_with_503 > 0
                if fail:
                    script.fail_with_503 -= 1
                cut = None
                if not fail:
                    cut, script.cut_after = script.cut_after, None
            if self.path.split("?", 1)[0] != "/file":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if fail:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, start = script.payload, 0
            match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
            if script.ranges and match:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/file"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
