"""CLI commands of the service concern: `serve`, `demo`, `users add|list|revoke`."""

from __future__ import annotations

from pathlib import Path

import click

from joinedup.commands.common import home_option
from joinedup.commands.common import open_home as _home
from joinedup.users import ROLES, UserError, open_user_store


def register(cli: click.Group) -> None:
    """Add this concern's commands to the root group."""

    @cli.group("users")
    def users() -> None:
        """API users: tokens are shown once and stored only as a keyed hash."""

    @users.command("add")
    @home_option
    @click.option("--role", required=True, type=click.Choice(ROLES), help="The user's role.")
    @click.option("--org", "org", required=True, help="The user's organisation id.")
    @click.option("--name", default="", help="A display name (optional).")
    def users_add(home: Path | None, role: str, org: str, name: str) -> None:
        """Create an API user and print its token ONCE."""
        from joinedup.errors import Refused
        from joinedup.operations.users import OPERATOR, AddUser, add_user

        h = _home(home)
        try:
            user, token = add_user(h, OPERATOR, AddUser(role, org, name))
        except (UserError, Refused) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"user {user.id} ({user.role} @ {user.organisation})")
        click.echo(f"token (shown once, keep it secret): {token}")

    @users.command("list")
    @home_option
    def users_list(home: Path | None) -> None:
        """List users (never their tokens)."""
        from rich.console import Console
        from rich.table import Table

        try:
            rows = open_user_store(_home(home)).list()
        except UserError as exc:
            raise click.ClickException(str(exc)) from exc
        table = Table("id", "role", "organisation", "name", "created", "revoked")
        for u in rows:
            table.add_row(u.id, u.role, u.organisation, u.name, u.created_at, u.revoked_at or "")
        Console().print(table)

    @users.command("revoke")
    @home_option
    @click.argument("user_id")
    def users_revoke(home: Path | None, user_id: str) -> None:
        """Revoke a user's token (takes effect on the server's next request)."""
        from joinedup.errors import Refused
        from joinedup.operations.users import OPERATOR, revoke_user

        h = _home(home)
        try:
            user = revoke_user(h, OPERATOR, user_id)
        except (UserError, Refused) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"revoked {user.id} at {user.revoked_at}")

    @cli.command("serve")
    @home_option
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8000, show_default=True, type=int)
    @click.option("--access-log/--no-access-log", default=True, show_default=True)
    @click.option("--workers", default=None, type=click.IntRange(1, 64),
                  help="Worker processes (default: one per CPU core, at most 4).")
    def serve(home: Path | None, host: str, port: int, access_log: bool,
              workers: int | None) -> None:
        """Serve the HTTP API (OpenAPI docs at /docs).

        With --workers N, N processes share the port and the home: the store is opened per
        operation, in turn (see joinedup/service_context.py and joinedup/serving.py)."""
        from joinedup.serving import default_workers
        from joinedup.serving import serve as run_server

        the_home = _home(home)
        workers = workers or default_workers()
        click.echo(f"joinedup API on http://{host}:{port}/ (docs at /docs), "
                   f"{workers} worker process{'es' if workers > 1 else ''}")
        status = run_server(the_home.root, host, port, workers, access_log)
        if status:
            raise click.ClickException("the API workers could not start (see the log above)")

    @cli.command("demo")
    @click.option("--home", "home", type=click.Path(path_type=Path), default=None,
                  help="Where to build the demo deployment (default: ./joinedup-demo).")
    @click.option("--people", default=5000, show_default=True, type=click.IntRange(50, 1_000_000),
                  help="Size of the synthetic population.")
    @click.option("--seed", default=7, show_default=True, type=int)
    @click.option("--force", is_flag=True, help="Replace an existing demo home.")
    def demo(home: Path | None, people: int, seed: int, force: bool) -> None:
        """The whole job on synthetic data, no server: synthesise, extract, ingest, link,
        consent, summaries, a referral, area counts, verify the ledger, one HTML overview."""
        from joinedup.demo import DemoError, run_demo

        try:
            state = run_demo(home or Path("joinedup-demo"), people=people, seed=seed, force=force)
        except DemoError as exc:
            raise click.ClickException(str(exc)) from exc
        if not state.ok:
            failed = [s.name for s in state.steps if s.status != "done"]
            raise click.ClickException(f"{len(failed)} demo step(s) did not complete: "
                                       + "; ".join(failed))
