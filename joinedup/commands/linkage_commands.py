"""CLI commands of the linkage concern (registered by joinedup.cli):

    joinedup ingest --home H DIR...
    joinedup link --home H [--extracts DIR...] [--settings FILE.json] --out RUN_DIR
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

HOME_HELP = "Deployment home (default: $JOINEDUP_HOME, else ./joinedup-home)."
DATA_OFFICER = {"id": "cli", "role": "data_officer", "organisation": "linkage-unit"}


def _load_home(home: Path | None):
    from connectors.keys import SecretError
    from joinedup.home import HomeError, load_home

    try:
        return load_home(home)
    except (HomeError, SecretError) as exc:
        raise click.ClickException(str(exc)) from exc


def _audit(h, event: dict[str, Any]) -> None:
    """Append an audit event (home settings: checkpoints, witness)."""
    event = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "actor": DATA_OFFICER, **event}
    with h.open_ledger() as ledger:
        ledger.append(event)


@click.command("ingest")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
@click.argument("extract_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
def ingest_command(home: Path | None, extract_dirs: tuple[Path, ...]) -> None:
    """Verify split extracts (hashes, project and key ids) and register them for linkage."""
    from connectors.keys import SecretError
    from linkage.ingest import IngestError, ingest_extracts

    h = _load_home(home)
    try:
        done = ingest_extracts(
            list(extract_dirs), h.extracts_dir, h.store_path, h.project_id, h.keyring().key_ids()
        )
    except (IngestError, SecretError) as exc:
        raise click.ClickException(f"nothing ingested: {exc}") from exc
    for e in done:
        _audit(h, {"type": "extract.ingested", "extract_id": e.extract_id, "source": e.source,
                   "kind": e.kind})
        click.echo(f"ingested {e.source} extract {e.extract_id} (now active for {e.source})")


@click.command("link")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
@click.option("--extracts", "extract_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Extract directories to link (default: every source's active ingested extract).")
@click.option("--settings", "settings_file", type=click.Path(path_type=Path), default=None,
              help="Linkage settings JSON (default: the built-in settings).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Run directory to write (under HOME/runs/ when a bare name).")
def link_command(
    home: Path | None, extract_dirs: tuple[Path, ...], settings_file: Path | None, out_dir: Path
) -> None:
    """Link the extracts into entities; writes links, entities, model, summary and report."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from linkage.ingest import IngestError, active_extracts, extract_from_dir
    from linkage.run import LinkError, link_extracts
    from linkage.settings import SettingsError, load_settings

    h = _load_home(home)
    if not out_dir.is_absolute() and out_dir.parent == Path("."):
        out_dir = h.runs_dir / out_dir
    try:
        settings = load_settings(settings_file)
        if extract_dirs:
            extracts = [extract_from_dir(d) for d in extract_dirs]
        else:
            extracts = active_extracts(h.store_path, h.extracts_dir)
    except (SettingsError, IngestError) as exc:
        raise click.ClickException(str(exc)) from exc
    previous = _current_run(h)
    started = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task("linking", total=None)
        try:
            summary = link_extracts(
                extracts, out_dir, settings, previous_run=previous,
                progress=lambda stage: bar.update(task, description=stage),
            )
        except (LinkError, SettingsError) as exc:
            raise click.ClickException(f"link failed (previous run untouched): {exc}") from exc
    _commit_run(h, out_dir, summary)
    changes = summary["entity_changes"]
    click.echo(
        f"linked {summary['records']} records into {summary['entities']} entities "
        f"({changes['new']} new, {changes['merged']} merged, {changes['split']} split, "
        f"{changes['kept']} kept) in {time.perf_counter() - started:.1f}s -> {out_dir}"
    )
    refused = summary.get("merges_refused_conflicting_identifiers", 0)
    if refused:
        click.echo(f"{refused} merge(s) refused: they would have joined records of one source "
                   "with different NHS numbers or NINOs (see report.html)")


def _current_run(h) -> Path | None:
    marker = h.runs_dir / "CURRENT"
    if not marker.exists():
        return None
    run = h.runs_dir / marker.read_text().strip()
    return run if (run / "records.parquet").exists() else None


def _commit_run(h, out_dir: Path, summary: dict) -> None:
    """Make the run current through joinedup.operations: decided, `linkage.run` recorded,
    then runs/CURRENT switched (a crash in between is finished when the service opens)."""
    from joinedup.errors import OperationError
    from joinedup.operations import linkage as linkage_ops
    from joinedup.service_context import HomeContext
    from joinedup.users import User

    ctx = HomeContext(h)
    try:
        linkage_ops.commit_run(ctx, User(**DATA_OFFICER),
                               linkage_ops.CommitRun(out_dir, summary))
    except OperationError as exc:
        raise click.ClickException(f"the run was not made current: {exc}") from exc
    finally:
        ctx.close()


def register(cli: click.Group) -> None:
    """Add this concern's commands to the root group."""
    cli.add_command(ingest_command)
    cli.add_command(link_command)
