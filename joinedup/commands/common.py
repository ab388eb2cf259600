"""What every command shares: the `--home` option and loading the home with a clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from joinedup.home import Home, HomeError, load_home

home_option = click.option(
    "--home",
    "home",
    type=click.Path(path_type=Path),
    default=None,
    help="Deployment home (default: $JOINEDUP_HOME, else ./joinedup-home).",
)


def open_home(path: Path | None) -> Home:
    """The deployment home, or a ClickException that says what is wrong with it."""
    try:
        return load_home(path)
    except HomeError as exc:
        raise click.ClickException(str(exc)) from exc


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a file, or a ClickException naming the file and the problem."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot read {what}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{path}: not JSON: line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise click.ClickException(f"{path}: {what} must be a JSON object")
    return value
