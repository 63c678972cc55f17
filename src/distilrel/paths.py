"""Where shared data, shared model weights and the local model cache live.

``DISTILREL_SHARED`` points at the shared folder (data/ and models/); by default we look for a
``shared`` folder beside the current directory or beside the repository checkout.
``DISTILREL_CACHE`` (default ``~/.cache/distilrel``) holds weights we unpack or convert once.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    env = os.environ.get("DISTILREL_SHARED")
    if env:
        return Path(env).expanduser().resolve()
    for base in (Path.cwd(), _REPO_ROOT):
        for cand in (base / "shared", base.parent / "shared"):
            if (cand / "data").is_dir():
                return cand.resolve()
    raise FileNotFoundError(
        "cannot find the shared folder (with data/ and models/): set DISTILREL_SHARED, "
        "or pass --data-dir to point a loader at your data"
    )


def data_dir() -> Path:
    env = os.environ.get("DISTILREL_DATA")
    return Path(env).expanduser().resolve() if env else shared_dir() / "data"


def cache_dir() -> Path:
    d = Path(os.environ.get("DISTILREL_CACHE", Path.home() / ".cache" / "distilrel")).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d
