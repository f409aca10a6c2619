"""Login tokens: JWT signed with HS256 only (the algorithm is pinned on decode, so a token
claiming `none` or RS256 is refused), with expiry, issuer and audience. Passwords are checked
by the catalog (argon2 hashes live there and never leave it)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from services.common.errors import Forbidden, Unauthorized
from services.common.vocabulary import ROLES, Role

ALGORITHM = "HS256"


class NotAuthenticated(Unauthorized):
    code = "not_authenticated"


class InvalidToken(Unauthorized):
    code = "invalid_token"


class TokenExpired(Unauthorized):
    code = "token_expired"


class TokenRevoked(Unauthorized):
    """The token's user was deleted, or changed password or role since it was issued."""

    code = "token_revoked"


class AdminRequired(Forbidden):
    code = "admin_required"


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    # The user's token version when the token was issued (the catalog bumps it to revoke).
    token_version: int = 0

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin


class TokenIssuer:
    """Creates and checks access tokens with one secret, issuer, audience and lifetime."""

    def __init__(self, secret: str, *, issuer: str, audience: str, expiry_s: int) -> None:
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.expiry_s = expiry_s

    def issue(self, principal: Principal, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "sub": principal.username,
            "role": principal.role,
            "ver": principal.token_version,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.expiry_s,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The token's user; raises `TokenExpired` or `InvalidToken` (never anything else)."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("the access token has expired; log in again") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("the access token is not valid") from exc
        role = claims.get("role")
        username = claims.get("sub")
        version = claims.get("ver")
        if (role not in ROLES or not isinstance(username, str) or not username
                or not isinstance(version, int) or isinstance(version, bool)):
            raise InvalidToken("the access token is not valid")
        return Principal(username=username, role=role, token_version=version)


def require_admin(principal: Principal | None) -> Principal:
    if principal is None:
        raise NotAuthenticated("log in as an admin to use this route")
    if not principal.is_admin:
        raise AdminRequired("this route needs the admin role")
    return principal


def parse_bearer(header: str) -> str:
    """The token of an `Authorization: Bearer <token>` header (raises on another scheme)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token.strip()
