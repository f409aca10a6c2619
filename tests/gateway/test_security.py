"""Access tokens: issue/verify, expiry, forgery, algorithm pinning, roles."""

from __future__ import annotations

import time

import jwt
import pytest

from gateway.security import (
    AdminRequired,
    InvalidToken,
    NotAuthenticated,
    Principal,
    TokenExpired,
    TokenIssuer,
    parse_bearer,
    require_admin,
)

SECRET = "k" * 40


def issuer(**kwargs: object) -> TokenIssuer:
    options = {"issuer": "imgsearch", "audience": "imgsearch-api", "expiry_s": 60}
    options.update(kwargs)
    return TokenIssuer(SECRET, **options)  # type: ignore[arg-type]


def test_round_trip() -> None:
    tokens = issuer()
    principal = tokens.verify(tokens.issue(Principal("ann", "admin")))
    assert principal == Principal("ann", "admin") and principal.is_admin


def test_expired() -> None:
    tokens = issuer()
    old = tokens.issue(Principal("ann", "viewer"), now=time.time() - 3600)
    with pytest.raises(TokenExpired) as err:
        tokens.verify(old)
    assert err.value.code == "token_expired" and err.value.status == 401


@pytest.mark.parametrize("forge", ["other-secret", "none-alg", "wrong-aud", "bad-role", "junk"])
def test_forged(forge: str) -> None:
    tokens = issuer()
    claims = {"sub": "ann", "role": "admin", "iss": "imgsearch", "aud": "imgsearch-api",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    if forge == "other-secret":
        token = jwt.encode(claims, "x" * 40, algorithm="HS256")
    elif forge == "none-alg":
        token = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    elif forge == "wrong-aud":
        token = jwt.encode({**claims, "aud": "elsewhere"}, SECRET, algorithm="HS256")
    elif forge == "bad-role":
        token = jwt.encode({**claims, "role": "root"}, SECRET, algorithm="HS256")
    else:
        token = "not.a.token"
    with pytest.raises(InvalidToken) as err:
        tokens.verify(token)
    assert err.value.code == "invalid_token"


def test_roles_and_header() -> None:
    with pytest.raises(NotAuthenticated):
        require_admin(None)
    with pytest.raises(AdminRequired) as err:
        require_admin(Principal("vic", "viewer"))
    assert err.value.status == 403 and err.value.code == "admin_required"
    assert parse_bearer("Bearer abc") == "abc"
    with pytest.raises(InvalidToken):
        parse_bearer("Basic abc")
