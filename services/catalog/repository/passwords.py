"""Password policy: a minimum length and not one of the 20,000 most common passwords.

The list is Django's `common-passwords.txt.gz` (Django 5.2.8, BSD licence: see
services/catalog/data/ORIGIN.md), lower case, one a line; a password is compared lower-cased,
so "Password" is refused like "password".
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

from services.catalog.repository.errors import WeakPassword

COMMON_PASSWORDS = Path(__file__).resolve().parents[1] / "data" / "common-passwords.txt.gz"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip() for line in lines if line.strip())


def check_password(password: str, *, min_length: int) -> None:
    """Raise `WeakPassword` (422) for a short or common password."""
    if len(password) < min_length:
        raise WeakPassword(f"the password needs at least {min_length} characters",
                           detail={"min_length": min_length})
    if password.lower().strip() in common_passwords():
        raise WeakPassword("the password is one of the 20,000 most common passwords; "
                           "choose another", detail={"reason": "common"})
