"""Options shared by every command (one meaning per flag everywhere) and the checks they need.

Each bundle is an ``Annotated`` type a command uses as a parameter annotation, so ``--device``,
``--data-dir``, ``--cache-dir``, ``--seeds`` and ``--output`` are spelt, documented and checked
the same way in every command.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer

from layer_sim.errors import ConfigError

__all__ = ["Device", "DataDir", "CacheDir", "Seeds", "PATH", "output_option", "parse_seeds", "parse_path", "MAX_SEEDS"]

#: More seeds than any run trains: a longer range is a typo, refused before it is listed.
MAX_SEEDS = 10_000


def parse_path(value: str | Path) -> Path:
    """A path option's value; an empty one is refused (``Path("")`` would silently mean ``.``)."""
    if isinstance(value, Path):
        return value
    if not value:
        raise typer.BadParameter("the path is empty; give one, e.g. . for the current directory")
    return Path(value)


#: What every path option passes to ``typer.Option``: the parser above, and the usual metavar.
PATH = {"parser": parse_path, "metavar": "<path>"}


def _check_device(value: str | None) -> str | None:
    if value is not None:
        from layer_sim._device import resolve_device  # imports torch: only when the option is given

        resolve_device("--device", value)
    return value


Device = Annotated[
    Optional[str],
    typer.Option("--device", help="torch device, e.g. cpu, cuda, mps (default cpu).", callback=_check_device),
]
DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="MNIST directory (default $LAYER_SIM_DATA, else ~/.cache/layer_sim/mnist).", **PATH),
]
CacheDir = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="Checkpoint cache (default $LAYER_SIM_CACHE, else ~/.cache/layer_sim/checkpoints).",
                 **PATH),
]
Seeds = Annotated[str, typer.Option("--seeds", help="Seeds: a range 0-4, a list 0,2,5, or both 0-2,7.")]


def output_option(help: str):
    """The ``--output/-o`` directory option with a command's own description of what goes there."""
    return typer.Option(..., "--output", "-o", help=help, **PATH)


def parse_seeds(spec: str | Sequence[int]) -> list[int]:
    """Seeds from ``"0-4"`` (inclusive range), ``"0,2,5"``, a mix ``"0-2,7"``, or a list of ints.

    Examples
    --------
    >>> parse_seeds("0-2,7")
    [0, 1, 2, 7]
    >>> parse_seeds("4-0")
    Traceback (most recent call last):
    layer_sim.errors.ConfigError: seeds: cannot parse '4-0' in '4-0'; use a range like 0-4 or a list like 0,2,5
    """
    if not isinstance(spec, str):
        seeds = [int(s) for s in spec]
    else:
        seeds = []
        for part in spec.replace(" ", "").split(","):
            try:
                if "-" in part[1:]:
                    lo, hi = part.split("-", 1) if not part.startswith("-") else (None, None)
                    lo, hi = int(lo), int(hi)
                    if hi < lo:
                        raise ValueError
                else:
                    lo = hi = int(part)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"seeds: cannot parse {part!r} in {spec!r}; use a range like 0-4 or a list like 0,2,5"
                ) from None
            if len(seeds) + hi - lo + 1 > MAX_SEEDS:
                raise ConfigError(f"seeds: {spec!r} names more than {MAX_SEEDS} seeds")
            seeds.extend(range(lo, hi + 1))
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: need distinct non-negative seeds, got {spec!r}")
    return seeds
