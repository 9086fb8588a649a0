"""Where the shipped data sets live."""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """Root of the real data sets: ``$TSMODELS_DATA``, else ``../shared/data`` (relative to the
    working directory, then to this checkout)."""
    env = os.environ.get("TSMODELS_DATA")
    if env:
        return Path(env)
    cwd_rel = Path("../shared/data")
    if cwd_rel.exists():
        return cwd_rel
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"
