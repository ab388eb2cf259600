"""CLI commands of the linkage concern (registered by joinedup.cli):

    joinedup ingest --home H DIR...
    joinedup link --home H [--extracts DIR...] [--settings FILE.json] --out RUN_DIR [--replace]
                  [--engine duckdb|spark [--spark-master local[2]]]
    joinedup runs list | show [RUN] | rollback [--to RUN]
    joinedup review next [--sample links|band] | label PAIR|REC REC --as LABEL | explain PAIR|REC [REC] | stats
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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


@click.command("ingest")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
@click.argument("extract_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
def ingest_command(home: Path | None, extract_dirs: tuple[Path, ...]) -> None:
    """Verify split extracts (hashes, project and key ids) and register them for linkage.

    Each extract is one action of joinedup.operations: decided, `extract.ingested` recorded,
    then registered (a linkage-unit home needs only the public key ids; docs/KEYS.md)."""
    from connectors.keys import SecretError
    from joinedup.errors import OperationError
    from joinedup.home import HomeError
    from joinedup.operations import linkage as linkage_ops
    from joinedup.service_context import HomeContext
    from joinedup.users import User

    h = _load_home(home)
    try:
        with HomeContext(h) as ctx:
            for extract_dir in extract_dirs:
                e = linkage_ops.ingest(ctx, User(**DATA_OFFICER),
                                       linkage_ops.IngestRequest(extract_dir))
                click.echo(f"ingested {e.source} extract {e.extract_id} (now active for {e.source})")
    except (OperationError, SecretError, HomeError) as exc:
        raise click.ClickException(f"not ingested: {exc}") from exc


@click.command("link")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
@click.option("--extracts", "extract_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Extract directories to link (default: every source's active ingested extract).")
@click.option("--settings", "settings_file", type=click.Path(path_type=Path), default=None,
              help="Linkage settings JSON (default: the built-in settings).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Run directory to write (under HOME/runs/ when a bare name).")
@click.option("--replace", is_flag=True, default=False,
              help="Replace an existing run of that name (refused without it).")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="Where pairs are scored and clustered: DuckDB on this machine, or Spark "
                   "(needs pyspark and Java 17+; same model and outputs).")
@click.option("--spark-master", default=None,
              help="Spark master URL with --engine spark (default: local[2], this machine).")
def link_command(
    home: Path | None, extract_dirs: tuple[Path, ...], settings_file: Path | None, out_dir: Path,
    replace: bool, engine: str, spark_master: str | None,
) -> None:
    """Link the extracts into entities; writes links, entities, model, summary and report."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from linkage.ingest import IngestError, active_extracts, extract_from_dir
    from linkage.run import LinkError, link_extracts
    from linkage.settings import SettingsError, load_settings

    h = _load_home(home)
    if not out_dir.is_absolute() and out_dir.parent == Path("."):
        out_dir = h.runs_dir / out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not replace:
        raise click.ClickException(
            f"{out_dir} already exists: choose another --out, or pass --replace to replace it "
            "(`joinedup runs list` shows the runs)")
    if spark_master and engine != "spark":
        raise click.ClickException("--spark-master is for --engine spark")
    try:
        # no file: link_extracts takes the defaults for the extracts' encoding
        settings = load_settings(settings_file) if settings_file else None
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
                extracts, out_dir, settings, previous_run=previous, review_dir=h.root / "review",
                progress=lambda stage: bar.update(task, description=stage),
                engine=engine, spark_master=spark_master,
            )
        except (LinkError, SettingsError, IngestError) as exc:
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


@click.group("runs")
def runs_group() -> None:
    """Link runs: list them, show one (with its entity changes), roll back to an earlier one."""


@runs_group.command("list")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_list(home: Path | None, as_json: bool) -> None:
    """Every finished run, oldest first; * marks the current one."""
    import json as _json

    from joinedup.operations import linkage as linkage_ops

    with _Officer(home) as officer:
        runs = linkage_ops.list_runs(officer.ctx, officer.caller)["runs"]
    if as_json:
        click.echo(_json.dumps(runs, indent=2))
        return
    if not runs:
        click.echo("no runs yet (joinedup link --out NAME)")
    for r in runs:
        c = r["changes"]
        click.echo(f"{'*' if r['current'] else ' '} {r['run']:<20} {r['created_at']}  "
                   f"{r['records']} records, {r['entities']} entities  (new {c['new']}, merged "
                   f"{c['merged']}, split {c['split']}, retired {c['retired']})")


@runs_group.command("show")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", default=20, show_default=True, help="Entity ids shown per kind of change.")
@click.argument("run", required=False)
def runs_show(home: Path | None, as_json: bool, limit: int, run: str | None) -> None:
    """One run (default: the current one): figures and entity changes with ids."""
    import json as _json

    from joinedup.operations import linkage as linkage_ops

    with _Officer(home) as officer:
        details = linkage_ops.show_run(officer.ctx, officer.caller, linkage_ops.RunRequest(run))
    if as_json:
        click.echo(_json.dumps(details, indent=2, default=str))
        return
    s = details["summary"]
    click.echo(f"run {details['run']}: created {s.get('created_at')}, {s.get('records')} records, "
               f"{s.get('entities')} entities; cluster threshold "
               f"{s.get('thresholds', {}).get('cluster_match_probability')}")
    changes = details["entity_changes"]
    for kind in ("new", "merged", "split", "retired"):
        items = changes.get(kind, [])
        click.echo(f"{kind}: {len(items)}")
        for item in items[:limit]:
            if isinstance(item, dict):
                other = item.get("from") or item.get("into")
                arrow = "<-" if "from" in item else "->"
                click.echo(f"  {item['entity_id']} {arrow} {', '.join(other)}")
            else:
                click.echo(f"  {item}")
        if len(items) > limit:
            click.echo(f"  ... {len(items) - limit} more (--json for all)")


@runs_group.command("rollback")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
@click.option("--to", "to", default=None, help="Run to make current (default: the one before).")
@click.option("--as", "as_user", default=None,
              help="Who rolls back: a user id of the home, or role:organisation:id (default: "
                   "the linkage unit's data officer, 'cli'). The policy decides.")
def runs_rollback(home: Path | None, to: str | None, as_user: str | None) -> None:
    """Make an earlier run current again (the service uses it from its next request).

    The action of joinedup.operations (as for the API): decided as `linkage.rollback`,
    recorded in the ledger, then runs/CURRENT switched."""
    from joinedup.commands.common import fail_with, resolve_caller
    from joinedup.errors import OperationError
    from joinedup.operations import linkage as linkage_ops
    from joinedup.service_context import HomeContext
    from joinedup.users import User

    h = _load_home(home)
    caller = resolve_caller(h, as_user) if as_user else User(**DATA_OFFICER)
    with HomeContext(h) as ctx:
        try:
            done = linkage_ops.rollback_run(ctx, caller, linkage_ops.RollbackRequest(to))
        except OperationError as exc:
            fail_with(exc)
    click.echo(f"current run is now {done['run']} (was {done['previous']})")


@click.group("review")
def review_group() -> None:
    """Clerical review of the current run: next pair, label it, explain it, accuracy."""


class _Officer:
    """The CLI's data officer and the home's context for one review command; an operation's
    refusal or error becomes the command's error (exit 1)."""

    def __init__(self, home: Path | None) -> None:
        from joinedup.service_context import HomeContext
        from joinedup.users import User

        self.ctx = HomeContext(_load_home(home))
        self.caller = User(**DATA_OFFICER)

    def __enter__(self) -> _Officer:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        from joinedup.commands.common import fail_with
        from joinedup.errors import OperationError

        self.ctx.close()
        if isinstance(exc, OperationError):
            fail_with(exc)
        return False


def _echo_waterfall(explained: dict) -> None:
    click.echo(f"  {'comparison':<22} {'level':<44} {'weight':>8}")
    for bar in explained["waterfall"]:
        click.echo(f"  {bar['column_name']:<22} {bar['label_for_charts'][:44]:<44} "
                   f"{bar['log2_bayes_factor']:>8.2f}")
    click.echo(f"  match probability {explained['match_probability']:.4f}")


@review_group.command("next")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
@click.option("--sample", type=click.Choice(["links", "band"]), default=None,
              help="A random pair for the accuracy estimate instead of the queue's next.")
@click.option("--count", default=1, show_default=True, help="Queue items to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def review_next(home: Path | None, sample: str | None, count: int, as_json: bool) -> None:
    """The next pair(s) to review, with the match-weight waterfall.

    The same `linkage.review` operations as the API and the review page: the queue (or a
    sampled pair), then each pair with its waterfall, each decided and recorded."""
    import json as _json

    from joinedup.operations import review as review_ops

    with _Officer(home) as officer:
        if sample:
            got = review_ops.sample(officer.ctx, officer.caller, review_ops.SampleRequest(sample))
            items = [got] if got else []
        else:
            items = review_ops.review_queue(officer.ctx, officer.caller,
                                            review_ops.QueueRequest(limit=count))["items"]
        for item in items:
            item["explanation"] = review_ops.show_pair(officer.ctx, officer.caller,
                                                       review_ops.PairRequest(item["pair_id"]))
    if as_json:
        click.echo(_json.dumps(items, indent=2, default=str))
        return
    if not items:
        click.echo("nothing to review")
    for item in items:
        click.echo(f"pair {item['pair_id']}: {item['left'][0]}/{item['left'][1]} - "
                   f"{item['right'][0]}/{item['right'][1]} ({item.get('reason') or item.get('purpose')})")
        _echo_waterfall(item["explanation"])
        click.echo(f"  label it: joinedup review label {item['pair_id']} --as match|non-match|unsure"
                   + (f" --purpose {item['purpose']}" if item.get("purpose") else ""))


def _record(text: str) -> tuple[str, str]:
    source, slash, ref = text.partition("/")
    if not (slash and source and ref):
        raise click.BadParameter(f"{text!r}: a record is SOURCE/REF")
    return source, ref


@review_group.command("label")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
@click.option("--as", "label", type=click.Choice(["match", "non-match", "unsure"]), required=True)
@click.option("--by", "by", default=None, help="Who decided (default: $USER).")
@click.option("--purpose", type=click.Choice(["queue", "sample-links", "sample-band", "request"]),
              default="queue", show_default=True)
@click.argument("pair_or_record")
@click.argument("other_record", required=False)
def review_label(home: Path | None, label: str, by: str | None, purpose: str,
                 pair_or_record: str, other_record: str | None) -> None:
    """Record a decision on a pair (PAIR_ID, or two records SOURCE/REF SOURCE/REF, e.g. a
    missed link the run never compared); the next link run uses it."""
    # The service's action (joinedup.operations.review): decided as `linkage.review`,
    # `linkage.review_label` recorded, then the label stored.
    from joinedup.errors import OperationError
    from joinedup.operations import review as review_ops
    from joinedup.service_context import HomeContext
    from joinedup.users import User

    if other_record is not None:
        request = review_ops.LabelPair("", label, purpose, _record(pair_or_record), _record(other_record))
    else:
        request = review_ops.LabelPair(pair_or_record, label, purpose)
    h = _load_home(home)
    by = by or os.environ.get("USER") or "data-officer"
    ctx = HomeContext(h)
    try:
        stored = review_ops.label_pair(ctx, User(**{**DATA_OFFICER, "id": by}), request)
    except OperationError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        ctx.close()
    click.echo(f"labelled {stored['pair_id'] if stored else pair_or_record} {label} "
               "(applies from the next link run)")


@review_group.command("explain")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
@click.option("--run", "run", default=None, help="Run (default: the current one).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.argument("pair_or_record")
@click.argument("other_record", required=False)
def review_explain(home: Path | None, run: str | None, as_json: bool, pair_or_record: str,
                   other_record: str | None) -> None:
    """Why two records did or did not link: a pair's waterfall and the blocking rules that
    compared it (PAIR_ID, or any two records SOURCE/REF SOURCE/REF); or why a record is in
    its entity (one SOURCE/REF).

    The `linkage.review` operations of the API and the review page (decided, recorded)."""
    import json as _json

    from joinedup.operations import review as review_ops

    with _Officer(home) as officer:
        if other_record is not None:
            doc = review_ops.show_pair(officer.ctx, officer.caller, review_ops.RecordsPairRequest(
                _record(pair_or_record), _record(other_record), run=run))
        elif "/" in pair_or_record:
            source, ref = _record(pair_or_record)
            doc = review_ops.why_in_entity(officer.ctx, officer.caller,
                                           review_ops.WhyRequest(source, ref, run=run))
        else:
            doc = review_ops.show_pair(officer.ctx, officer.caller,
                                       review_ops.PairRequest(pair_or_record, run=run))
    if as_json or "waterfall" not in doc:
        click.echo(_json.dumps(doc, indent=2, default=str))
        return
    click.echo(f"pair {doc['pair_id']}: {doc['left']['source']}/{doc['left']['ref']} - "
               f"{doc['right']['source']}/{doc['right']['ref']}")
    if doc["blocked_by"]:
        click.echo(f"  compared: {len(doc['blocked_by'])} blocking rule(s) bring them together, "
                   f"first {doc['blocked_by'][0]}")
    else:
        same = doc["left"]["entity_id"] == doc["right"]["entity_id"]
        click.echo("  never compared: no blocking rule brings these two records together "
                   "(no equal match key or filter band); "
                   + ("other links hold them in one entity" if same else "a 'match' label would join them"))
    _echo_waterfall(doc)
    click.echo(f"  cluster threshold {doc['threshold']:.4f}; same entity: "
               f"{'yes' if doc['left']['entity_id'] == doc['right']['entity_id'] else 'no'}")


@review_group.command("stats")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)
def review_stats(home: Path | None) -> None:
    """Precision and recall of the current run estimated from sampled labels (95% Wilson),
    through the `linkage.review` operation (decided, recorded)."""
    import json as _json

    from joinedup.operations import review as review_ops

    with _Officer(home) as officer:
        estimate = review_ops.accuracy(officer.ctx, officer.caller)
    click.echo(_json.dumps(estimate, indent=2))


def register(cli: click.Group) -> None:
    """Add this concern's commands to the root group."""
    cli.add_command(ingest_command)
    cli.add_command(link_command)
    cli.add_command(runs_group)
    cli.add_command(review_group)
