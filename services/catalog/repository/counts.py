"""Rows per image status, kept in `image_status_counts` so that stats cost five rows, not
a scan of every image (4.4 s at 10M rows).

Every function that inserts an image, changes a status or deletes a row adds its deltas
here, as the last statement of its transaction: the counts commit or roll back with the
rows they count, and each delta is applied only for a row the statement really changed
(its row count, or the status read under the row lock). Why in the repository and not in
database triggers:

- the counter rows are locked last in every transaction, in primary-key order, in one
  statement, so two transactions never wait for each other's counters in a cycle (a
  trigger updates them mid-transaction, row by row, in whatever order the rows come);
  and they are held only from that statement to the commit, however many rows a bulk
  transition changed;
- MySQL 8 with its binary log on (the default, and compose's MySQL 8.4) refuses
  CREATE TRIGGER to a user without SUPER unless `log_bin_trust_function_creators` is
  set: the catalog's own migrations would fail for the dedicated user the docs suggest.

`recount` rebuilds the counts from the rows (migration 0003 fills the table with it); a
writer of `images` outside this repository must call it afterwards (bench/catalog.py's
bulk load does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.catalog.db.models import Image, ImageStatusCount
from services.common.vocabulary import ImageStatus


def apply(session: Session, deltas: Mapping[str, int]) -> None:
    """Add `deltas` (status -> change) to the counts in one UPDATE (locks in key order)."""
    changes = {status: d for status, d in deltas.items() if d}
    if not changes:
        return
    case = sa.case(*((ImageStatusCount.status == s, d) for s, d in changes.items()), else_=0)
    session.execute(
        sa.update(ImageStatusCount).where(ImageStatusCount.status.in_(sorted(changes)))
        .values(n=ImageStatusCount.n + case).execution_options(synchronize_session=False)
    )


def moved(from_: str, to: str, n: int = 1) -> Counter[str]:
    """The deltas of `n` rows moved from one status to another."""
    return Counter({from_: -n, to: n})


def read(session: Session) -> dict[str, int]:
    """Rows per status; every status present, zero where none."""
    counts: dict[str, int] = dict.fromkeys(tuple(ImageStatus), 0)
    for status, n in session.execute(sa.select(ImageStatusCount.status, ImageStatusCount.n)):
        counts[status] = int(n)
    return counts


def recount(session: Session) -> dict[str, int]:
    """Set the counts from the rows (a scan of the status index); the caller commits, with
    no other writer running (a migration, a bulk load)."""
    counts: dict[str, int] = dict.fromkeys(tuple(ImageStatus), 0)
    rows = session.execute(sa.select(Image.status, sa.func.count()).group_by(Image.status))
    for status, n in rows:
        counts[status] = int(n)
    session.execute(sa.delete(ImageStatusCount))
    session.execute(sa.insert(ImageStatusCount),
                    [{"status": s, "n": n} for s, n in counts.items()])
    return counts
