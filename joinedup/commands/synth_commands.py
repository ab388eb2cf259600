"""CLI commands of the synthetic sources (registered by joinedup.cli)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("synth")
@click.option("--people", type=click.IntRange(min=1), required=True, help="Size of the synthetic population.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (same seed, same files).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Output directory.")
@click.option(
    "--council-db",
    default="sqlite",
    show_default=True,
    help="Where the council database goes: 'sqlite' (OUT/council.sqlite) or a SQLAlchemy DSN, "
    "e.g. postgresql+psycopg://user@127.0.0.1:55432/db (its council tables are replaced).",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Generator processes (default: one per core).")
def synth_command(people: int, seed: int, out: Path, council_db: str, workers: int | None) -> None:
    """Write a synthetic population and the DWP, council, NHS and housing sources."""
    from sqlalchemy.exc import SQLAlchemyError

    from connectors.synth import write_synthetic_sources

    dsn = None if council_db == "sqlite" else council_db
    if dsn is not None and "://" not in dsn:
        raise click.BadParameter("expected 'sqlite' or a DSN such as postgresql+psycopg://...", param_hint="--council-db")
    try:
        summary = write_synthetic_sources(out, people, seed, council_dsn=dsn, workers=workers)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"council database: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
    except OSError as exc:
        raise click.ClickException(f"{out}: {exc}") from exc
    records = ", ".join(f"{k} {v}" for k, v in summary["records"].items())
    click.echo(f"synthesised {people} people (seed {seed}) into {out}: {records}; council in {summary['council']}")
    click.echo(json.dumps(summary["errors_planted"]), err=True)


def register(cli: click.Group) -> None:
    """Add this concern's commands to the root group."""
    cli.add_command(synth_command)
