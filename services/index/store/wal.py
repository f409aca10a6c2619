"""The write-ahead log: every acknowledged write is here, fsynced, before the reply.

A log is a series of files `wal-<first seq>.log`; a snapshot covering seq S lets every file
whose records are all <= S go. A record is

    length u32 | crc32 u32 (of seq and payload) | seq u64 | payload

Reading stops at the first short or corrupt record of a file: only the last record can be
torn (a crash mid-write), and that write was never acknowledged.

Group commit: writers append under the caller's lock, then `sync(seq)`; one of them fsyncs
for every record written so far while the others wait for it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from services.index.store.fsutil import fsync_dir
from services.index.store.protocol import Ids, Vectors

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<IIQ")
_UPSERT = b"U"
_REMOVE = b"R"
_TAGS = b"T"


def encode_upsert(ids: Ids, vectors: Vectors, model: str) -> bytes:
    m = model.encode()
    head = _UPSERT + struct.pack("<IIH", len(ids), vectors.shape[1], len(m)) + m
    return (head + np.ascontiguousarray(ids, "<i8").tobytes()
            + np.ascontiguousarray(vectors, "<f4").tobytes())


def encode_remove(ids: Ids) -> bytes:
    return _REMOVE + struct.pack("<I", len(ids)) + np.ascontiguousarray(ids, "<i8").tobytes()


def encode_tags(ids: Ids, tags: list[list[str]]) -> bytes:
    """Replace the tags of `ids` (tags[i] for ids[i]). JSON: tag names are short strings."""
    body = {"ids": np.asarray(ids, np.int64).tolist(), "tags": [list(t) for t in tags]}
    return _TAGS + json.dumps(body, separators=(",", ":")).encode()


def decode_tags(payload: bytes) -> tuple[Ids, list[list[str]]] | None:
    """(ids, tag lists) of a tags record, None for any other record."""
    if payload[:1] != _TAGS:
        return None
    body = json.loads(payload[1:])
    return np.asarray(body["ids"], np.int64), [list(t) for t in body["tags"]]


def decode(payload: bytes) -> tuple[str, Ids, Vectors | None, str | None]:
    """payload -> ("upsert", ids, (n, d) vectors, model), ("remove", ids, None, None) or
    ("tags", ids, None, None) (its tag lists: `decode_tags`)."""
    op = payload[:1]
    if op == _TAGS:
        return "tags", np.asarray(json.loads(payload[1:])["ids"], np.int64), None, None
    if op == _UPSERT:
        n, dim, mlen = struct.unpack_from("<IIH", payload, 1)
        at = 1 + 10
        model = payload[at : at + mlen].decode()
        at += mlen
        ids = np.frombuffer(payload, "<i8", n, at).astype(np.int64)
        at += 8 * n
        vectors = np.frombuffer(payload, "<f4", n * dim, at).reshape(n, dim).astype(np.float32)
        return "upsert", ids, vectors, model
    if op == _REMOVE:
        (n,) = struct.unpack_from("<I", payload, 1)
        return "remove", np.frombuffer(payload, "<i8", n, 5).astype(np.int64), None, None
    raise ValueError(f"unknown log record type {op!r}")


def _log_files(directory: Path) -> list[tuple[int, Path]]:
    out = []
    for path in directory.glob("wal-*.log"):
        try:
            out.append((int(path.stem[4:]), path))
        except ValueError:
            continue
    return sorted(out)


def read_records(directory: Path, after: int = 0) -> Iterator[tuple[int, bytes]]:
    """(seq, payload) of every intact record with seq > `after`, in order."""
    for _, path in _log_files(directory):
        data = path.read_bytes()
        at = 0
        while at + _HEADER.size <= len(data):
            length, crc, seq = _HEADER.unpack_from(data, at)
            end = at + _HEADER.size + length
            if end > len(data):
                logger.warning("torn record at the end of %s ignored", path.name)
                break
            payload = data[at + _HEADER.size : end]
            if zlib.crc32(struct.pack("<Q", seq) + payload) != crc:
                logger.warning("corrupt record in %s at byte %d: rest of the file ignored",
                               path.name, at)
                break
            if seq > after:
                yield seq, payload
            at = end


class WriteAheadLog:
    """Appends records to the current log file; see the module docstring."""

    def __init__(self, directory: Path, next_seq: int) -> None:
        self.directory = directory
        self._cond = threading.Condition()
        self._syncing = False
        self._written = next_seq - 1
        self._durable = next_seq - 1
        self._fd = -1
        self._open(next_seq)

    @property
    def last_seq(self) -> int:
        return self._written

    def _open(self, first_seq: int) -> None:
        path = self.directory / f"wal-{first_seq:020d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(self.directory)

    def append(self, payload: bytes) -> int:
        """Write one record (not yet durable); the caller serialises appends. Returns its seq."""
        seq = self._written + 1
        crc = zlib.crc32(struct.pack("<Q", seq) + payload)
        record = _HEADER.pack(len(payload), crc, seq) + payload
        view = memoryview(record)
        while view:
            done = os.write(self._fd, view)
            view = view[done:]
        self._written = seq
        return seq

    def sync(self, seq: int) -> None:
        """Return once record `seq` is on disk (one fsync covers every waiting writer)."""
        with self._cond:
            while True:
                if self._durable >= seq:
                    return
                if not self._syncing:
                    break
                self._cond.wait()
            self._syncing = True
            target, fd = self._written, self._fd
        try:
            os.fsync(fd)
        finally:
            with self._cond:
                self._syncing = False
                if self._fd == fd:
                    self._durable = max(self._durable, target)
                self._cond.notify_all()

    def rotate(self) -> None:
        """Close the current file (durably) and start the next at `last_seq + 1`."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            os.fsync(self._fd)
            os.close(self._fd)
            self._durable = self._written
            self._open(self._written + 1)

    def drop_through(self, seq: int) -> None:
        """Delete the files whose records are all <= seq (a snapshot covers them)."""
        files = _log_files(self.directory)
        for (_, path), (next_first, _) in itertools.pairwise(files):
            if next_first <= seq + 1:
                path.unlink(missing_ok=True)
        fsync_dir(self.directory)

    def close(self) -> None:
        with self._cond:
            while self._syncing:
                self._cond.wait()
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
