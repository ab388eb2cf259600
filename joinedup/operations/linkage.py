"""Linkage actions of the service: read the current run's status and report, and make a
finished run the current one (record `linkage.run` first, then switch runs/CURRENT)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from joinedup.errors import InvalidInput, NotFound
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


def switch_current(runs_dir: Path, name: str, action: str = "link", actor: str = "service") -> None:
    """Point runs/CURRENT at `name` (atomic), noting the change in runs/HISTORY.jsonl."""
    from linkage.runs import current_run_name, set_current

    if current_run_name(runs_dir) == name:
        return
    set_current(runs_dir, name, action, actor)
