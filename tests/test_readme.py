"""The README's command examples name commands and options that exist, with values of the right
type (parsed as the CLI would, without running the work); the cheap listing commands also run."""

import shlex
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from goldenlayers.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[list[str]]:
    """Each indented `goldenlayers ...` command of the README (continuations joined, and the one
    after `setup.sh &&`), as arguments."""
    commands, pending = [], ""
    for line in README.read_text(encoding="utf-8").splitlines():
        text = line.strip().rpartition("&& ")[2]
        if pending or (line.startswith("    ") and text.startswith("goldenlayers ")):
            pending += " " + text.rstrip("\\")
            if not text.endswith("\\"):
                commands.append(shlex.split(pending, comments=True)[1:])
                pending = ""
    return commands


def test_the_readme_has_its_examples():
    commands = readme_commands()
    assert len(commands) >= 12
    assert ["locate"] in commands  # the main job
    assert any(c[:1] == ["edit"] and "--layer" in c and "auto" in c for c in commands)


@pytest.mark.parametrize("args", readme_commands(), ids=lambda args: " ".join(args)[:60])
def test_each_readme_example_parses_as_written(args):
    group = typer.main.get_command(app)
    name, *rest = args
    command = group.get_command(click.Context(group), name)
    assert command is not None, f"no command {name!r}"
    while isinstance(command, click.Group) and rest:  # e.g. `patch apply`
        name, *rest = rest
        command = command.get_command(click.Context(command), name)
        assert command is not None, f"no command {name!r}"
    command.make_context(name, list(rest))  # raises on an unknown option or a badly typed value


@pytest.mark.parametrize("name", ["models", "datasets", "locators"])
def test_the_readme_listing_commands_run(name):
    result = CliRunner().invoke(app, [name])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) > 3
