"""`q` on the image list: a case-insensitive substring of the original filename, taken
literally (LIKE wildcards escaped), the same on SQLite and MariaDB/MySQL."""

from __future__ import annotations

from collections.abc import Callable

from services.catalog.db.engine import Database
from services.catalog.repository import images
from services.catalog.repository.images import ImageRecord
from services.catalog.repository.session import read

MakeImage = Callable[..., ImageRecord]

NAMES = ["Cat_on_sofa.JPG", "catalogue-2024.png", "dog%park.jpg", "dogXpark.jpg",
         "my!cat.webp", "Sunset.jpeg"]


def _names(db: Database, q: str, **filters: object) -> set[str]:
    rows, total = read(db, images.list_images, q=q, limit=50, **filters)
    assert total == len(rows)
    return {r.original_filename for r in rows}


def test_q_matches_a_literal_case_insensitive_substring(db: Database,
                                                         make_image: MakeImage) -> None:
    rows = {name: make_image(original_filename=name) for name in NAMES}
    assert _names(db, "cat") == {"Cat_on_sofa.JPG", "catalogue-2024.png", "my!cat.webp"}
    assert _names(db, "CAT_ON") == {"Cat_on_sofa.JPG"}
    # Wildcards are literal characters: '%' and '_' match only themselves.
    assert _names(db, "dog%park") == {"dog%park.jpg"}
    assert _names(db, "t_o") == {"Cat_on_sofa.JPG"}
    assert _names(db, "_") == {"Cat_on_sofa.JPG"}
    assert _names(db, "%") == {"dog%park.jpg"}
    # The escape character itself is literal too.
    assert _names(db, "y!c") == {"my!cat.webp"}
    assert _names(db, "!") == {"my!cat.webp"}
    assert _names(db, "'; drop table images; --") == set()
    assert _names(db, ".jp") == {"Cat_on_sofa.JPG", "dog%park.jpg", "dogXpark.jpg",
                                 "Sunset.jpeg"}
    # Empty q is no filter; q combines with the other filters.
    assert len(_names(db, "")) == len(NAMES)
    assert _names(db, "cat", statuses=["indexed"]) == set()
    assert _names(db, "cat", uploader="nobody") == set()
    assert rows["Sunset.jpeg"].status == "pending"
