"""Password and role changes bump the token version; deletes; the last admin stays; common
passwords are refused. On both backends."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from services.catalog.db.engine import Database
from services.catalog.repository import users
from services.catalog.repository.errors import LastAdmin, UserNotFound, WeakPassword
from services.catalog.repository.passwords import check_password, common_passwords
from services.catalog.repository.session import read, transact


def _create(db: Database, hasher: PasswordHasher, username: str, role: str = "viewer"
            ) -> users.UserRecord:
    return transact(db, users.create_user, username=username, role=role,
                    password_hash=users.hash_password(hasher, f"{username}-pw-long",
                                                      min_length=8))


def test_changes_bump_the_token_version(db: Database, hasher: PasswordHasher) -> None:
    _create(db, hasher, "root", "admin")
    user = _create(db, hasher, "ann", "admin")
    assert user.token_version == 0
    same = transact(db, users.update_user, username="ann", role="admin")
    assert same.token_version == 0  # nothing changed, nothing revoked
    demoted = transact(db, users.update_user, username="ann", role="viewer")
    assert (demoted.role, demoted.token_version) == ("viewer", 1)
    new_hash = users.hash_password(hasher, "another-long-one", min_length=8)
    changed = transact(db, users.update_user, username="ann", password_hash=new_hash)
    assert changed.token_version == 2
    assert users.verify_user(db=db, hasher=hasher, username="ann",
                             password="another-long-one").token_version == 2
    transact(db, users.delete_user, username="ann")
    with pytest.raises(UserNotFound):
        read(db, users.get_user, username="ann")
    with pytest.raises(UserNotFound):
        transact(db, users.update_user, username="ann", role="admin")


def test_the_last_admin_cannot_be_deleted_or_demoted(db: Database,
                                                     hasher: PasswordHasher) -> None:
    _create(db, hasher, "only", "admin")
    for change in (lambda: transact(db, users.delete_user, username="only"),
                   lambda: transact(db, users.update_user, username="only", role="viewer")):
        with pytest.raises(LastAdmin) as err:
            change()
        assert err.value.code == "last_admin" and err.value.status == 409
    assert read(db, users.get_user, username="only").role == "admin"
    _create(db, hasher, "second", "admin")
    transact(db, users.update_user, username="only", role="viewer")
    assert read(db, users.get_user, username="only").role == "viewer"


@pytest.mark.parametrize("password", ["password", "Password", "qwertyuiop", "iloveyou1",
                                      "1234567890"])
def test_common_passwords_are_refused(password: str) -> None:
    with pytest.raises(WeakPassword) as err:
        check_password(password, min_length=8)
    assert err.value.detail == {"reason": "common"}


def test_the_list_is_the_shipped_one() -> None:
    common = common_passwords()
    assert len(common) > 19_000 and "123456" in common
    check_password("correct horse battery", min_length=8)  # not in it: accepted
