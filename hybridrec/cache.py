"""The user cache root shared by downloaded data and the text-embedding cache."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV = "HYBRIDREC_CACHE_DIR"


def cache_root() -> Path:
    """``$HYBRIDREC_CACHE_DIR`` if set, else the platform's user cache dir for hybridrec."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("hybridrec"))
