"""The link runs of a linkage unit's home: which exist, which one is current, rollback.

HOME/runs/<name>/ holds a run's files; HOME/runs/CURRENT names the run the service uses;
HOME/runs/HISTORY.jsonl lists every change of CURRENT (a link or a rollback), oldest first,
so a rollback knows which run was current before.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class RunsError(Exception):
    """A run does not exist, or there is nothing to roll back to."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunsError(f"{path}: unreadable ({exc})") from exc


def is_run(path: Path) -> bool:
    return (Path(path) / "summary.json").is_file() and (Path(path) / "entities.parquet").is_file()


def current_run_name(runs_dir: Path) -> str | None:
    marker = Path(runs_dir) / "CURRENT"
    return marker.read_text().strip() if marker.exists() else None


def resolve_run(runs_dir: Path, name: str) -> Path:
    """A run by name (under runs_dir) or by path; RunsError if it is not a finished run."""
    path = Path(name)
    if not path.is_absolute() and len(path.parts) == 1:
        path = Path(runs_dir) / name
    if not is_run(path):
        raise RunsError(f"no finished link run at {path}")
    return path


def history(runs_dir: Path) -> list[dict[str, Any]]:
    path = Path(runs_dir) / "HISTORY.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def set_current(runs_dir: Path, name: str, action: str, actor: str = "cli") -> None:
    """Make `name` the current run (atomic rename) and append the change to the history."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    entry = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "action": action,
             "run": name, "previous": current_run_name(runs_dir), "actor": actor}
    with open(runs_dir / "HISTORY.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp = runs_dir / f"CURRENT.{os.getpid()}.tmp"
    tmp.write_text(name + "\n")
    os.replace(tmp, runs_dir / "CURRENT")


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every finished run under runs_dir, oldest first, with its headline figures."""
    runs_dir = Path(runs_dir)
    current = current_run_name(runs_dir)
    out = []
    for path in sorted(p for p in runs_dir.iterdir() if p.is_dir() and is_run(p)) if runs_dir.exists() else []:
        summary = _read_json(path / "summary.json")
        changes = summary.get("entity_changes", {})
        out.append({
            "run": path.name, "current": path.name == current or str(path) == current,
            "created_at": summary.get("created_at"), "records": summary.get("records"),
            "entities": summary.get("entities"),
            "changes": {k: changes.get(k, 0) for k in ("new", "merged", "split", "retired")},
        })
    out.sort(key=lambda r: (r["created_at"] or "", r["run"]))
    return out


def run_details(run_dir: Path) -> dict[str, Any]:
    """A run's summary and its entity changes (with ids) against the run before it."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json")
    changes_path = run_dir / "entity_changes.json"
    changes = _read_json(changes_path) if changes_path.exists() else {}
    return {"run": run_dir.name, "summary": summary, "entity_changes": changes}


def previous_run(runs_dir: Path, current: str) -> str | None:
    """The run that was current before `current` last became current (from the history)."""
    before = [e["previous"] for e in history(runs_dir) if e["run"] == current and e["previous"]]
    candidates = [name for name in reversed(before) if name != current]
    return candidates[0] if candidates else None


def rollback(runs_dir: Path, to: str | None = None, actor: str = "cli") -> tuple[str, str]:
    """Make an earlier run current again: `to`, or the run that was current before the
    present one. Returns (from, to). The rolled-back run's files are kept."""
    runs_dir = Path(runs_dir)
    current = current_run_name(runs_dir)
    if current is None:
        raise RunsError("no current run to roll back")
    if to is None:
        to = previous_run(runs_dir, current)
        if to is None:
            raise RunsError(f"nothing to roll back to: no run was current before {current}")
    resolve_run(runs_dir, to)
    if to == current:
        raise RunsError(f"{to} is already the current run")
    set_current(runs_dir, to, "rollback", actor)
    return current, to
