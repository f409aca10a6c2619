"""`generation.json`: what a generation directory is meant to hold, beyond its vectors.

- `type`, `params`: the index type and parameter overrides last chosen by a rebuild;
- `config_type`: the configured type when that was written, so editing the configuration
  later wins over an older rebuild;
- `model`, `dim`: pinned for a staging generation (the reindex target), else null.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.index.store.fsutil import write_file_atomic

FILENAME = "generation.json"


@dataclass
class GenerationMeta:
    type: str
    config_type: str
    params: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    dim: int | None = None

    def save(self, directory: Path) -> None:
        write_file_atomic(directory / FILENAME, json.dumps(asdict(self)).encode())

    @classmethod
    def load(cls, directory: Path) -> GenerationMeta | None:
        path = directory / FILENAME
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(**{k: raw.get(k) for k in ("type", "config_type", "model", "dim")},
                   params=raw.get("params") or {})
