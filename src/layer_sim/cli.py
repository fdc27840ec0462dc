"""Command-line interface: a thin typer layer over the library; no computation lives here."""

from __future__ import annotations

import sys

import typer

from layer_sim.errors import LayerSimError

app = typer.Typer(
    name="layer-sim",
    help="Layer-by-layer similarity of neural network representations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Layer-by-layer similarity of neural network representations."""


def main() -> None:
    """Console-script entry point: library errors become one-line messages, exit code 2."""
    try:
        app()
    except LayerSimError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
