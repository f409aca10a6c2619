"""Users on both backends: argon2 hashes, unique names, verification."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from services.catalog.db.engine import Database
from services.catalog.db.models import User
from services.catalog.repository import users
from services.catalog.repository.errors import UserExists, UserNotFound, WeakPassword
from services.catalog.repository.session import read, transact
from services.common.errors import InvalidCredentials


def _create(db: Database, hasher: PasswordHasher, username: str, password: str,
            role: str = "viewer") -> users.UserRecord:
    password_hash = users.hash_password(hasher, password, min_length=8)
    return transact(db, users.create_user, username=username, password_hash=password_hash,
                    role=role)


def test_create_stores_an_argon2_hash_only(db: Database, hasher: PasswordHasher) -> None:
    user = _create(db, hasher, "alice", "correct horse", "admin")
    assert (user.username, user.role, user.last_login_at) == ("alice", "admin", None)
    with db.read() as session:
        stored = session.execute(sa.select(User.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored


def test_usernames_are_unique_and_case_sensitive(db: Database, hasher: PasswordHasher) -> None:
    _create(db, hasher, "alice", "password-1")
    with pytest.raises(UserExists) as info:
        _create(db, hasher, "alice", "password-2")
    assert info.value.code == "user_exists"
    # MySQL's default collation would call these equal; the catalog does not.
    assert _create(db, hasher, "Alice", "password-3").username == "Alice"
    assert [u.username for u in read(db, users.list_users)] == ["alice", "Alice"]


def test_short_password_is_refused(hasher: PasswordHasher) -> None:
    with pytest.raises(WeakPassword) as info:
        users.hash_password(hasher, "short", min_length=8)
    assert info.value.code == "weak_password"


def test_get_user(db: Database, hasher: PasswordHasher) -> None:
    _create(db, hasher, "bob", "bob-password")
    assert read(db, users.get_user, username="bob").role == "viewer"
    with pytest.raises(UserNotFound) as info:
        read(db, users.get_user, username="nobody")
    assert info.value.code == "user_not_found"


def test_verify(db: Database, hasher: PasswordHasher) -> None:
    _create(db, hasher, "carol", "carol-password", "admin")
    user = users.verify_user(db=db, hasher=hasher, username="carol", password="carol-password")
    assert user.role == "admin"
    assert user.last_login_at is not None
    for name, password in (("carol", "wrong-password"), ("nobody", "carol-password"),
                           ("carol", "")):
        with pytest.raises(InvalidCredentials) as info:
            users.verify_user(db=db, hasher=hasher, username=name, password=password)
        assert info.value.code == "invalid_credentials"
        assert info.value.status == 401


def test_verify_upgrades_an_old_hash(db: Database, hasher: PasswordHasher) -> None:
    _create(db, hasher, "dave", "dave-password")
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    users.verify_user(db=db, hasher=stronger, username="dave", password="dave-password")
    with db.read() as session:
        stored = session.execute(sa.select(User.password_hash)).scalar_one()
    assert not stronger.check_needs_rehash(stored)
    assert users.verify_user(db=db, hasher=stronger, username="dave",
                             password="dave-password").username == "dave"
