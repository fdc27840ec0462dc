"""The README's CLI reference must list exactly the options each command has (no drift)."""

import re
from pathlib import Path

import pytest
import typer

from layer_sim.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_blocks() -> dict[str, set[str]]:
    text = README.read_text(encoding="utf-8")
    ref = text.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    blocks = re.split(r"^layer-sim (\S+) \[OPTIONS\]$", ref, flags=re.M)
    return {name: set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", body, flags=re.M))
            for name, body in zip(blocks[1::2], blocks[2::2])}  # fmt: skip


def _visible_options(command: str) -> set[str]:
    group = typer.main.get_command(app)
    cmd = group.commands[command]
    return {opt for p in cmd.params if not getattr(p, "hidden", False) for opt in p.opts if opt.startswith("--")} - {"--help"}


@pytest.mark.parametrize("command", ["train", "sanity-check"])
def test_readme_lists_every_visible_option_and_no_other(command):
    documented = _readme_blocks()
    assert command in documented, f"README CLI reference has no block for {command}"
    assert documented[command] == _visible_options(command)


def test_every_command_is_documented():
    assert set(_readme_blocks()) == set(typer.main.get_command(app).commands)
