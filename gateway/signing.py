"""Short-lived signed image URLs, for `<img>` tags (which cannot send a Bearer token).

`/api/v1/images/{id}/file?exp=<unix s>&role=<role>&sig=<hex>` where sig is the HMAC-SHA256
of "<id>:<kind>:<exp>:<role>" under a key derived from the JWT secret. A URL opens one file
of one image for the role that was signed in when it was made, until `exp`; it carries no
token. Expiry times are rounded up to a step so that a page asked for twice gets the same
URLs (and the browser's cache keeps working).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from urllib.parse import urlencode

from services.common.errors import Unauthorized
from services.common.vocabulary import ROLES

KINDS = ("file", "thumbnail")


class InvalidSignature(Unauthorized):
    code = "invalid_signature"


class SignatureExpired(Unauthorized):
    code = "signature_expired"


class UrlSigner:
    """Signs and checks image URLs; `ttl_s` is the shortest lifetime of a fresh URL."""

    def __init__(self, jwt_secret: str, *, ttl_s: int, prefix: str = "/api/v1") -> None:
        # A key of its own, so a URL signature can never stand for a token signature.
        self._key = hmac.new(jwt_secret.encode(), b"imgsearch image url v1",
                             hashlib.sha256).digest()
        self.ttl_s = ttl_s
        self.step_s = max(1, ttl_s // 4)
        self.prefix = prefix

    def _sig(self, image_id: int, kind: str, exp: int, role: str) -> str:
        message = f"{image_id}:{kind}:{exp}:{role}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def expiry(self, now: float | None = None) -> int:
        """`now + ttl`, rounded up to the step: the URL lives ttl_s to ttl_s + step_s."""
        now = time.time() if now is None else now
        return int(math.ceil((now + self.ttl_s) / self.step_s) * self.step_s)

    def url(self, image_id: int, kind: str, role: str, *, now: float | None = None) -> str:
        exp = self.expiry(now)
        query = urlencode({"exp": exp, "role": role,
                           "sig": self._sig(image_id, kind, exp, role)})
        return f"{self.prefix}/images/{image_id}/{kind}?{query}"

    def verify(self, image_id: int, kind: str, *, exp: str | None, role: str | None,
               sig: str | None, now: float | None = None) -> str:
        """The role a signed URL grants; raises `InvalidSignature` or `SignatureExpired`."""
        if kind not in KINDS or role not in ROLES or not exp or not sig:
            raise InvalidSignature("the image URL is not validly signed")
        try:
            expires = int(exp)
        except ValueError as exc:
            raise InvalidSignature("the image URL is not validly signed") from exc
        # Bytes, not str: compare_digest refuses non-ASCII strings, and `sig` is the client's.
        expected = self._sig(image_id, kind, expires, role).encode()
        if not hmac.compare_digest(expected, sig.encode("utf-8", "replace")):
            raise InvalidSignature("the image URL is not validly signed")
        now = time.time() if now is None else now
        if expires < now:
            raise SignatureExpired("the image URL has expired; reload the page")
        if expires > now + self.ttl_s + self.step_s:
            # Signed with a longer lifetime than this server gives: not one of ours now.
            raise InvalidSignature("the image URL is not validly signed")
        return role
