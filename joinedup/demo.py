"""`joinedup demo`: the whole job on synthetic data, embedded defaults, no server.

synthesise four agencies' sources (council in a SQLite file) → extract each (split,
pseudonymised) → ingest → link → demo users → consent for some people → summaries as an
adviser (plus a refusal and a withdrawal) → refer one person to a provider → area counts
→ verify the ledger → ONE offline HTML overview.

Every user action goes through joinedup.operations, as the HTTP API's and the CLI's do
(decided, recorded, applied); the demo plays each agency and each user. A step that fails
is reported, the later steps say what they lack, and `joinedup demo` exits non-zero.

The demo picks *which* synthetic people to show from the synthetic truth files (so the
sample summaries are interesting); everything it shows is computed by the real pipeline.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.extract import pseudonymise_extract
from connectors.synth import write_synthetic_sources
from joinedup import operations as ops
from joinedup.errors import NotAvailable, Refused
from joinedup.home import Home, init_home
from joinedup.operations import linkage as linkage_ops
from joinedup.service_context import HomeContext, ServiceContext, now_iso
from joinedup.users import User

DEMO_MARKER = ".joinedup-demo"
SOURCES = (  # kind, source name, input under sources/
    ("dwp", "dwp-thanet", "dwp_claimants.csv"),
    ("council", "council-thanet", "council.sqlite"),
    ("nhs", "nhs-kent", "nhs"),
    ("housing", "housing-thanet", "housing_tenancies.csv"),
)
DEMO_USERS = (  # role, organisation, name
    ("adviser", "csc-margate", "demo adviser"),
    ("provider", "provider-a", "demo provider"),
    ("governance", "governance-board", "demo board member"),
    ("data_officer", "linkage-unit", "demo data officer"),
)
CONSENT_CATEGORIES = ["dwp", "council", "nhs", "housing",
                      "MH", "PH", "DIS", "SUB", "HOU", "FIN", "SKL", "CAR", "CLV", "FAM", "WRK"]
SAMPLE_SUMMARIES = 5
OVERVIEW_STEP = "write the HTML overview"
DATA_OFFICER = User(id="demo-data-officer", role="data_officer", organisation="linkage-unit")


class DemoError(Exception):
    """The demo cannot start (e.g. the target directory is not a demo home)."""


class StepUnavailable(Exception):
    """A step cannot run because the piece it needs has not been built yet."""


@dataclass
class Step:
    name: str
    status: str = "pending"
    detail: str = ""
    seconds: float = 0.0


@dataclass
class DemoState:
    root: Path
    home: Home
    people: int
    seed: int
    console: Console
    steps: list[Step] = field(default_factory=list)
    ctx: ServiceContext | None = None
    users: dict[str, User] = field(default_factory=dict)
    extract_dirs: list[Path] = field(default_factory=list)
    sample: list[dict] = field(default_factory=list)  # {"label", "identifiers"}
    overview: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every step done (a step not done means the demo did not show what it should)."""
        return all(step.status == "done" for step in self.steps)

    @property
    def sources_dir(self) -> Path:
        return self.root / "sources"

    @property
    def outgoing_dir(self) -> Path:
        return self.root / "outgoing"


def run_demo(root: Path, people: int = 5000, seed: int = 7, force: bool = False,
             console: Console | None = None) -> DemoState:
    """Run every step; returns the state (steps and outputs). Raises DemoError only when it
    cannot start; a failing step is reported and the demo goes on where it can."""
    console = console or Console()
    root = Path(root).absolute()
    _prepare(root, force)
    # The governance board's witness of the audit checkpoints: its own folder in the demo
    # (a relative path is taken from the home, so a copied demo home keeps its own witness).
    home = init_home(root, project_id=f"demo-{seed}", witness=Path("governance-witness"))
    (root / DEMO_MARKER).write_text("created by joinedup demo; safe to delete\n")
    state = DemoState(root=root, home=home, people=people, seed=seed, console=console)
    console.rule(f"[bold]joinedup demo[/] — {people} synthetic people, seed {seed}, home {root}")
    started = time.monotonic()
    try:
        for name, fn in _STEPS:
            _run_step(state, name, fn)
        _run_step(state, OVERVIEW_STEP, _write_overview)
    finally:
        if state.ctx is not None:
            state.ctx.close()
    _closing_summary(state, time.monotonic() - started)
    return state


def _prepare(root: Path, force: bool) -> None:
    if root.exists() and any(root.iterdir()):
        if (root / DEMO_MARKER).exists() or force:
            shutil.rmtree(root)
        else:
            raise DemoError(f"{root} exists and is not a demo home; choose another --home or --force")


def _run_step(state: DemoState, name: str, fn: Callable[[DemoState], str]) -> None:
    step = Step(name)
    state.steps.append(step)
    t0 = time.monotonic()
    try:
        step.detail = fn(state) or ""
        step.status = "done"
        mark = "[green]✓[/]"
    except (StepUnavailable, NotAvailable) as exc:
        step.status = "not available yet"
        step.detail = str(exc)
        mark = "[yellow]–[/]"
    except Exception as exc:  # report and carry on: later steps say what they lack
        step.status = "failed"
        step.detail = f"{type(exc).__name__}: {exc}"
        mark = "[red]✗[/]"
        (state.root / "demo-errors.log").open("a").write(
            f"--- {name}\n{traceback.format_exc()}\n"
        )
    step.seconds = time.monotonic() - t0
    state.console.print(f"{mark} {name} [dim]({step.seconds:.1f}s)[/] {step.detail}")


def _progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=console, transient=True)


# -- the steps --------------------------------------------------------------------------
def _synthesise(state: DemoState) -> str:
    with state.console.status("synthesising four agencies' sources..."):
        write_synthetic_sources(state.sources_dir, state.people, state.seed)
    return f"sources in {state.sources_dir}"


def _extract(state: DemoState) -> str:
    extract = pseudonymise_extract
    keyring = state.home.keyring()
    counts = []
    with _progress(state.console) as progress:
        for kind, name, input_name in SOURCES:
            task = progress.add_task(f"extract {name}", total=None)
            out = state.outgoing_dir / name
            manifest = extract(keyring, kind, name, str(state.sources_dir / input_name), None, out,
                               progress=lambda n, t=task: progress.update(t, advance=n))
            state.extract_dirs.append(out)
            counts.append(f"{name} {manifest['counts']['accepted']}")
    return "accepted: " + ", ".join(counts)


def _ingest(state: DemoState) -> str:
    if not state.extract_dirs:
        raise StepUnavailable("no extracts (the extract step did not run)")
    with HomeContext(state.home) as hctx:
        for extract_dir in state.extract_dirs:
            linkage_ops.ingest(hctx, DATA_OFFICER, linkage_ops.IngestRequest(extract_dir))
    return f"{len(state.extract_dirs)} extracts registered"


def _link(state: DemoState) -> str:
    run_dir = state.home.runs_dir / "demo-run"
    with HomeContext(state.home) as hctx:
        summary = linkage_ops.link(hctx, DATA_OFFICER, linkage_ops.LinkRequest(run_dir))
    report = run_dir / "report.html"
    quality = _linkage_quality(state, run_dir)
    state.overview["linkage"] = {
        "summary": _flat(summary),
        "raw": summary,
        "quality": quality,
        "report_href": str(report.relative_to(state.root)) if report.exists() else None,
    }
    found = f"{summary.get('records', '?')} records → {summary.get('entities', '?')} people"
    if quality:
        found += f" (precision {quality['precision']:.1%}, recall {quality['recall']:.1%})"
    return found


def _linkage_quality(state: DemoState, run_dir: Path) -> dict | None:
    """Pairwise precision and recall of the run against the synthetic truth (the demo can
    check itself; a real deployment has no truth file). Uses the agencies' key maps, which
    the demo holds because it plays every agency."""
    from collections import Counter

    import pyarrow.parquet as pq

    truth_path = state.sources_dir / "ground_truth.csv"
    if not truth_path.exists() or not (run_dir / "entities.parquet").exists():
        return None
    with truth_path.open() as fh:
        person_of = {(r["source"], r["local_id"]): r["person_id"] for r in csv.DictReader(fh)}
    kind_of = {name: kind for kind, name, _ in SOURCES}
    truth_by_ref: dict[tuple[str, str], str] = {}
    for name, kind in kind_of.items():
        keymap = state.outgoing_dir / name / "keymap.parquet"
        if keymap.exists():
            table = pq.read_table(keymap, columns=["local_id", "ref"]).to_pydict()
            for local, ref in zip(table["local_id"], table["ref"], strict=True):
                if (kind, local) in person_of:
                    truth_by_ref[(name, ref)] = person_of[(kind, local)]
    entities = pq.read_table(run_dir / "entities.parquet", columns=["entity_id", "source", "ref"])
    ent, both, truth = Counter(), Counter(), Counter()
    for e, source, ref in zip(*(entities.column(c).to_pylist() for c in ("entity_id", "source", "ref")),
                              strict=True):
        person = truth_by_ref.get((source, ref))
        if person is None:
            continue
        ent[e] += 1
        truth[person] += 1
        both[(e, person)] += 1

    def pairs(counter: Counter) -> int:
        return sum(n * (n - 1) // 2 for n in counter.values())

    linked, true, right = pairs(ent), pairs(truth), pairs(both)
    if not linked or not true:
        return None
    return {"precision": right / linked, "recall": right / true, "true_people": len(truth)}


def _open_service(state: DemoState) -> str:
    state.ctx = ops.open_service(state.home)
    from joinedup.operations.users import OPERATOR, AddUser, add_user

    tokens = {}
    for role, org, name in DEMO_USERS:
        user, token = add_user(state.home, OPERATOR, AddUser(role, org, name))
        state.users[role] = user
        tokens[role] = {"user_id": user.id, "organisation": org, "token": token}
    # Kept so a newcomer can try `joinedup serve` with these users; 0600, demo only.
    from connectors.keys import write_secret_file

    write_secret_file(state.home.secrets_dir / "demo-tokens.json",
                      json.dumps(tokens, indent=2).encode())
    return f"{len(tokens)} users; their tokens in secrets/demo-tokens.json (0600)"


def _pick_people(state: DemoState) -> list[dict]:
    """Some DWP claimants with several planted barriers (truth files: demo choice only),
    with the raw identifiers an adviser would be told across the desk."""
    from connectors.sources import read_records

    truth_people = state.sources_dir / "people_truth.csv"
    truth_records = state.sources_dir / "ground_truth.csv"
    if not truth_people.exists() or not truth_records.exists():
        raise StepUnavailable("synthetic sources missing")
    with truth_people.open() as fh:
        rows = list(csv.DictReader(fh))
    codes = [c for c in ("MH", "PH", "DIS", "SUB", "HOU", "FIN", "SKL", "CAR", "CLV", "FAM", "WRK")
             if rows and c in rows[0]]
    load = {r["person_id"]: sum(1 for c in codes if r[c] not in ("", "0")) for r in rows}
    with truth_records.open() as fh:
        dwp_local = {r["local_id"]: r["person_id"] for r in csv.DictReader(fh) if r["source"] == "dwp"}
    wanted = sorted(dwp_local.items(), key=lambda kv: (-load.get(kv[1], 0), kv[0]))[:40]
    wanted_ids = {local for local, _ in wanted}
    found: dict[str, dict] = {}
    for record in read_records("dwp", str(state.sources_dir / "dwp_claimants.csv")):
        local = record.identity.get("local_id")
        if local in wanted_ids:
            found[local] = {k: v for k, v in record.identity.items() if v and k != "local_id"}
    people, seen = [], set()
    for local, person_id in wanted:
        if local in found and person_id not in seen:
            seen.add(person_id)
            people.append({"label": f"synthetic person {len(people) + 1}", "identifiers": found[local]})
    return people


def _consent(state: DemoState) -> str:
    ctx = _ctx(state)
    state.sample = _pick_people(state)[: SAMPLE_SUMMARIES + 2]
    if not state.sample:
        raise StepUnavailable("no sample people found in the synthetic sources")
    adviser = state.users["adviser"]
    consenting = state.sample[:-1]  # the last person does not consent (a refusal to show)
    for person in consenting:
        granted = ops.grant_consent(ctx, adviser, ops.GrantConsent(
            identifiers=person["identifiers"], purposes=["employment_support"],
            categories=CONSENT_CATEGORIES))
        person["receipt_id"] = granted.receipt_id
    return f"{len(consenting)} people consented; 1 did not"


def _summaries(state: DemoState) -> str:
    ctx = _ctx(state, needs_run=True)
    adviser = state.users["adviser"]
    shown, notes = [], []
    for person in state.sample:
        try:
            result = ops.request_summary(ctx, adviser, ops.SummaryRequest(person["identifiers"]))
            if result.summary:
                shown.append({**result.summary, "_label": person["label"]})
                person["summary_shown"] = True
            else:
                notes.append(f"{person['label']}: no summary — {result.outcome}: "
                             f"{result.reason or ''}")
        except Refused as exc:
            notes.append(f"{person['label']}: refused — {'; '.join(exc.reasons)}")
    # Withdrawal takes effect at once: withdraw one consent, ask again.
    withdrawn = next((p for p in reversed(state.sample) if p.get("receipt_id")), None)
    if withdrawn is not None:
        ops.withdraw_consent(ctx, adviser, ops.WithdrawConsent(withdrawn["receipt_id"]))
        try:
            ops.request_summary(ctx, adviser, ops.SummaryRequest(withdrawn["identifiers"]))
            raise RuntimeError(f"{withdrawn['label']}: after withdrawal a summary was STILL "
                               "given (defect)")
        except Refused as exc:
            notes.append(f"{withdrawn['label']}: consent withdrawn, next request refused — "
                         f"{'; '.join(exc.reasons)}")
        withdrawn["withdrawn"] = True
    state.overview["summaries"] = shown[:SAMPLE_SUMMARIES]
    state.overview["summaries_given"] = len(shown)
    state.overview["summary_notes"] = notes
    return f"{len(shown)} summaries, {len(notes)} refusals"


def _referral(state: DemoState) -> str:
    ctx = _ctx(state, needs_run=True)
    summaries = state.overview.get("summaries") or []
    person = next((p for p in state.sample if p.get("summary_shown") and not p.get("withdrawn")),
                  None)
    if person is None or not summaries:
        raise StepUnavailable("no consented summary to refer from")
    shown = next((s for s in summaries if s["_label"] == person["label"]), summaries[0])
    barriers = [b["code"] for b in shown.get("barriers", [])][:2] or ["WRK"]
    referral = ops.create_referral(ctx, state.users["adviser"], ops.CreateReferral(
        identifiers=person["identifiers"], provider="provider-a", barriers=barriers))
    record = referral.public()
    provider_view = ops.read_referral(ctx, state.users["provider"],
                                      ops.ReadReferral(referral.referral_id)).summary
    state.overview["referral"] = {
        "record": record,
        "person": person["label"],
        "provider_view": {**(provider_view.summary or {}),
                          "_label": f"what provider-a reads about {person['label']}"},
    }
    return f"{referral.referral_id} to provider-a for {', '.join(barriers)}"


def _area_counts(state: DemoState) -> str:
    ctx = _ctx(state, needs_run=True)
    out_dir = state.root / "area-counts"
    result = ops.request_area_counts(ctx, state.users["governance"], ops.AreaCountsRequest(
        level="sector", purpose="service_planning", out_dir=out_dir))
    state.overview["areas"] = _area_view(result, state.root)
    return f"{len(state.overview['areas']['rows']) - 1} postcode sectors; CSV and chart in {out_dir}"


def _verify(state: DemoState) -> str:
    from audit import render_report_html

    ctx = _ctx(state)
    board = state.users["governance"]
    result = ops.audit.verify(ctx, board)
    by_type: dict[str, int] = {}
    for event in ctx.ledger.events():
        by_type[event["type"]] = by_type.get(event["type"], 0) + 1
    audit = {"verified": bool(result.get("ok")), "facts": _flat(result), "by_type": by_type,
             "problem": "; ".join(result.get("problems") or [])}
    path = state.root / "audit-report.html"
    path.write_text(render_report_html(ops.audit.report(ctx, board, ops.audit.ReportRequest())))
    audit["report_href"] = path.name
    state.overview["audit"] = audit
    if not audit["verified"]:
        raise RuntimeError(f"the ledger did not verify: {audit['problem']}")
    return f"{sum(by_type.values())} events, verified={audit['verified']}"


def _write_overview(state: DemoState) -> str:
    from joinedup.pages import render_overview

    data = {**state.overview, "steps": [vars(s) for s in state.steps if s.name != OVERVIEW_STEP],
            "generated_at": now_iso(), "project_id": state.home.project_id,
            "headline": _headline(state), "outputs": _outputs(state)}
    path = state.root / "overview.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_overview(data))
    tmp.replace(path)
    return str(path)


_STEPS: list[tuple[str, Callable[[DemoState], str]]] = [
    ("synthesise the four agencies' sources", _synthesise),
    ("extract (split, pseudonymised) at each agency", _extract),
    ("ingest the extracts", _ingest),
    ("link them into people", _link),
    ("open the service and create demo users", _open_service),
    ("record consent at the Citizen Support centre", _consent),
    ("request barrier summaries as an adviser", _summaries),
    ("refer one person to a provider", _referral),
    ("area counts for the governance board", _area_counts),
    ("verify the audit ledger", _verify),
]


# -- helpers ----------------------------------------------------------------------------
def _ctx(state: DemoState, needs_run: bool = False) -> ServiceContext:
    if state.ctx is None:
        raise StepUnavailable("the service context did not open")
    if needs_run and not (state.home.runs_dir / "CURRENT").exists():
        raise StepUnavailable("no link run (the link step did not run)")
    return state.ctx


def _flat(doc: dict, prefix: str = "") -> dict:
    """Nested JSON to dotted keys (for a two-column table)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def _headline(state: DemoState) -> list[tuple[str, Any, str]]:
    """The overview's key figures (label, value, hint)."""
    raw = (state.overview.get("linkage") or {}).get("raw") or {}
    audit = state.overview.get("audit") or {}
    areas = state.overview.get("areas") or {}
    tiles = [
        ("synthetic people", f"{state.people:,}", "invented, with planted barriers"),
        ("records linked", f"{raw.get('records', 0):,}", "from four agencies' extracts"),
        ("people found", f"{raw.get('entities', 0):,}", "by linkage, from encodings only"),
        ("summaries given", state.overview.get("summaries_given", 0), "to a consenting person's adviser"),
        ("refused / not given", len(state.overview.get("summary_notes") or []), "no consent, withdrawn, ambiguous"),
        ("areas published", max(len(areas.get("rows") or []) - 1, 0), "small counts suppressed"),
        ("ledger entries", sum((audit.get("by_type") or {}).values()),
         "verified" if audit.get("verified") else "NOT verified"),
    ]
    return tiles


def _outputs(state: DemoState) -> list[dict]:
    root = state.root
    found = [
        ("synthetic agency sources (raw, stay at the agency)", root / "sources"),
        ("split extracts each agency sends", root / "outgoing"),
        ("link run (entities, model, report)", root / "runs" / "demo-run"),
        ("linkage quality report", root / "runs" / "demo-run" / "report.html"),
        ("area counts CSV and chart", root / "area-counts"),
        ("governance (audit) report", root / "audit-report.html"),
        ("audit ledger", root / "ledger"),
        ("demo users' API tokens (0600)", root / "secrets" / "demo-tokens.json"),
    ]
    return [{"output": what, "where": str(path)} for what, path in found if path.exists()]


def _area_view(result: dict, root: Path) -> dict:
    """Area counts → rows for the table and an inline SVG of multiple disadvantage."""
    from joinedup.pages import bar_chart_svg, image_data_uri

    rows = result.get("rows") or []
    counts = [c for c in result.get("columns") or [] if c != "area"]
    measure = "multiple_disadvantage" if "multiple_disadvantage" in counts else (
        counts[-1] if counts else None)
    bars = [(str(row.get("area")), row[measure]) for row in rows
            if measure and row.get("area") != "TOTAL" and isinstance(row.get(measure), int | float)]
    shown = [{k: ("[c]" if v is None and k in counts else v) for k, v in row.items()} for row in rows]
    view = {"rows": shown, "columns": ["area", *counts], "numeric": counts,
            "chart_svg": bar_chart_svg(bars, "people with multiple disadvantage (3+ barrier "
                                             "areas) by postcode sector, published values"),
            "note": "People with each barrier, and with multiple disadvantage (three or more "
                    "barrier areas), by postcode sector, for the governance board. Counts 1–7 "
                    "are suppressed ([c]), others rounded to the nearest 5, with secondary "
                    "suppression so that totals cannot reveal a suppressed cell."}
    files = result.get("files") or {}
    chart = files.get("chart")
    if chart and Path(chart).exists():
        view["chart_png"] = image_data_uri(Path(chart))
    if files.get("csv"):
        view["csv_href"] = str(Path(files["csv"]).relative_to(root))
    return view


def _closing_summary(state: DemoState, seconds: float) -> None:
    console = state.console
    table = Table("step", "result", "detail", title=f"joinedup demo finished in {seconds:.0f}s")
    colours = {"done": "green", "not available yet": "yellow", "failed": "red"}
    for step in state.steps:
        colour = colours.get(step.status, "white")
        table.add_row(step.name, f"[{colour}]{step.status}[/]", step.detail)
    console.print(table)
    figures = ", ".join(f"{value} {label}" for label, value, _ in _headline(state))
    verified = (state.overview.get("audit") or {}).get("verified")
    console.print(f"[bold]In short:[/] {figures} ({'verified' if verified else 'NOT verified'}).")
    console.print(f"[bold]Overview (open in a browser, works offline):[/] {state.root / 'overview.html'}")
    console.print(f"Deployment home: {state.root}  (sources/, outgoing/, runs/, ledger/, store.duckdb)")
    tokens = state.home.secrets_dir / "demo-tokens.json"
    if tokens.exists():
        console.print(f"Try the API: joinedup serve --home {state.root}  (tokens: {tokens})")
    if not state.ok:
        console.print(f"[red]Some steps failed; details in {state.root / 'demo-errors.log'}[/]")
