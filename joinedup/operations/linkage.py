"""Linkage actions of the service: read the current run's status and report, and make a
finished run the current one (record `linkage.run` first, then switch runs/CURRENT)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from joinedup.errors import NotFound
from joinedup.operations.protocol import Action, Caller
from joinedup.service_context import ServiceContext

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


def commit_run(ctx: ServiceContext, caller: Caller, request: CommitRun) -> str:
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


def switch_current(runs_dir: Path, name: str) -> None:
    marker = runs_dir / "CURRENT"
    if marker.exists() and marker.read_text().strip() == name:
        return
    tmp = runs_dir / f"CURRENT.{os.getpid()}.tmp"
    tmp.write_text(name + "\n")
    os.replace(tmp, marker)
