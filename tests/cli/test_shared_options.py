"""The shared option bundles: the sweep options parse and check like make_executor; the recorded command line."""

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from layer_sim.cli._shared import (DEFAULT_WORKERS, SWEEP_DEFAULTS, SweepOptions, WorkersOption, command_line,
                                   sweep_options)
from layer_sim.errors import ConfigError
from layer_sim.runs import LocalPoolExecutor, SerialExecutor

runner = CliRunner()


def test_the_sweep_option_bundle_parses_and_checks_like_make_executor(tmp_path):
    seen = {}
    demo = typer.Typer()

    @demo.command()
    @sweep_options
    def sweep_cmd(output: Path = typer.Option(..., "--output"), sweep: SweepOptions = SWEEP_DEFAULTS,
                  last: int = typer.Option(0, "--last")):
        seen["sweep"], seen["last"] = sweep, last
        seen["store"] = sweep.store_for(output)
        seen["executor"] = sweep.executor()

    assert runner.invoke(demo, ["--output", str(tmp_path)]).exit_code == 0
    assert seen["sweep"] == SWEEP_DEFAULTS == SweepOptions(None, DEFAULT_WORKERS, "local", None)
    assert seen["store"] == tmp_path / "results.sqlite" and isinstance(seen["executor"], SerialExecutor)
    args = ["--output", "o", "--store", str(tmp_path / "s.sqlite"), "--workers", "2", "--last", "3"]
    assert runner.invoke(demo, args).exit_code == 0
    assert seen["store"] == tmp_path / "s.sqlite" and isinstance(seen["executor"], LocalPoolExecutor)
    assert seen["executor"].capacity == 2 and seen["last"] == 3
    for bad in (["--workers", "0"], ["--backend", "slurm"]):
        result = runner.invoke(demo, ["--output", "o", *bad])
        assert result.exit_code == 2 and bad[0] in result.output
    with pytest.raises(ConfigError, match="needs backend='ray'"):
        runner.invoke(demo, ["--output", "o", "--ray-address", "auto"], catch_exceptions=False)
    # the four options stand where `sweep` stood, in this order, before --last
    help_text = runner.invoke(demo, ["--help"], terminal_width=200).output
    positions = [help_text.index(o) for o in ("--output", "--store", "--workers", "--backend", "--ray-address", "--last")]
    assert positions == sorted(positions)


def test_sweep_options_needs_a_sweep_parameter():
    def no_sweep(output: Path):
        pass

    with pytest.raises(TypeError, match="no_sweep has no parameter 'sweep'"):
        sweep_options(no_sweep)


def test_command_line_repeats_exactly_the_options_given():
    seen = {}
    demo = typer.Typer(name="layer-sim")

    @demo.callback()
    def root():
        pass

    @demo.command("exp")
    def exp(ctx: typer.Context, output: Path = typer.Option(..., "--output", "-o"), nets: int = typer.Option(5, "--nets"),
            full: bool = typer.Option(False, "--full"), workers: WorkersOption = DEFAULT_WORKERS):
        seen["argv"] = command_line(ctx)

    assert runner.invoke(demo, ["exp", "-o", "out dir", "--full", "--workers", "2"]).exit_code == 0
    # The short -o comes back long, --nets (left at its default) is not repeated, order is the command's.
    assert seen["argv"] == ["layer-sim", "exp", "--output", "out dir", "--full", "--workers", "2"]
    assert runner.invoke(demo, ["exp", "--nets", "3", "--output", "o"]).exit_code == 0
    assert seen["argv"] == ["layer-sim", "exp", "--output", "o", "--nets", "3"]
