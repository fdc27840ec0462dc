"""Options shared by every command (one meaning per flag everywhere) and the checks they need.

Each bundle is an ``Annotated`` type a command uses as a parameter annotation, so ``--device``,
``--data-dir``, ``--cache-dir``, ``--seeds``, ``--output`` and the sweep options ``--store``,
``--workers``, ``--backend``, ``--ray-address`` are spelt, documented and checked the same way in
every command. An experiment command takes the four sweep options as one parameter, which
:func:`sweep_options` turns into the four options (in its place) and back into one
:class:`SweepOptions`::

    @sweep_options
    def my_experiment_command(ctx: typer.Context, output: ..., sweep: SweepOptions = SWEEP_DEFAULTS):
        writable_dir(output)
        run_experiment(MY_EXPERIMENT, spec, sweep.store_for(output), sweep.executor(), command=command_line(ctx))
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from layer_sim._io import writable_dir as _writable_dir
from layer_sim.errors import ConfigError
from layer_sim.runs.executors import BACKENDS, DEFAULT_BACKEND, DEFAULT_WORKERS
from layer_sim.store import default_store_path

__all__ = ["Device", "DataDir", "CacheDir", "Seeds", "StoreOption", "WorkersOption", "BackendOption",
           "RayAddressOption", "DEFAULT_WORKERS", "DEFAULT_BACKEND", "SweepOptions", "SWEEP_DEFAULTS", "sweep_options",
           "PATH", "MAX_SEEDS", "output_option", "parse_seeds", "parse_path", "writable_dir", "store_path",
           "command_line"]

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

# ---------------------------------------------------------------------------- the sweep bundle

#: ``--store PATH`` for experiment commands: default ``OUTPUT/results.sqlite`` (see :func:`store_path`).
StoreOption = Annotated[Optional[Path], typer.Option(
    "--store", help="Results store (SQLite) holding every finished unit; a rerun skips them (default OUTPUT/results.sqlite).",
    **PATH)]
#: ``--workers N``.
WorkersOption = Annotated[int, typer.Option(
    "--workers", min=1, help="Units run at once: 1 in this process, N > 1 a pool of N processes (with --backend ray: tasks in flight).")]
#: ``--backend local|ray``.
BackendOption = Annotated[Literal[BACKENDS], typer.Option(
    "--backend", help="Where units run: local processes, or Ray (pip install 'layer-sim[ray]').")]
#: ``--ray-address``.
RayAddressOption = Annotated[Optional[str], typer.Option(
    "--ray-address", help="Ray cluster to join with --backend ray, e.g. auto or ray://head:10001 (default: start a local Ray).")]


def store_path(store: Path | None, output: Path) -> Path:
    """``--store`` if given, else the default store of the output directory."""
    return store if store is not None else default_store_path(output)


@dataclass(frozen=True)
class SweepOptions:
    """``--store``, ``--workers``, ``--backend`` and ``--ray-address`` as one value (see :func:`sweep_options`)."""

    store: Path | None = None
    workers: int = DEFAULT_WORKERS
    backend: str = DEFAULT_BACKEND
    ray_address: str | None = None

    def store_for(self, output: Path) -> Path:
        """The results store: ``--store``, else ``output``'s default (:func:`store_path`)."""
        return store_path(self.store, output)

    def executor(self):
        """Where the units run (:func:`layer_sim.runs.make_executor`; checks the combination, e.g. --ray-address without ray)."""
        from layer_sim.runs import make_executor  # imports the runs package: only when a command runs

        return make_executor(workers=self.workers, backend=self.backend, ray_address=self.ray_address)


#: The options' defaults: a command's default for its ``sweep`` parameter, so that calling it directly also works.
SWEEP_DEFAULTS = SweepOptions()
#: (parameter, annotation, default) of each option, in the order the options appear in ``--help``.
_SWEEP_PARAMETERS = (("store", StoreOption, SWEEP_DEFAULTS.store), ("workers", WorkersOption, SWEEP_DEFAULTS.workers),
                     ("backend", BackendOption, SWEEP_DEFAULTS.backend),
                     ("ray_address", RayAddressOption, SWEEP_DEFAULTS.ray_address))


def sweep_options(command: Callable) -> Callable:
    """Give a typer command the four sweep options where its parameter ``sweep`` stands; it receives them as one :class:`SweepOptions`.

    typer builds a command's options from its signature, and has no option bundles: the wrapper's
    ``__signature__`` replaces ``sweep`` by the four parameters (annotations evaluated, as typer
    would), and the wrapper folds them back into ``sweep=SweepOptions(...)``.
    """
    signature = inspect.signature(command, eval_str=True)
    if "sweep" not in signature.parameters:
        raise TypeError(f"sweep_options: {command.__name__} has no parameter 'sweep'")
    parameters = []
    for param in signature.parameters.values():
        if param.name != "sweep":
            parameters.append(param)
            continue
        parameters += [inspect.Parameter(name, param.kind, default=default, annotation=annotation)
                       for name, annotation, default in _SWEEP_PARAMETERS]

    @functools.wraps(command)
    def with_sweep_options(*args, **kwargs):
        sweep = SweepOptions(*(kwargs.pop(name) for name, _, _ in _SWEEP_PARAMETERS))
        return command(*args, **kwargs, sweep=sweep)

    with_sweep_options.__signature__ = signature.replace(parameters=parameters)
    return with_sweep_options


def command_line(ctx: typer.Context) -> list[str]:
    """The running command as a command line: ``layer-sim <command>`` and every option given explicitly.

    Rebuilt from the parsed parameters of ``ctx`` (a command takes ``ctx: typer.Context``), in
    the command's order, long option names, options left at their defaults not repeated; so it
    is the same from a shell and from a test's ``CliRunner``. Experiments record it in the store
    with each sweep.
    """
    words = ["layer-sim", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if param.param_type_name != "option" or getattr(source, "name", None) not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        value, flag = ctx.params[param.name], max(param.opts, key=len)
        if param.is_flag:
            words.append(flag if value else max(param.secondary_opts or [flag], key=len))
        elif value is not None:
            words += [flag, str(value)]
    return words


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


def writable_dir(path: Path, *, option: str = "--output") -> Path:
    """:func:`layer_sim._io.writable_dir` for a command's option: refuse an unwritable ``path`` before any work.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     writable_dir(Path(f.name) / "out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    layer_sim.errors.ConfigError: --output /tmp/.../out: exists and is not a directory (or a parent of it is a file)
    """
    return _writable_dir(path, what=option)
