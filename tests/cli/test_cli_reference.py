"""The README's CLI reference is exactly the real --help of every command, and every help ends with an example."""

import os
import subprocess
from pathlib import Path

import pytest
import typer

from layer_sim.cli import app
from layer_sim.cli._reference import END, START, WIDTH, command_paths, readme_block, render, replace_block

from _script import console_script

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_block_equals_the_generated_reference():
    block = readme_block(README.read_text(encoding="utf-8"))
    assert block is not None, f"README.md has no block between {START!r} and {END!r}"
    assert block == render(), "README CLI reference is stale: run python -m layer_sim.cli._reference --write README.md"


def test_every_command_is_in_the_reference_and_every_help_ends_with_an_example():
    text = render()
    commands = typer.main.get_command(app).commands
    assert {"train", "sanity-check", "runs", "pruning-study"} <= set(commands)
    helps = text.split("$ layer-sim")[1:]
    assert [h.split("--help", 1)[0].split() for h in helps] == command_paths()
    for h in helps:
        assert h.rstrip().splitlines()[-1].strip().startswith("Example: layer-sim "), h


@pytest.mark.parametrize("command", command_paths(), ids=lambda c: " ".join(c) or "root")
def test_rendered_help_is_what_the_installed_script_prints_at_that_width(command):
    # The reference is rendered in-process; the user sees the console script's output.
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    out = subprocess.run([console_script(), *command, "--help"], capture_output=True, text=True, env=env, check=True)
    name = " ".join(["layer-sim", *command])
    section = render().split(f"$ {name} --help\n", 1)[1].split("\n\n$ layer-sim ", 1)[0]
    assert out.stdout.rstrip("\n") == section.rstrip("\n")


def test_replace_block_round_trip():
    text = f"intro\n{START}\n```text\nold\n```\n{END}\nrest\n"
    new = replace_block(text, "new text\n")
    assert readme_block(new) == "new text\n" and new.startswith("intro\n") and new.endswith(f"{END}\nrest\n")
