"""Operations the web pages need that the service had no function for yet, in the
operations layer's shape `(ctx, caller, request) -> result` and its protocol: decide (the
policy, default deny), record (one ledger entry per request), then apply. They belong in
`joinedup/operations/`; they are here, behind `adapter`, until they move.

Tables of their own in the store: `referral_events` (a provider's answer and the outcomes
it records, append-only) and `self_reported_barriers`.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from joinedup.service_context import (
    CollationInputError,
    NotFound,
    Refused,
    ServiceContext,
    now_iso,
    referral_resource,
)
from joinedup.users import User

TRIGGER_QUESTIONS_FILE = "trigger-questions.toml"
OUTCOMES_FILE = "outcomes.toml"
MAX_REASON = 500

DDL = ["""
CREATE TABLE IF NOT EXISTS referral_events (
    event_id VARCHAR PRIMARY KEY,
    referral_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,
    organisation VARCHAR NOT NULL,
    recorded_at VARCHAR NOT NULL
)""", """
CREATE TABLE IF NOT EXISTS self_reported_barriers (
    person_key VARCHAR NOT NULL,
    code VARCHAR NOT NULL,
    question_id VARCHAR NOT NULL,
    questions_version VARCHAR NOT NULL,
    recorded_by VARCHAR NOT NULL,
    organisation VARCHAR NOT NULL,
    recorded_at VARCHAR NOT NULL
)"""]  # referral_events.kind: accepted | declined | outcome; detail: JSON

_ready: set[int] = set()
_ready_lock = threading.Lock()


def _tables(ctx: ServiceContext) -> None:
    if id(ctx) in _ready:
        return
    with _ready_lock:
        with ctx.store(write=True) as cur:
            for statement in DDL:
                cur.execute(statement)
        _ready.add(id(ctx))


# -- configuration (versioned data, validated on load) ---------------------------------
class ConfigurationError(ValueError):
    pass


@dataclass(frozen=True)
class TriggerQuestions:
    version: str
    questions: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class OutcomeSchedule:
    version: str
    milestones: dict[str, dict[str, Any]]  # in order: job_start, sustained_13, ...


def _read_toml(path: Path) -> dict:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc


def load_trigger_questions(path: Path, barrier_codes: set[str]) -> TriggerQuestions:
    doc = _read_toml(path)
    if doc.get("schema_version") != 1:
        raise ConfigurationError(f"{path}: schema_version: must be 1")
    if not isinstance(doc.get("version"), str) or not doc["version"]:
        raise ConfigurationError(f"{path}: version: must be a non-empty string")
    questions = doc.get("questions")
    if not isinstance(questions, list) or not questions:
        raise ConfigurationError(f"{path}: questions: must list at least one question")
    seen: set[str] = set()
    for n, q in enumerate(questions, 1):
        where = f"{path}: questions[{n}]"
        for key in ("id", "text", "barrier"):
            if not isinstance(q.get(key), str) or not q[key].strip():
                raise ConfigurationError(f"{where}.{key}: must be a non-empty string")
        if q["barrier"] not in barrier_codes:
            raise ConfigurationError(f"{where}.barrier: {q['barrier']!r} is not in the taxonomy")
        if q["id"] in seen:
            raise ConfigurationError(f"{where}.id: {q['id']!r} is used twice")
        seen.add(q["id"])
    return TriggerQuestions(doc["version"], tuple(dict(q) for q in questions))


def load_outcome_schedule(path: Path) -> OutcomeSchedule:
    doc = _read_toml(path)
    if doc.get("schema_version") != 1:
        raise ConfigurationError(f"{path}: schema_version: must be 1")
    milestones = doc.get("milestones")
    if not isinstance(milestones, dict) or not milestones:
        raise ConfigurationError(f"{path}: milestones: must name at least one milestone")
    total = 0.0
    for name, m in milestones.items():
        share, weeks = m.get("share"), m.get("weeks_after_job_start")
        if not isinstance(m.get("title"), str) or not m["title"]:
            raise ConfigurationError(f"{path}: milestones.{name}.title: must be a string")
        if not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ConfigurationError(f"{path}: milestones.{name}.share: must be from 0 to 1")
        if not isinstance(weeks, int) or weeks < 0:
            raise ConfigurationError(
                f"{path}: milestones.{name}.weeks_after_job_start: must be a whole number >= 0")
        total += share
    if abs(total - 1.0) > 1e-9:
        raise ConfigurationError(f"{path}: milestones: shares add up to {total}, not 1")
    ordered = dict(sorted(milestones.items(), key=lambda kv: kv[1]["weeks_after_job_start"]))
    return OutcomeSchedule(str(doc.get("version", "")), ordered)


def trigger_questions(ctx: ServiceContext) -> TriggerQuestions:
    from joinedup.collate import load_collation_taxonomy

    codes = set(load_collation_taxonomy(ctx.home).barriers)
    return load_trigger_questions(ctx.home.config_file(TRIGGER_QUESTIONS_FILE), codes)


def outcome_schedule(ctx: ServiceContext) -> OutcomeSchedule:
    return load_outcome_schedule(ctx.home.config_file(OUTCOMES_FILE))


_policy_data: dict[str, dict] = {}


def policy_data(ctx: ServiceContext) -> dict:
    """The policy bundle's data documents (roles, organisations, agreements: configuration)."""
    key = str(ctx.home.root)
    if key not in _policy_data:
        from policies import load_bundle

        data_dir = ctx.home.config_dir / "policy"
        bundle = load_bundle(data_dir=data_dir if data_dir.is_dir() else None)
        _policy_data[key] = {**bundle.data, "revision": bundle.revision}
    return _policy_data[key]


# -- page access --------------------------------------------------------------------------
def role_may(ctx: ServiceContext, caller: User, action: str) -> bool:
    """Whether the caller's role is granted the action at all (which pages to offer)."""
    role = policy_data(ctx).get("roles", {}).get(caller.role, {})
    return action in role.get("actions", [])


def refuse_page(ctx: ServiceContext, caller: User, action: str, purpose: str | None) -> None:
    """A page of an action the caller's role is not granted: the policy decides (and says
    why), the decision is recorded like the API's, and Refused is raised."""
    with ctx.one_entry():
        decision = ctx.decide(caller, action, {}, purpose=purpose)
    raise Refused(["This page is not for your role."], decision.decision_id)


def _guard_text(field: str, text: str) -> None:
    """Free text that goes to the ledger must not carry an identifier."""
    from audit.guard import scan_for_identifiers

    if scan_for_identifiers({field: text}):
        raise CollationInputError(
            f"{field}: looks like it contains an identifier (a postcode, NHS number or NI "
            "number); describe the reason without one")


# -- referrals: the provider's answer and outcomes ---------------------------------------
def _referral_for_provider(ctx: ServiceContext, caller: User, referral_id: str, action: str):
    """The referral, if it is addressed to the caller's organisation; else the policy has
    its say on an empty resource and NotFound (absent and not yours look the same)."""
    try:
        referral = ctx.get_referral(referral_id)
    except NotFound:
        referral = None
    if referral is None or referral.provider != caller.organisation:
        ctx.decide(caller, action, {"provider": caller.organisation, "referred_to": []},
                   purpose="employment_support")
        raise NotFound(f"no referral {referral_id} for {caller.organisation}")
    return referral


def referral_statuses(ctx: ServiceContext, referral_ids: list[str]) -> dict[str, dict]:
    """referral id -> {status, reason, outcomes: {milestone: date}} from its events."""
    _tables(ctx)
    if not referral_ids:
        return {}
    marks = ",".join("?" * len(referral_ids))
    with ctx.store() as cur:
        rows = cur.execute(
            f"SELECT referral_id, kind, detail, recorded_at FROM referral_events "
            f"WHERE referral_id IN ({marks}) ORDER BY recorded_at, event_id", referral_ids).fetchall()
    out: dict[str, dict] = {}
    for referral_id, kind, detail, at in rows:
        state = out.setdefault(referral_id, {"status": "new", "outcomes": {}})
        doc = json.loads(detail)
        if kind in ("accepted", "declined"):
            state.update(status=kind, reason=doc.get("reason"), answered_at=at)
        elif kind == "outcome":
            state["outcomes"][doc["milestone"]] = doc["date"]
    return out


def respond_to_referral(ctx: ServiceContext, caller: User, referral_id: str, accept: bool,
                        reason: str) -> dict:
    """A provider accepts or declines a referral addressed to it, with a reason (required
    to decline)."""
    reason = (reason or "").strip()
    with ctx.one_entry():
        referral = _referral_for_provider(ctx, caller, referral_id, "referral.respond")
        decision = ctx.decide(caller, "referral.respond", referral_resource(referral),
                              purpose=referral.purpose,
                              consent=ctx.consent_state(referral.person_key, referral.purpose))
        if not accept and not reason:
            raise CollationInputError("reason: say why the referral is declined")
        if len(reason) > MAX_REASON:
            raise CollationInputError(f"reason: at most {MAX_REASON} characters")
        if reason:
            _guard_text("reason", reason)
        current = referral_statuses(ctx, [referral_id]).get(referral_id, {"status": "new"})
        if current["status"] != "new":
            raise CollationInputError(f"referral: already {current['status']}")
        kind = "accepted" if accept else "declined"
        ctx.audit({"type": f"referral.{kind}", "actor": caller.subject(),
                   "referral_id": referral_id, "person_key": referral.person_key,
                   "provider": referral.provider, "decision_id": decision.decision_id,
                   **({"reason": reason} if reason else {})})
        _add_event(ctx, caller, referral_id, kind, {"reason": reason} if reason else {})
    return {"referral_id": referral_id, "status": kind}


def record_outcome(ctx: ServiceContext, caller: User, referral_id: str, milestone: str,
                   on: str) -> dict:
    """A provider records a job outcome of an accepted referral: milestones in order, each
    on or after the job start plus its weeks, never in the future."""
    schedule = outcome_schedule(ctx)
    with ctx.one_entry():
        referral = _referral_for_provider(ctx, caller, referral_id, "outcome.record")
        decision = ctx.decide(caller, "outcome.record", referral_resource(referral),
                              purpose=referral.purpose,
                              consent=ctx.consent_state(referral.person_key, referral.purpose))
        if milestone not in schedule.milestones:
            raise CollationInputError("milestone: choose one of the outcomes listed")
        try:
            when = date.fromisoformat(on)
        except (TypeError, ValueError) as exc:
            raise CollationInputError("date: enter a real date, for example 2026-03-27") from exc
        if when > date.today():
            raise CollationInputError("date: must be today or in the past")
        state = referral_statuses(ctx, [referral_id]).get(referral_id, {"status": "new",
                                                                        "outcomes": {}})
        if state["status"] != "accepted":
            raise CollationInputError("referral: accept the referral before recording outcomes")
        if milestone in state["outcomes"]:
            raise CollationInputError(f"milestone: {milestone} is already recorded")
        names = list(schedule.milestones)
        earlier = names[: names.index(milestone)]
        missing = [m for m in earlier if m not in state["outcomes"]]
        if missing:
            raise CollationInputError(f"milestone: record {missing[0]} first")
        if earlier:
            start = date.fromisoformat(state["outcomes"][names[0]])
            weeks = schedule.milestones[milestone]["weeks_after_job_start"]
            if when < start + timedelta(weeks=weeks):
                raise CollationInputError(
                    f"date: must be at least {weeks} weeks after the job start ({start})")
        share = schedule.milestones[milestone]["share"]
        ctx.audit({"type": "outcome.recorded", "actor": caller.subject(),
                   "referral_id": referral_id, "person_key": referral.person_key,
                   "provider": referral.provider, "milestone": milestone, "date": when.isoformat(),
                   "share": share, "outcomes_version": schedule.version,
                   "decision_id": decision.decision_id})
        _add_event(ctx, caller, referral_id, "outcome",
                   {"milestone": milestone, "date": when.isoformat()})
    return {"referral_id": referral_id, "milestone": milestone, "date": when.isoformat()}


def _add_event(ctx: ServiceContext, caller: User, referral_id: str, kind: str, detail: dict) -> None:
    _tables(ctx)
    with ctx.store(write=True) as cur:
        cur.execute("INSERT INTO referral_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [f"rev-{uuid.uuid4().hex}", referral_id, kind, json.dumps(detail), caller.id,
                     caller.organisation, now_iso()])


def caseload(ctx: ServiceContext, caller: User) -> list[dict]:
    """The referrals this adviser made, with their status (no barrier in the list)."""
    with ctx.one_entry():
        ctx.decide(caller, "referral.track", {}, purpose="employment_support")
        with ctx.store() as cur:
            rows = cur.execute(
                "SELECT referral_id, provider, created_at FROM referrals WHERE created_by = ? "
                "ORDER BY created_at DESC, referral_id", [caller.id]).fetchall()
    statuses = referral_statuses(ctx, [r[0] for r in rows])
    return [{"referral_id": r[0], "provider": r[1], "created_at": r[2],
             **statuses.get(r[0], {"status": "new", "outcomes": {}})} for r in rows]


# -- self-reported barriers -------------------------------------------------------------
def record_self_reported(ctx: ServiceContext, caller: User, identifiers: dict,
                         question_ids: list[str]) -> dict:
    """Barriers the person reports in answer to the trigger questions, recorded as such."""
    questions = trigger_questions(ctx)
    by_id = {q["id"]: q for q in questions.questions}
    unknown = [q for q in question_ids if q not in by_id]
    if unknown or not question_ids:
        raise CollationInputError("questions: choose at least one answer that applies")
    codes = sorted({by_id[q]["barrier"] for q in question_ids})
    with ctx.one_entry():
        person_key = ctx.person_key(identifiers)
        decision = ctx.decide(caller, "barrier.self_report",
                              {"person_key": person_key, "categories": codes},
                              purpose="employment_support",
                              consent=ctx.consent_state(person_key, "employment_support"))
        ctx.audit({"type": "barrier.self_reported", "actor": caller.subject(),
                   "person_key": person_key, "categories": codes,
                   "questions_version": questions.version, "decision_id": decision.decision_id})
        _tables(ctx)
        at = now_iso()
        with ctx.store(write=True) as cur:
            for q in question_ids:
                cur.execute("INSERT INTO self_reported_barriers VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [person_key, by_id[q]["barrier"], q, questions.version, caller.id,
                             caller.organisation, at])
    return {"categories": codes}


def self_reported(ctx: ServiceContext, person_key: str) -> list[dict]:
    """The person's self-reported barriers (read only inside an allowed summary request)."""
    _tables(ctx)
    with ctx.store() as cur:
        rows = cur.execute(
            "SELECT code, question_id, max(recorded_at) FROM self_reported_barriers WHERE person_key = ? "
            "GROUP BY code, question_id ORDER BY code", [person_key]).fetchall()
    return [{"code": r[0], "question_id": r[1], "reported_at": r[2]} for r in rows]


# -- governance ---------------------------------------------------------------------------
def _suppress(count: int, threshold: int, base: int) -> int | None:
    """None = suppressed (1..threshold-1); else rounded to the base (0 stays 0)."""
    if 0 < count < threshold:
        return None
    return int(base * round(count / base)) if count else 0


def outcomes_by_provider(ctx: ServiceContext, caller: User) -> dict:
    """Outcomes recorded by each provider, by milestone, with small numbers suppressed and
    the rest rounded (the disclosure settings of the policy data); no totals, so no
    suppressed cell can be worked out."""
    schedule = outcome_schedule(ctx)
    disclosure = policy_data(ctx).get("disclosure", {})
    threshold = int(disclosure.get("suppression_threshold", 8))
    base = int(disclosure.get("rounding_base", 5))
    _tables(ctx)
    with ctx.one_entry():
        decision = ctx.decide(caller, "audit.report.read", {}, purpose="oversight")
        with ctx.store() as cur:
            rows = cur.execute(
                "SELECT organisation, json_extract_string(detail, '$.milestone') AS m, count(*) "
                "FROM referral_events WHERE kind = 'outcome' GROUP BY organisation, m"
            ).fetchall()
            referred = cur.execute(
                "SELECT provider, count(*) FROM referrals GROUP BY provider").fetchall()
        counts: dict[str, dict[str, int]] = {}
        for provider, _ in referred:
            counts.setdefault(provider, {})
        for org, milestone, n in rows:
            counts.setdefault(org, {})[milestone] = n
        referred_n = dict(referred)
        table = []
        suppressed = 0
        for provider in sorted(counts):
            row: dict[str, Any] = {"provider": provider,
                                   "referrals": _suppress(referred_n.get(provider, 0), threshold, base)}
            for m in schedule.milestones:
                row[m] = _suppress(counts[provider].get(m, 0), threshold, base)
            suppressed += sum(1 for k, v in row.items() if k != "provider" and v is None)
            table.append(row)
        ctx.audit({"type": "outcomes.disclosed", "actor": caller.subject(),
                   "decision_id": decision.decision_id, "purpose": "oversight",
                   "providers": len(table), "suppressed": suppressed})
    return {"columns": ["referrals", *schedule.milestones],
            "titles": {m: v["title"] for m, v in schedule.milestones.items()},
            "rows": table, "suppression_threshold": threshold, "rounding_base": base,
            "suppressed": suppressed}


def find_decision(ctx: ServiceContext, caller: User, decision_id: str) -> dict:
    """A recorded policy decision by its id: input hash, bundle revision, result, reasons."""
    from audit.report import decisions_in

    with ctx.one_entry():
        ctx.decide(caller, "audit.report.read", {}, purpose="oversight")
        for event in ctx.ledger.events():
            for d in decisions_in(event):
                if d.get("decision_id") == decision_id:
                    actor = event.get("actor") or {}
                    return {"decision_id": decision_id, "event_id": event.get("event_id"),
                            "event_type": event.get("type"),
                            "time": d.get("time") or d.get("decided_at") or event.get("time"),
                            "role": actor.get("role"), "organisation": actor.get("organisation"),
                            "action": d.get("action"), "purpose": d.get("purpose"),
                            "allow": d.get("allow"), "reasons": d.get("reasons") or [],
                            "obligations": d.get("obligations") or {},
                            "bundle_revision": d.get("bundle_revision"),
                            "input_hash": d.get("input_hash")}
    raise NotFound(f"no decision {decision_id} in the ledger")


def ledger_status(ctx: ServiceContext, caller: User) -> dict:
    """Whether the ledger verifies, its last signed checkpoint, and the witness."""
    with ctx.one_entry():
        ctx.decide(caller, "audit.verify", {}, purpose="oversight")
        verified = ctx.verify_ledger()
        checkpoints = ctx.ledger.checkpoints()
    witness = (ctx.home.settings.get("audit") or {}).get("witness")
    return {"verification": verified, "entries": ctx.ledger.size,
            "last_checkpoint": checkpoints[-1] if checkpoints else None,
            "checkpoints": len(checkpoints), "witness": witness}


def policy_register(ctx: ServiceContext, caller: User) -> dict:
    """The data-sharing agreements and the versions of everything the board approves."""
    from joinedup.collate import load_collation_taxonomy

    with ctx.one_entry():
        ctx.decide(caller, "audit.report.read", {}, purpose="oversight")
    data = policy_data(ctx)
    return {
        "agreements": data.get("agreements", {}),
        "versions": {
            "policy bundle revision": ctx.policy.bundle_revision,
            "barrier taxonomy": load_collation_taxonomy(ctx.home).version,
            "consent catalogue": ctx.consent.catalogue.version,
            "privacy notice": ctx.consent.catalogue.privacy_notice_version,
            "trigger questions": trigger_questions(ctx).version,
            "outcome milestones": outcome_schedule(ctx).version,
        },
    }


# -- data officer -------------------------------------------------------------------------
def link_runs(ctx: ServiceContext, caller: User) -> dict:
    """Every link run in the home, its summary, and which one is current."""
    with ctx.one_entry():
        ctx.decide(caller, "linkage.report.read", {}, purpose="linkage_operations")
    runs_dir = ctx.home.runs_dir
    marker = runs_dir / "CURRENT"
    current = marker.read_text().strip() if marker.exists() else None
    runs = []
    for run in sorted(p for p in runs_dir.glob("*") if p.is_dir()) if runs_dir.is_dir() else []:
        summary_path = run / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        runs.append({"run": run.name, "current": run.name == current,
                     "status": "complete" if (run / "entities.parquet").exists() else "incomplete",
                     "summary": summary,
                     "finished": summary.get("finished_at") or summary.get("created_at")})
    return {"current": current, "runs": runs}


def _run_dir(ctx: ServiceContext, name: str) -> Path:
    run = ctx.home.runs_dir / name
    if not name or "/" in name or name.startswith(".") or not (run / "entities.parquet").exists():
        raise NotFound(f"no complete link run {name!r}")
    return run


def run_changes(ctx: ServiceContext, caller: User, before: str, after: str) -> dict:
    """Which entities changed between two runs: kept, merged, split, new, gone (by their
    records' (source, ref) membership; entity ids are pseudonymous)."""
    import pyarrow.parquet as pq

    with ctx.one_entry():
        ctx.decide(caller, "linkage.report.read", {}, purpose="linkage_operations")
    members: list[dict[str, frozenset]] = []
    for name in (before, after):
        table = pq.read_table(_run_dir(ctx, name) / "entities.parquet",
                              columns=["entity_id", "source", "ref"])
        groups: dict[str, set] = {}
        for e, s, r in zip(*(table.column(c).to_pylist() for c in ("entity_id", "source", "ref")),
                           strict=True):
            groups.setdefault(e, set()).add((s, r))
        members.append({e: frozenset(m) for e, m in groups.items()})
    old, new = members
    old_of = {rec: e for e, m in old.items() for rec in m}
    old_sets = set(old.values())
    changes = {"unchanged": 0, "merged": 0, "split": 0, "new": 0, "changed": 0}
    examples: list[dict] = []
    for entity, recs in new.items():
        if recs in old_sets:
            changes["unchanged"] += 1
            continue
        sources = {old_of[r] for r in recs if r in old_of}
        if not sources:
            kind = "new"
        elif len(sources) > 1:
            kind = "merged"
        elif recs < old[next(iter(sources))]:
            kind = "split"
        else:
            kind = "changed"
        changes[kind] += 1
        if len(examples) < 50:
            examples.append({"entity_id": entity, "change": kind, "records": len(recs),
                             "from_entities": sorted(sources)[:5]})
    new_recs = {rec for m in new.values() for rec in m}
    gone = sum(1 for m in old.values() if not (m & new_recs))
    return {"before": before, "after": after, "entities_before": len(old),
            "entities_after": len(new), "gone": gone, **changes, "examples": examples}


def quality_report_html(ctx: ServiceContext, caller: User, run: str | None = None) -> str:
    with ctx.one_entry():
        ctx.decide(caller, "linkage.report.read", {}, purpose="linkage_operations")
    run_dir = _run_dir(ctx, run) if run else ctx.current_run_dir()
    report = run_dir / "report.html"
    if not report.exists():
        raise NotFound(f"run {run_dir.name} has no report")
    return report.read_text()
