"""Keys under a prefix of the shared Redis: what a test run or a benchmark leaves behind is
deleted by the prefix it was given."""

from __future__ import annotations


def drop_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key under `prefix` (non-empty: an empty one would match every key);
    returns how many."""
    import redis

    if not prefix:
        raise ValueError("an empty prefix would delete every key")
    client = redis.Redis.from_url(redis_url)
    try:
        dropped = 0
        for key in client.scan_iter(match=prefix + "*", count=1000):
            dropped += client.delete(key)
        return dropped
    finally:
        client.close()
