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


def resolve_caller(home: Home, as_user: str, role: str | None = None,
                   organisation: str | None = None):
    """Who runs the command: a user of the home's users store (by id; a revoked one is
    refused), else `role:organisation:id`, else the id with --role/--org (testing a fresh
    home). The policy then decides what this caller may do, as for the API."""
    from joinedup.users import User, UserError, open_user_store

    try:
        users = open_user_store(home).list()
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    for user in users:
        if user.id == as_user:
            if user.revoked_at:
                raise click.ClickException(f"user {as_user} was revoked at {user.revoked_at}")
            return user
    parts = as_user.split(":")
    if len(parts) == 3 and all(parts):
        role_, organisation_, user_id = parts
        return User(id=user_id, role=role_, organisation=organisation_)
    if role and organisation and as_user:
        return User(id=as_user, role=role, organisation=organisation)
    raise click.ClickException(f"--as {as_user!r}: no such user (give a user id, or "
                               "role:organisation:id)")


class service:
    """The home's service context for one command (`with service(home) as ctx:`), opened
    through joinedup.operations (so an interrupted action is finished first) and closed
    afterwards."""

    def __init__(self, home: Path | None) -> None:
        self.home = home

    def __enter__(self):
        from joinedup.operations import open_service

        self.ctx = open_service(open_home(self.home))
        return self.ctx

    def __exit__(self, *exc) -> None:
        self.ctx.close()


def fail_with(exc: Exception) -> None:
    """An operation's refusal or error as a ClickException (exit 1) with what the caller may
    be told."""
    from joinedup.errors import InvalidInput, Refused, Withheld

    if isinstance(exc, Refused):
        raise click.ClickException("refused: " + " ".join(exc.reasons)) from exc
    if isinstance(exc, Withheld):
        raise click.ClickException(f"refused: {exc}") from exc
    if isinstance(exc, InvalidInput) and exc.problems:
        raise click.ClickException("invalid: " + "; ".join(f"{f}: {r}" for f, r in exc.problems)) from exc
    raise click.ClickException(str(exc)) from exc
