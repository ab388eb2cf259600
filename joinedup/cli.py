"""The `joinedup` command. Each user task is one command; each concern registers its own
commands from `joinedup/commands/<concern>.py` so this file stays a table of contents."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from joinedup import __version__
from joinedup.commands.common import home_option
from joinedup.home import ROLES, HomeError, default_home, init_home


@click.group()
@click.version_option(__version__, prog_name="joinedup")
def cli() -> None:
    """Privacy-preserving data sharing and record linkage for joined-up employment support."""




@cli.command("init")
@home_option
@click.option("--project-id", default=None, help="Linkage project id (default: random).")
@click.option("--force", is_flag=True, help="Re-create an existing home (new keys!).")
@click.option("--role", type=click.Choice(ROLES), default="all", show_default=True,
              help="Which party's home: all (demo), connector, linkage (no keys), service.")
@click.option("--keys-from", type=click.Path(path_type=Path), default=None,
              help="The key custodian's home (connector, service), or its keys.json (linkage).")
def init_command(home: Path | None, project_id: str | None, force: bool, role: str,
                 keys_from: Path | None) -> None:
    """Create a deployment home holding only its role's row of the key table (docs/KEYS.md)."""
    from connectors.keys import SecretError

    root = home or default_home()
    try:
        h = init_home(root, project_id=project_id, force=force, role=role, keys_from=keys_from)
    except (HomeError, SecretError) as exc:
        raise click.ClickException(str(exc)) from exc
    held = {"all": "master secret", "connector": "master secret", "service": "service keys only",
            "linkage": "no keys, public key ids only"}[role]
    click.echo(f"initialised {h.root} as a {role} home (project {h.project_id}; {held}); "
               f"secrets in {h.secrets_dir} (0700)")


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
    from connectors.files import StoreBusy

    try:
        sys.exit(cli.main(standalone_mode=True))
    except StoreBusy as exc:  # another process holds the store: say so, no traceback
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
