"""Signed image URLs: bound to image, kind, role and expiry; stable within a step."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.signing import InvalidSignature, SignatureExpired, UrlSigner

SECRET = "s" * 48


def parts(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_round_trip_and_every_bound_field() -> None:
    signer = UrlSigner(SECRET, ttl_s=900)
    now = 1_800_000_000.0
    url = signer.url(42, "thumbnail", "admin", now=now)
    assert urlsplit(url).path == "/api/v1/images/42/thumbnail"
    q = parts(url)
    assert signer.verify(42, "thumbnail", exp=q["exp"], role=q["role"], sig=q["sig"],
                         now=now) == "admin"
    for image_id, kind, role in ((43, "thumbnail", "admin"), (42, "file", "admin"),
                                 (42, "thumbnail", "viewer")):
        with pytest.raises(InvalidSignature):
            signer.verify(image_id, kind, exp=q["exp"], role=role, sig=q["sig"], now=now)
    with pytest.raises(InvalidSignature):
        signer.verify(42, "thumbnail", exp=str(int(q["exp"]) + 1), role="admin", sig=q["sig"],
                      now=now)
    # "\u00d4\u009c" is what a fuzzer sent: a non-ASCII signature is refused, not a crash.
    for bad in ({"exp": None}, {"sig": None}, {"exp": "soon"}, {"role": "root"},
                {"sig": "\u00d4\u009c"}, {"sig": "\udcff"}):
        fields = {"exp": q["exp"], "role": q["role"], "sig": q["sig"], **bad}
        with pytest.raises(InvalidSignature):
            signer.verify(42, "thumbnail", now=now, **fields)
    with pytest.raises(SignatureExpired):
        signer.verify(42, "thumbnail", exp=q["exp"], role="admin", sig=q["sig"],
                      now=int(q["exp"]) + 1)
    # Another secret (another server) does not accept it.
    other = UrlSigner("t" * 48, ttl_s=900)
    with pytest.raises(InvalidSignature):
        other.verify(42, "thumbnail", exp=q["exp"], role="admin", sig=q["sig"], now=now)


def test_expiry_is_rounded_so_urls_stay_stable_and_short() -> None:
    signer = UrlSigner(SECRET, ttl_s=900)
    now = 1_800_000_010.0  # within a step, not on its edge
    assert signer.url(1, "file", "viewer", now=now) == signer.url(1, "file", "viewer",
                                                                   now=now + 1)
    exp = int(parts(signer.url(1, "file", "viewer", now=now))["exp"])
    assert now + 900 <= exp <= now + 900 + signer.step_s
    # A URL made with a longer lifetime than this server's is refused.
    long = UrlSigner(SECRET, ttl_s=7200).url(1, "file", "viewer", now=now)
    q = parts(long)
    with pytest.raises(InvalidSignature):
        signer.verify(1, "file", exp=q["exp"], role="viewer", sig=q["sig"], now=now)
