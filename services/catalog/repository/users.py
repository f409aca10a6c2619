"""Users: argon2id password hashes (argon2-cffi), never returned; login verification."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.catalog.db.engine import Database
from services.catalog.db.models import User
from services.catalog.db.types import utcnow
from services.catalog.repository.errors import LastAdmin, UserExists, UserNotFound
from services.catalog.repository.passwords import check_password
from services.common.errors import InvalidCredentials

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserRecord:
    id: int
    username: str
    role: str
    created_at: datetime
    last_login_at: datetime | None
    token_version: int


def _record(user: User) -> UserRecord:
    return UserRecord(id=user.id, username=user.username, role=user.role,
                      created_at=user.created_at, last_login_at=user.last_login_at,
                      token_version=user.token_version or 0)


def password_hasher(*, time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def hash_password(hasher: PasswordHasher, password: str, *, min_length: int) -> str:
    """The argon2 hash of an acceptable password (`WeakPassword`: too short or common)."""
    check_password(password, min_length=min_length)
    return hasher.hash(password)


def create_user(*, session: Session, username: str, password_hash: str, role: str
                ) -> UserRecord:
    """A new user with an already computed hash (hashing is slow: done outside the
    transaction). Raises `UserExists` for a taken username."""
    user = User(username=username, password_hash=password_hash, role=role,
                created_at=utcnow(), token_version=0)
    session.add(user)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise UserExists(f"user {username!r} exists", detail={"username": username}) from exc
    logger.info("user %s created with role %s", username, role)
    return _record(user)


def get_user(*, session: Session, username: str) -> UserRecord:
    user = session.execute(sa.select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise UserNotFound(f"user {username!r} does not exist", detail={"username": username})
    return _record(user)


def _user_row(session: Session, username: str) -> User:
    user = session.execute(sa.select(User).where(User.username == username)
                           .with_for_update()).scalar_one_or_none()
    if user is None:
        raise UserNotFound(f"user {username!r} does not exist", detail={"username": username})
    return user


def _refuse_last_admin(session: Session, user: User, action: str) -> None:
    admins = session.execute(sa.select(sa.func.count()).select_from(User)
                             .where(User.role == "admin")).scalar_one()
    if user.role == "admin" and admins <= 1:
        raise LastAdmin(f"{user.username!r} is the only admin; {action} would leave none",
                        detail={"username": user.username})


def update_user(*, session: Session, username: str, password_hash: str | None = None,
                role: str | None = None) -> UserRecord:
    """A new password and/or role; either bumps `token_version` (a role the user already
    has does not), so every token issued before is refused. Raises `UserNotFound`,
    `LastAdmin` (demoting the only admin)."""
    user = _user_row(session, username)
    if role is not None and role != user.role and role != "admin":
        _refuse_last_admin(session, user, "demoting it")
    changed = password_hash is not None or (role is not None and role != user.role)
    if password_hash is not None:
        user.password_hash = password_hash
    if role is not None:
        user.role = role
    if changed:  # giving the role the user already has revokes nothing
        user.token_version = (user.token_version or 0) + 1
    session.commit()
    logger.info("user %s updated (role %s, token version %d)", username, user.role,
                user.token_version)
    return _record(user)


def delete_user(*, session: Session, username: str) -> None:
    """Remove a user (their tokens stop working); `LastAdmin` for the only admin."""
    user = _user_row(session, username)
    _refuse_last_admin(session, user, "deleting it")
    session.delete(user)
    session.commit()
    logger.info("user %s deleted", username)


def list_users(*, session: Session) -> list[UserRecord]:
    return [_record(u) for u in session.execute(sa.select(User).order_by(User.id)).scalars()]


def verify_user(*, db: Database, hasher: PasswordHasher, username: str, password: str
                ) -> UserRecord:
    """The user if the password matches (last login recorded, hash upgraded when the
    parameters changed); `InvalidCredentials` otherwise, the same for an unknown user.

    The slow hash check runs outside any transaction, so it never holds a lock.
    """
    with db.read() as session:
        user = session.execute(
            sa.select(User).where(User.username == username)).scalar_one_or_none()
    invalid = InvalidCredentials("invalid username or password")
    if user is None:
        # Hash anyway so an unknown username takes as long as a wrong password.
        hasher.hash(password)
        raise invalid
    try:
        hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError) as exc:
        raise invalid from exc
    values: dict[str, object] = {"last_login_at": utcnow()}
    if hasher.check_needs_rehash(user.password_hash):
        values["password_hash"] = hasher.hash(password)
    with db.write() as session:
        session.execute(sa.update(User).where(User.id == user.id).values(**values))
        session.commit()
        return get_user(session=session, username=username)
