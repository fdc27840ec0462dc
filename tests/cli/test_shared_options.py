"""The shared option bundles: the sweep options parse and check like make_executor; the recorded command line."""

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from layer_sim.cli._shared import (DEFAULT_BACKEND, DEFAULT_WORKERS, BackendOption, RayAddressOption, StoreOption,
                                   WorkersOption, command_line, store_path)
from layer_sim.errors import ConfigError
from layer_sim.runs import LocalPoolExecutor, SerialExecutor, make_executor

runner = CliRunner()


def test_the_sweep_option_bundle_parses_and_checks_like_make_executor(tmp_path):
    seen = {}
    demo = typer.Typer()

    @demo.command()
    def sweep_cmd(output: Path = typer.Option(..., "--output"), store: StoreOption = None,
                  workers: WorkersOption = DEFAULT_WORKERS, backend: BackendOption = DEFAULT_BACKEND,
                  ray_address: RayAddressOption = None):
        seen["store"] = store_path(store, output)
        seen["executor"] = make_executor(workers=workers, backend=backend, ray_address=ray_address)

    assert runner.invoke(demo, ["--output", str(tmp_path)]).exit_code == 0
    assert seen["store"] == tmp_path / "results.sqlite" and isinstance(seen["executor"], SerialExecutor)
    assert runner.invoke(demo, ["--output", "o", "--store", str(tmp_path / "s.sqlite"), "--workers", "2"]).exit_code == 0
    assert seen["store"] == tmp_path / "s.sqlite" and isinstance(seen["executor"], LocalPoolExecutor)
    assert seen["executor"].capacity == 2
    for bad in (["--workers", "0"], ["--backend", "slurm"]):
        result = runner.invoke(demo, ["--output", "o", *bad])
        assert result.exit_code == 2 and bad[0] in result.output
    with pytest.raises(ConfigError, match="needs backend='ray'"):
        runner.invoke(demo, ["--output", "o", "--ray-address", "auto"], catch_exceptions=False)


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
