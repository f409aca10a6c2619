"""Files this project creates are private to the user running it.

The data directory holds password hashes (catalog.db), queued task arguments (broker.sqlite),
logs, the uploaded images and the generated secrets: none of it is for other local users.
`private_files()` sets the process umask to 077 (new files 0600, new folders 0700) and takes
group and other access away from the data directory itself, which covers what is already
inside it. Every entry point calls it (the `imgsearch` command, the Celery app).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

UMASK = 0o077


def private_files(data_dir: Path | None = None) -> None:
    os.umask(UMASK)
    if data_dir is None or not data_dir.is_dir():
        return
    try:
        mode = stat.S_IMODE(data_dir.stat().st_mode)
        if mode & 0o077:
            data_dir.chmod(mode & 0o700)
    except OSError as exc:  # not ours (a mounted volume): the umask still applies
        logger.warning("cannot restrict %s to its owner: %s", data_dir, exc)
