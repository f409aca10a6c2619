"""User routes: create (argon2 hash), get, list, verify a password, update (password,
role), delete. An update bumps the user's token version: the gateway then refuses older
tokens."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response

from services.catalog.api.deps import DbDep, HasherDep, SettingsDep
from services.catalog.repository import users as repo
from services.catalog.repository.session import read, transact
from services.catalog.repository.users import UserRecord
from services.catalog.schemas import Credentials, UserCreate, UserList, UserOut, UserUpdate
from services.common.errors import InvalidRequest

router = APIRouter(tags=["users"])


def _out(record: UserRecord) -> UserOut:
    return UserOut.model_validate(asdict(record))


@router.post("/v1/users", status_code=201, response_model=UserOut)
def create_user(body: UserCreate, db: DbDep, settings: SettingsDep,
                hasher: HasherDep) -> UserOut:
    """A new user; 409 user_exists when the username is taken."""
    password_hash = repo.hash_password(hasher, body.password,
                                       min_length=settings.password_min_length)
    return _out(transact(db, repo.create_user, username=body.username,
                         password_hash=password_hash, role=body.role.value))


@router.post("/v1/users/verify", response_model=UserOut)
def verify_user(body: Credentials, db: DbDep, hasher: HasherDep) -> UserOut:
    """The user if the password matches; 401 invalid_credentials otherwise."""
    return _out(repo.verify_user(db=db, hasher=hasher, username=body.username,
                                 password=body.password))


@router.get("/v1/users/{username}", response_model=UserOut)
def get_user(username: str, db: DbDep) -> UserOut:
    """One user by name."""
    return _out(read(db, repo.get_user, username=username))


@router.get("/v1/users", response_model=UserList)
def list_users(db: DbDep) -> UserList:
    """Every user."""
    return UserList(users=[_out(r) for r in read(db, repo.list_users)])


@router.patch("/v1/users/{username}", response_model=UserOut)
def update_user(username: str, body: UserUpdate, db: DbDep, settings: SettingsDep,
                hasher: HasherDep) -> UserOut:
    """A new password and/or role; the user's earlier tokens stop working. 409 last_admin
    when demoting the only admin."""
    if body.password is None and body.role is None:
        raise InvalidRequest("give a new password, a new role, or both")
    password_hash = None
    if body.password is not None:
        password_hash = repo.hash_password(hasher, body.password,
                                           min_length=settings.password_min_length)
    return _out(transact(db, repo.update_user, username=username, password_hash=password_hash,
                         role=body.role.value if body.role else None))


@router.delete("/v1/users/{username}", status_code=204, response_class=Response)
def delete_user(username: str, db: DbDep) -> Response:
    """Remove a user (their tokens stop working); 409 last_admin for the only admin."""
    transact(db, repo.delete_user, username=username)
    return Response(status_code=204)
