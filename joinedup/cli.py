"""The `joinedup` command. Each user task is one command; each concern registers its own
commands from `joinedup/commands/<concern>.py` so this file stays a table of contents."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from joinedup import __version__
from joinedup.commands.common import home_option
from joinedup.home import HomeError, default_home, init_home


@click.group()
@click.version_option(__version__, prog_name="joinedup")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Privacy-preserving data sharing and record linkage for joined-up employment support."""
    from audit import ledgers_opened

    ctx.call_on_close(functools.partial(_checkpoint_ledgers, ledgers_opened()))


def _checkpoint_ledgers(opened_after: int) -> None:
    """End of every command, whatever its outcome: sign a checkpoint of each audit ledger
    the command left open with uncovered entries (and copy it to the witness), so a cut of
    any length is caught by `audit verify`. A ledger closed earlier did this itself."""
    from audit import LedgerError, checkpoint_open_ledgers

    try:
        checkpoint_open_ledgers(opened_after)
    except LedgerError as exc:
        raise click.ClickException(f"audit checkpoint failed: {exc}") from exc



@cli.command("init")
@home_option
@click.option("--project-id", default=None, help="Linkage project id (default: random).")
@click.option("--force", is_flag=True, help="Re-create an existing home (new keys!).")
@click.option("--witness", type=click.Path(path_type=Path), default=None,
              help="The governance board's directory that receives a copy of every audit "
                   "checkpoint ([audit] witness).")
def init_command(home: Path | None, project_id: str | None, force: bool, witness: Path | None) -> None:
    """Create a deployment home: configuration, master secret, derived key ids, store."""
    root = home or default_home()
    try:
        h = init_home(root, project_id=project_id, force=force,
                      witness=witness.absolute() if witness else None)
    except HomeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"initialised {h.root} (project {h.project_id}); secrets in {h.secrets_dir} (0600)")


def _register_commands() -> None:
    from joinedup.commands import (
        audit_commands,
        collation_commands,
        connector_commands,
        consent_commands,
        linkage_commands,
        policy_commands,
        service_commands,
        synth_commands,
    )

    for module in (
        synth_commands,
        connector_commands,
        linkage_commands,
        consent_commands,
        policy_commands,
        audit_commands,
        collation_commands,
        service_commands,
    ):
        module.register(cli)


_register_commands()


def main() -> None:
    from audit import LedgerError
    from connectors.files import StoreBusy

    try:
        sys.exit(cli.main(standalone_mode=True))
    except (StoreBusy, LedgerError) as exc:  # say so, no traceback
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
