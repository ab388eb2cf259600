"""What every command shares: the `--home` option and loading the home with a clear error."""

from __future__ import annotations

from pathlib import Path

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
