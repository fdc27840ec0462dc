"""Command-line interface: a thin typer layer over the library; no computation lives here.

One module per command (:mod:`~layer_sim.cli.train`, :mod:`~layer_sim.cli.sanity_check`,
:mod:`~layer_sim.cli.gradient_study`, :mod:`~layer_sim.cli.pruning_study`, :mod:`~layer_sim.cli.table2_study`,
:mod:`~layer_sim.cli.report`, :mod:`~layer_sim.cli.runs`, :mod:`~layer_sim.cli.dynamics`),
shared options in :mod:`~layer_sim.cli._shared`. :func:`main` is the console script: every
library error (``LayerSimError``), OS error and device error is one line ``error: ...`` on
stderr with exit status 2.
"""

from __future__ import annotations

import sys

import typer

from layer_sim.cli import dynamics, gradient_study, pruning_study, report, sanity_check, table2_study, train
from layer_sim.cli.runs import runs_app
from layer_sim.errors import LayerSimError

__all__ = ["app", "main"]

app = typer.Typer(
    name="layer-sim",
    help="Layer-by-layer similarity of neural network representations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help (no rich boxes or colour): at a given width the same text everywhere, so
    # the README's CLI reference is the real --help (cli/_reference.py renders it at 100 columns).
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
    epilog=sanity_check.EXAMPLE,
)
# The example is the epilog, so that every command's --help ends with it.
app.command("train", epilog=train.EXAMPLE, short_help=train.SUMMARY)(train.train_command)
app.command("sanity-check", epilog=sanity_check.EXAMPLE, short_help=sanity_check.SUMMARY)(
    sanity_check.sanity_check_command
)
app.command("gradient-study", epilog=gradient_study.EXAMPLE, short_help=gradient_study.SUMMARY)(
    gradient_study.gradient_study_command
)
app.command("pruning-study", epilog=pruning_study.EXAMPLE, short_help=pruning_study.SUMMARY)(
    pruning_study.pruning_study_command
)
app.command("table2-study", epilog=table2_study.EXAMPLE, short_help=table2_study.SUMMARY)(
    table2_study.table2_study_command
)
app.command("report", epilog=report.EXAMPLE, short_help=report.SUMMARY)(report.report_command)
app.add_typer(runs_app, name="runs")
app.add_typer(dynamics.app, name="dynamics", short_help=dynamics.SUMMARY)


@app.callback()
def _root() -> None:
    """Layer-by-layer similarity of neural network representations."""


#: Exit status of a refused input or a failed environment (click uses 2 for usage errors too).
EXIT_ERROR = 2


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: expected failures become one line ``error: ...``, exit status 2.

    Expected failures are the library's own errors, OS errors (permission, read-only or full
    disk, a file where a directory is expected) and device errors (out of memory, a failing
    accelerator). Anything else is a bug in layer_sim and keeps its traceback.
    """
    try:
        app(args=argv, prog_name="layer-sim")
    except Exception as exc:  # noqa: BLE001 - classified below; the rest is re-raised
        message = _one_line(exc)
        if message is None:
            raise
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        sys.exit(EXIT_ERROR)


def _one_line(exc: BaseException) -> str | None:
    """The one-line message of an expected failure; None for anything else."""
    if isinstance(exc, LayerSimError):
        return str(exc)
    if isinstance(exc, OSError):
        where = " -> ".join(repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None)
        text = exc.strerror or str(exc) or type(exc).__name__
        return f"{text}: {where}" if where else text
    if isinstance(exc, MemoryError):
        return "out of memory; try a smaller run (fewer seeds, networks or examples)"
    torch = sys.modules.get("torch")  # a device error can only come from torch once it is loaded
    if torch is not None and isinstance(exc, (torch.OutOfMemoryError, torch.AcceleratorError)):
        return f"device error ({type(exc).__name__}): {str(exc).splitlines()[0] if str(exc) else ''}"
    return None
