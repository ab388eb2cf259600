"""Linkage actions of the service: read the current run's status and report, make a
finished run the current one (record `linkage.run` first, then switch runs/CURRENT), and
roll back to an earlier run (record `linkage.rollback` first, then switch runs/CURRENT)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from joinedup.errors import Conflict, InvalidInput, NotFound
from joinedup.operations.protocol import Action, Caller
from joinedup.service_context import HomeContext, ServiceContext
from linkage.ingest import (
    IngestedExtract,
    IngestError,
    active_extracts,
    ingest_extracts,
    verify_extract,
)
from linkage.run import link_extracts
from linkage.settings import load_settings

PURPOSE = "linkage_operations"
ROLLBACK = "linkage.rollback"
# A run named by a caller is a directory directly under HOME/runs: a name, never a path.
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class CommitRun:
    run_dir: Path
    summary: dict


def status(ctx: ServiceContext, caller: Caller) -> dict:
    with Action(ctx, caller, "linkage.report.read", purpose=PURPOSE) as act:
        act.decide({})
        run = ctx.current_run_dir()
        path = run / "summary.json"
        if not path.exists():
            raise NotFound("summary.json missing from the current run")
        return {"run": run.name, "summary": json.loads(path.read_text())}


def report_html(ctx: ServiceContext, caller: Caller) -> str:
    with Action(ctx, caller, "linkage.report.read", purpose=PURPOSE) as act:
        act.decide({})
        report = ctx.current_run_dir() / "report.html"
        if not report.exists():
            raise NotFound("the current run has no report")
        return report.read_text()


@dataclass(frozen=True)
class IngestRequest:
    extract_dir: Path


@dataclass(frozen=True)
class LinkRequest:
    out_dir: Path
    settings_file: Path | None = None


def ingest(ctx: HomeContext | ServiceContext, caller: Caller,
           request: IngestRequest) -> IngestedExtract:
    """Verify one split extract, decide, record `extract.ingested`, then register it."""
    home = ctx.home
    with Action(ctx, caller, "extract.ingest", purpose=PURPOSE) as act:
        try:
            manifest = verify_extract(request.extract_dir, home.project_id,
                                      home.public_key_ids())
        except IngestError as exc:
            raise InvalidInput(f"nothing ingested: {exc}", [("extract", "not valid")]) from exc
        act.decide({})
        act.record({"type": "extract.ingested", "extract_id": manifest["extract_id"],
                    "source": manifest["source"], "kind": manifest["kind"]})
        (done,) = ingest_extracts([request.extract_dir], home.extracts_dir, home.store_path,
                                  home.project_id, home.public_key_ids(),
                                  keep_content=home.keeps_content)
        return done


def link(ctx: HomeContext | ServiceContext, caller: Caller, request: LinkRequest) -> dict:
    """Link every source's active extract into a new run, then make it current
    (`commit_run`). A run directory that is not current yet is not an effect."""
    home = ctx.home
    out_dir = request.out_dir
    if not out_dir.is_absolute() and out_dir.parent == Path("."):
        out_dir = home.runs_dir / out_dir
    marker = home.runs_dir / "CURRENT"
    previous = home.runs_dir / marker.read_text().strip() if marker.exists() else None
    if previous is not None and not (previous / "records.parquet").exists():
        previous = None
    summary = link_extracts(active_extracts(home.store_path, home.extracts_dir), out_dir,
                            load_settings(request.settings_file), previous_run=previous)
    commit_run(ctx, caller, CommitRun(out_dir, summary))
    return summary


def commit_run(ctx: HomeContext | ServiceContext, caller: Caller, request: CommitRun) -> str:
    """Make a finished run current: decide `linkage.run`, record the event naming the run,
    then switch runs/CURRENT (atomic rename; recovery switches it if a crash came between)."""
    with Action(ctx, caller, "linkage.run", purpose=PURPOSE) as act:
        act.decide({})
        name = run_name(ctx, request.run_dir)
        summary = request.summary
        event_id = act.record({
            "type": "linkage.run", "run_id": summary["run_id"], "run": name,
            "extract_ids": [e["extract_id"] for e in summary["extracts"]],
            "records": summary["records"], "entities": summary["entities"]})
        switch_current(ctx.home.runs_dir, name)
        return event_id


def run_name(ctx: ServiceContext, run_dir: Path) -> str:
    """A run under HOME/runs is named by its directory name; one elsewhere by its path."""
    in_runs = run_dir.absolute().parent.resolve() == ctx.home.runs_dir.resolve()
    return run_dir.name if in_runs else str(run_dir.absolute())


@dataclass(frozen=True)
class RollbackRequest:
    to: str | None = None  # a run under HOME/runs; None: the run current before this one


def check_run_name(name: str, field: str = "run") -> None:
    """InvalidInput unless `name` is a run's name (a directory of HOME/runs, not a path)."""
    if not RUN_NAME.match(name) or name in (".", ".."):
        raise InvalidInput(f"{field}: not a run name (letters, digits, '.', '_', '-')",
                           [(field, "not a run name")])


def rollback_run(ctx: HomeContext | ServiceContext, caller: Caller,
                 request: RollbackRequest) -> dict:
    """Make an earlier run current again. Decided as `linkage.rollback` before anything about
    the runs is looked at (a refusal says nothing about them); `linkage.rollback` is recorded,
    naming both runs; then runs/CURRENT is switched (recovery switches it if a crash came
    between). Returns {"run", "previous", "event_id"}."""
    from linkage.runs import RunsError, current_run_name, previous_run, resolve_run

    with Action(ctx, caller, ROLLBACK, purpose=PURPOSE) as act:
        if request.to is not None:
            check_run_name(request.to, "to")  # invalid: recorded as request.invalid on exit
        act.decide({})
        runs_dir = ctx.home.runs_dir
        current = current_run_name(runs_dir)
        if current is None:
            raise NotFound("no current run to roll back (run `joinedup link` first)")
        to = request.to or previous_run(runs_dir, current)
        if to is None:
            raise Conflict(f"nothing to roll back to: no run was current before {current}")
        try:
            target = resolve_run(runs_dir, to)
        except RunsError as exc:
            raise NotFound(str(exc)) from exc
        if to == current:
            raise Conflict(f"{to} is already the current run")
        try:
            run_id = json.loads((target / "summary.json").read_text()).get("run_id")
        except (OSError, ValueError) as exc:
            raise NotFound(f"run {to}: its summary.json is unreadable") from exc
        event_id = act.record({"type": ROLLBACK, "run": to, "run_id": run_id,
                               "previous_run": current})
        switch_current(runs_dir, to, action="rollback", actor=caller.id)
        return {"run": to, "previous": current, "event_id": event_id}


REPORT_READ = "linkage.report.read"


@dataclass(frozen=True)
class RunRequest:
    run: str | None = None  # a run under HOME/runs; None: the current one


def list_runs(ctx: HomeContext | ServiceContext, caller: Caller) -> dict:
    """Every finished link run, oldest first, with its headline figures and entity-change
    counts, and which one is current. Decided as `linkage.report.read` (`joinedup runs
    list`, `GET /v1/linkage/runs`, the data officer's runs page)."""
    from linkage.runs import current_run_name
    from linkage.runs import list_runs as finished_runs

    with Action(ctx, caller, REPORT_READ, purpose=PURPOSE) as act:
        act.decide({})
        runs_dir = ctx.home.runs_dir
        return {"current": current_run_name(runs_dir), "runs": finished_runs(runs_dir)}


def show_run(ctx: HomeContext | ServiceContext, caller: Caller, request: RunRequest) -> dict:
    """One run (default: the current one): its summary and its entity changes, with ids,
    against the run before it. Decided as `linkage.report.read` before any run is looked
    at (a refusal says nothing about the runs)."""
    from linkage.runs import RunsError, current_run_name, resolve_run, run_details

    with Action(ctx, caller, REPORT_READ, purpose=PURPOSE) as act:
        if request.run is not None:
            check_run_name(request.run)  # invalid: recorded as request.invalid on exit
        act.decide({})
        name = request.run or current_run_name(ctx.home.runs_dir)
        if name is None:
            raise NotFound("no link run yet (run `joinedup link`)")
        try:
            details = run_details(resolve_run(ctx.home.runs_dir, name))
        except RunsError as exc:
            raise NotFound(f"no finished link run named {name}") from exc
        details["current"] = name == current_run_name(ctx.home.runs_dir)
        return details


def switch_current(runs_dir: Path, name: str, action: str = "link", actor: str = "service") -> None:
    """Point runs/CURRENT at `name` (atomic), noting the change in runs/HISTORY.jsonl."""
    from linkage.runs import current_run_name, set_current

    if current_run_name(runs_dir) == name:
        return
    set_current(runs_dir, name, action, actor)
