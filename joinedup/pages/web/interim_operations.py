"""Operations the web pages need that `joinedup.operations` has no function for yet, in its
shape `(ctx, caller, request) -> result` and with its `Action` protocol: decide (the
policy, default deny), record (the one ledger entry), then apply (idempotently, keyed by
the event id). They belong in `joinedup/operations/`; they are here, behind `adapter`,
until they move.

Tables of their own in the store: `referral_events` (a provider's answer and the outcomes
it records, append-only) and `self_reported_barriers`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from joinedup.errors import InvalidInput, NotFound, Refused, Withheld
from joinedup.operations.protocol import Action, may_know_person
from joinedup.operations.referrals import find_referral
from joinedup.service_context import ServiceContext, now_iso
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
    event_id VARCHAR NOT NULL,
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
# id(ctx) -> (store write generation, what the pages read of these tables): read again only
# after a write to the store by any process, so a page costs no store open in between.
_snapshots: dict[int, tuple[int, dict]] = {}


def _tables(ctx: ServiceContext) -> None:
    if id(ctx) in _ready:
        return
    with _ready_lock:
        with ctx.store() as cur:  # creating a table changes nothing anyone caches: no bump
            for statement in DDL:
                cur.execute(statement)
        _ready.add(id(ctx))


def _generation(ctx: ServiceContext) -> int | None:
    gate = getattr(ctx, "_gate", None)
    return gate.generation() if gate is not None else None


def _snapshot(ctx: ServiceContext) -> dict:
    """The referral events, self-reported barriers and referral owners, as of the store's
    current write generation."""
    _tables(ctx)
    generation = _generation(ctx)
    cached = _snapshots.get(id(ctx))
    if generation is not None and cached is not None and cached[0] == generation:
        return cached[1]
    with ctx.store() as cur:
        generation = _generation(ctx)
        events = cur.execute("SELECT referral_id, kind, detail, recorded_at, organisation "
                             "FROM referral_events ORDER BY recorded_at, event_id").fetchall()
        reports = cur.execute("SELECT person_key, code, question_id, recorded_at "
                              "FROM self_reported_barriers ORDER BY code, question_id").fetchall()
        referrals = cur.execute("SELECT referral_id, provider, created_at, created_by "
                                "FROM referrals ORDER BY created_at DESC, referral_id").fetchall()
    data: dict = {"events": {}, "self_reported": {}, "made_by": {}, "referred": {}}
    for referral_id, kind, detail, at, org in events:
        data["events"].setdefault(referral_id, []).append((kind, json.loads(detail), at, org))
    for person_key, code, question_id, at in reports:
        data["self_reported"].setdefault(person_key, {})[(code, question_id)] = at
    for referral_id, provider, created_at, created_by in referrals:
        data["made_by"].setdefault(created_by, []).append((referral_id, provider, created_at))
        data["referred"][provider] = data["referred"].get(provider, 0) + 1
    if generation is not None:
        _snapshots[id(ctx)] = (generation, data)
    return data


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
    """A page of an action the caller's role is not granted: the policy decides on an empty
    resource (no person: its reasons are about the role), the refusal is recorded as the
    API's is, and Refused is raised."""
    with Action(ctx, caller, action, purpose=purpose) as act:
        decision = act.decide({}, reveal=True)
        raise Refused(["This page is not for your role."], decision.decision_id)


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", [(field, message)])


# -- referrals: the provider's answer and outcomes ---------------------------------------
def _provider_referral(ctx: ServiceContext, act: Action, referral_id: str):
    """The referral if it is addressed to the caller's organisation, decided; else the
    policy has its say on an empty resource and the answer is Withheld (absent and "not
    yours" look the same). A provider never hears why (consent status is not its to know)."""
    act.check_text({"referral_id": referral_id})
    act.consent = {"status": "unknown", "controllers": []}
    referral = find_referral(ctx, referral_id)
    if referral is None or referral.provider != act.caller.organisation:
        act.decide({"provider": act.caller.organisation, "referred_to": []},
                   purpose="employment_support", reveal=False)
        raise Withheld(act.decisions[-1].decision_id)
    decision = act.decide(referral.resource(), purpose=referral.purpose, reveal=False,
                          consent=ctx.consent.current(referral.person_key, referral.purpose,
                                                      now_iso()))
    return referral, decision


def referral_statuses(ctx: ServiceContext, referral_ids: list[str]) -> dict[str, dict]:
    """referral id -> {status, reason, outcomes: {milestone: date}} from its events."""
    events = _snapshot(ctx)["events"]
    out: dict[str, dict] = {}
    for referral_id in referral_ids:
        for kind, doc, at, _ in events.get(referral_id, []):
            state = out.setdefault(referral_id, {"status": "new", "outcomes": {}})
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
    with Action(ctx, caller, "referral.respond", purpose="employment_support") as act:
        act.check_text({"reason": reason})
        referral, _ = _provider_referral(ctx, act, referral_id)
        if not accept and not reason:
            raise _invalid("reason", "say why the referral is declined")
        if len(reason) > MAX_REASON:
            raise _invalid("reason", f"at most {MAX_REASON} characters")
        current = referral_statuses(ctx, [referral_id]).get(referral_id, {"status": "new"})
        if current["status"] != "new":
            raise _invalid("referral", f"already {current['status']}")
        kind = "accepted" if accept else "declined"
        detail = {"reason": reason} if reason else {}
        event_id = act.record({"type": f"referral.{kind}", "referral_id": referral_id,
                               "person_key": referral.person_key,
                               "provider": referral.provider, **detail})
        _apply_event(ctx, caller, event_id, referral_id, kind, detail)
    return {"referral_id": referral_id, "status": kind}


def record_outcome(ctx: ServiceContext, caller: User, referral_id: str, milestone: str,
                   on: str) -> dict:
    """A provider records a job outcome of an accepted referral: milestones in order, each
    on or after the job start plus its weeks, never in the future."""
    schedule = outcome_schedule(ctx)
    with Action(ctx, caller, "outcome.record", purpose="employment_support") as act:
        act.check_text({"milestone": milestone, "date": on})
        referral, _ = _provider_referral(ctx, act, referral_id)
        if milestone not in schedule.milestones:
            raise _invalid("milestone", "choose one of the outcomes listed")
        try:
            when = date.fromisoformat(on)
        except (TypeError, ValueError):
            raise _invalid("date", "enter a real date, for example 2026-03-27") from None
        if when > date.today():
            raise _invalid("date", "must be today or in the past")
        state = referral_statuses(ctx, [referral_id]).get(
            referral_id, {"status": "new", "outcomes": {}})
        if state["status"] != "accepted":
            raise _invalid("referral", "accept the referral before recording outcomes")
        if milestone in state["outcomes"]:
            raise _invalid("milestone", f"{milestone} is already recorded")
        names = list(schedule.milestones)
        earlier = names[: names.index(milestone)]
        missing = [m for m in earlier if m not in state["outcomes"]]
        if missing:
            raise _invalid("milestone", f"record {missing[0]} first")
        if earlier:
            start = date.fromisoformat(state["outcomes"][names[0]])
            weeks = schedule.milestones[milestone]["weeks_after_job_start"]
            if when < start + timedelta(weeks=weeks):
                raise _invalid("date", f"must be at least {weeks} weeks after the job start "
                                       f"({start})")
        detail = {"milestone": milestone, "date": when.isoformat()}
        event_id = act.record({"type": "outcome.recorded", "referral_id": referral_id,
                               "person_key": referral.person_key, "provider": referral.provider,
                               **detail, "share": schedule.milestones[milestone]["share"],
                               "outcomes_version": schedule.version})
        _apply_event(ctx, caller, event_id, referral_id, "outcome", detail)
    return {"referral_id": referral_id, **detail}


def _apply_event(ctx: ServiceContext, caller: User, event_id: str, referral_id: str,
                 kind: str, detail: dict) -> None:
    """Apply a recorded answer or outcome (idempotent: keyed by its ledger event id)."""
    _tables(ctx)
    with ctx.store(write=True) as cur:
        cur.execute("INSERT OR IGNORE INTO referral_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [event_id, referral_id, kind, json.dumps(detail), caller.id,
                     caller.organisation, now_iso()])


def payment_due(ctx: ServiceContext, summary: dict | None, status: dict) -> dict:
    """The outcome payment due on a referral: the tariff over the barriers referred (the
    summary's outcome payment) times the share of each milestone recorded."""
    schedule = outcome_schedule(ctx)
    total = float(((summary or {}).get("outcome_payment") or {}).get("total_gbp") or 0.0)
    rows = []
    for name, ms in schedule.milestones.items():
        done = status.get("outcomes", {}).get(name)
        rows.append({"milestone": name, "title": ms["title"], "share": ms["share"],
                     "recorded": done, "due_gbp": round(total * ms["share"], 2) if done else None})
    return {"total_gbp": total, "rows": rows, "schedule_version": schedule.version,
            "due_gbp": round(sum(r["due_gbp"] or 0.0 for r in rows), 2)}


def caseload(ctx: ServiceContext, caller: User) -> list[dict]:
    """The referrals this adviser made, with their status (no barrier in the list)."""
    with Action(ctx, caller, "referral.track", purpose="employment_support") as act:
        act.decide({})
        rows = _snapshot(ctx)["made_by"].get(caller.id, [])
    statuses = referral_statuses(ctx, [r[0] for r in rows])
    return [{"referral_id": r[0], "provider": r[1], "created_at": r[2],
             **statuses.get(r[0], {"status": "new", "outcomes": {}})} for r in rows]


# -- self-reported barriers ----------------------------------------------
def record_self_reported(ctx: ServiceContext, caller: User, identifiers: dict,
                         question_ids: list[str]) -> dict:
    """Barriers the person reports in answer to the trigger questions, recorded as such."""
    questions = trigger_questions(ctx)
    by_id = {q["id"]: q for q in questions.questions}
    with Action(ctx, caller, "barrier.self_report", purpose="employment_support") as act:
        act.check_text({"answers": list(question_ids)})
        if not question_ids or any(q not in by_id for q in question_ids):
            raise _invalid("questions", "choose at least one answer that applies")
        codes = sorted({by_id[q]["barrier"] for q in question_ids})
        person_key = ctx.person_key(identifiers)
        consent = ctx.consent.current(person_key, "employment_support", now_iso(),
                                      controller=caller.organisation)
        act.decide({"person_key": person_key, "categories": codes}, consent=consent,
                   reveal=may_know_person(caller, consent))
        event_id = act.record({"type": "barrier.self_reported", "person_key": person_key,
                               "categories": codes, "questions": sorted(set(question_ids)),
                               "questions_version": questions.version})
        _tables(ctx)
        with ctx.store(write=True) as cur:
            cur.execute("DELETE FROM self_reported_barriers WHERE event_id = ?", [event_id])
            for q in sorted(set(question_ids)):
                cur.execute("INSERT INTO self_reported_barriers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [event_id, person_key, by_id[q]["barrier"], q, questions.version,
                             caller.id, caller.organisation, now_iso()])
    return {"categories": codes}


def self_reported(ctx: ServiceContext, person_key: str) -> list[dict]:
    """The person's self-reported barriers (read only inside an allowed summary request)."""
    found = _snapshot(ctx)["self_reported"].get(person_key, {})
    return [{"code": code, "question_id": q, "reported_at": at}
            for (code, q), at in sorted(found.items())]


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
    with Action(ctx, caller, "audit.report.read", purpose="oversight") as act:
        act.decide({})
        snapshot = _snapshot(ctx)
        referred_n = snapshot["referred"]
        counts: dict[str, dict[str, int]] = {provider: {} for provider in referred_n}
        for events in snapshot["events"].values():
            for kind, doc, _, org in events:
                if kind == "outcome":
                    row = counts.setdefault(org, {})
                    row[doc["milestone"]] = row.get(doc["milestone"], 0) + 1
        table = []
        for provider in sorted(counts):
            row: dict[str, Any] = {"provider": provider,
                                   "referrals": _suppress(referred_n.get(provider, 0),
                                                          threshold, base)}
            for m in schedule.milestones:
                row[m] = _suppress(counts[provider].get(m, 0), threshold, base)
            table.append(row)
        suppressed = sum(1 for row in table for k, v in row.items()
                         if k != "provider" and v is None)
        act.record({"type": "outcomes.disclosed", "purpose": "oversight",
                    "providers": len(table), "suppressed": suppressed})
    return {"columns": ["referrals", *schedule.milestones],
            "titles": {m: v["title"] for m, v in schedule.milestones.items()},
            "rows": table, "suppression_threshold": threshold, "rounding_base": base,
            "suppressed": suppressed}


def find_decision(ctx: ServiceContext, caller: User, decision_id: str) -> dict:
    """A recorded policy decision by its id: input hash, bundle revision, result, reasons."""
    from audit.report import decisions_in

    with Action(ctx, caller, "audit.report.read", purpose="oversight") as act:
        act.check_text({"decision_id": decision_id})
        act.decide({})
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
                            "bundle_revision": d.get("bundle_revision"),
                            "input_hash": d.get("input_hash")}
        raise NotFound(f"no decision {decision_id} in the ledger")


def ledger_status(ctx: ServiceContext, caller: User) -> dict:
    """Whether the ledger verifies (the operation's verify), its last signed checkpoint, and
    the witness the checkpoints are also written to."""
    from joinedup.operations import audit as audit_ops

    verified = audit_ops.verify(ctx, caller)
    checkpoints = ctx.ledger.checkpoints()
    witness = getattr(ctx.ledger, "witness", None) or \
        (ctx.home.settings.get("audit") or {}).get("witness")
    return {"verification": verified, "entries": ctx.ledger.size,
            "last_checkpoint": checkpoints[-1] if checkpoints else None,
            "checkpoints": len(checkpoints), "witness": str(witness) if witness else None}


def policy_register(ctx: ServiceContext, caller: User) -> dict:
    """The data-sharing agreements and the versions of everything the board approves."""
    from joinedup.collate import load_collation_taxonomy

    with Action(ctx, caller, "audit.report.read", purpose="oversight") as act:
        act.decide({})
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
def _run_dir(ctx: ServiceContext, name: str) -> Path:
    run = ctx.home.runs_dir / name
    if not name or "/" in name or name.startswith(".") or not (run / "entities.parquet").exists():
        raise NotFound(f"no complete link run {name!r}")
    return run


def run_changes(ctx: ServiceContext, caller: User, before: str, after: str) -> dict:
    """Which entities changed between two runs: kept, merged, split, new, gone (by their
    records' (source, ref) membership; entity ids are pseudonymous)."""
    import pyarrow.parquet as pq

    with Action(ctx, caller, "linkage.report.read", purpose="linkage_operations") as act:
        act.decide({})
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
    """The linkage quality report (Splink's HTML) of a run, the current one by default."""
    if not run:
        from joinedup.operations import linkage as linkage_ops

        return linkage_ops.report_html(ctx, caller)
    with Action(ctx, caller, "linkage.report.read", purpose="linkage_operations") as act:
        act.decide({})
        report = _run_dir(ctx, run) / "report.html"
        if not report.exists():
            raise NotFound(f"run {run} has no report")
        return report.read_text()
