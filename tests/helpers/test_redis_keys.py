"""`drop_prefix` deletes the keys under its prefix and nothing else."""

from __future__ import annotations

import pytest

from tests.helpers.redis_keys import drop_prefix


def test_drop_prefix_deletes_only_its_keys(redis_url: str, redis_prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    inside = [f"{redis_prefix}a", f"{redis_prefix}b:c"]
    beside = f"{redis_prefix[:-1]}-beside"  # shares the prefix's text but not its ':'
    try:
        for key in (*inside, beside):
            client.set(key, b"1")
        assert drop_prefix(redis_url, redis_prefix) == 2
        assert not client.exists(*inside)
        assert client.exists(beside)
    finally:
        client.delete(beside)
        client.close()


def test_an_empty_prefix_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError):
        drop_prefix(redis_url, "")
