"""Structured logging: one JSON object a line, carrying the request id of the call."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, request id, extras."""

    _RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key, value in vars(record).items():
            if key not in self._RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def _formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")


def rotating_file_handler(path: Path, *, fmt: str, max_bytes: int,
                          backups: int) -> logging.Handler:
    """A handler writing `path`, rolled over to path.1 .. path.<backups> past `max_bytes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                  encoding="utf-8")
    handler._imgsearch = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(_formatter(fmt))
    return handler


def configure_logging(level: str = "INFO", fmt: str = "json", *, log_file: Path | None = None,
                      max_bytes: int = 10 * 2**20, backups: int = 5) -> None:
    """Install one handler on the root logger (idempotent): stderr, or `log_file` rotated
    past `max_bytes` keeping `backups` old files."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_imgsearch", False):
            root.removeHandler(handler)
    if log_file is not None:
        root.addHandler(rotating_file_handler(log_file, fmt=fmt, max_bytes=max_bytes,
                                              backups=backups))
    else:
        stream = logging.StreamHandler(sys.stderr)
        stream._imgsearch = True  # type: ignore[attr-defined]
        stream.addFilter(_RequestIdFilter())
        stream.setFormatter(_formatter(fmt))
        root.addHandler(stream)
    root.setLevel(level.upper())
