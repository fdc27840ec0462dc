"""The one place for environment variables and default paths (data, checkpoint cache, results store).

Every other module asks here; none reads ``os.environ`` for these names itself.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "CACHE_ENV", "data_dir", "cache_dir", "user_cache_root"]

#: Directory holding the MNIST IDX files.
DATA_ENV = "LAYER_SIM_DATA"
#: Directory of the content-addressed checkpoint cache.
CACHE_ENV = "LAYER_SIM_CACHE"


def user_cache_root() -> Path:
    """``~/.cache/layer_sim``: the parent of every default location below."""
    return Path.home() / ".cache" / "layer_sim"


def _from(explicit, env: str, default: Path) -> Path:
    if explicit is not None:
        return Path(explicit).expanduser()
    value = os.environ.get(env)
    return Path(value).expanduser() if value else default


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """MNIST directory: ``explicit``, else ``$LAYER_SIM_DATA``, else ``~/.cache/layer_sim/mnist``."""
    return _from(explicit, DATA_ENV, user_cache_root() / "mnist")


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Checkpoint cache: ``explicit``, else ``$LAYER_SIM_CACHE``, else ``~/.cache/layer_sim/checkpoints``."""
    return _from(explicit, CACHE_ENV, user_cache_root() / "checkpoints")
