"""Governance reports and subject access, computed from the ledger's events.

`build_report(ledger, from, to)` counts, over a period: accesses (disclosures) by role,
organisation and purpose and per day; policy decisions, denials and their reasons; consent
grants and withdrawals and what each withdrawal stopped (requests about that person denied
afterwards); link runs; extracts ingested; how many distinct people each organisation saw
summaries or referrals of. Everything is pseudonymous: person keys are counted, never shown.

`subject_access(ledger, person_key)` lists every disclosure (and the decisions and consent
events) about one person, for a citizen's subject access request.

Decisions: the service writes one ledger entry per request, so a decision is either a
`policy.decision` event or carried inside the request's other event (under `decision`, or
several under `decisions`); `decisions_in` finds both.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

DISCLOSURE_TYPES = ("summary.disclosed", "referral.created", "referral.read", "area_counts.disclosed")
PERSON_DISCLOSURE_TYPES = ("summary.disclosed", "referral.created", "referral.read")


class ReportError(ValueError):
    """A report period is invalid."""


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_bound(value: str | date | datetime | None, end: bool = False) -> datetime | None:
    """A period bound; a bare date as `to` means the end of that day."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = value.isoformat() if isinstance(value, date) else str(value)
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day + timedelta(days=1) if end else day
        return parse_time(text)
    except ValueError as exc:
        raise ReportError(f"not an ISO date or time: {value!r}") from exc


def _events_in(events: Iterable[dict], start: datetime | None, stop: datetime | None):
    for event in events:
        try:
            at = parse_time(event["time"])
        except (KeyError, TypeError, ValueError):
            continue
        if (start is None or at >= start) and (stop is None or at < stop):
            yield at, event


def _actor(event: dict) -> dict:
    actor = event.get("actor")
    return actor if isinstance(actor, dict) else {}


def mentions_person(value: Any, person_key: str) -> bool:
    """True if `person_key` appears as a person_key(s) field anywhere in the event."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "person_key" and item == person_key:
                return True
            if key == "person_keys" and isinstance(item, list) and person_key in item:
                return True
            if isinstance(item, (dict, list)) and mentions_person(item, person_key):
                return True
    elif isinstance(value, list):
        return any(mentions_person(item, person_key) for item in value)
    return False


def decisions_in(event: dict) -> list[dict]:
    """The policy decisions one event records (its own fields for `policy.decision`)."""
    found = [event] if event.get("type") == "policy.decision" else []
    if isinstance(event.get("decision"), dict):
        found.append(event["decision"])
    found.extend(d for d in event.get("decisions") or [] if isinstance(d, dict))
    return found


def build_report(ledger, from_: str | date | datetime | None, to: str | date | datetime | None) -> dict:
    """The governance report for events with from_ <= time < to (a bare date `to` is inclusive)."""
    start, stop = parse_bound(from_), parse_bound(to, end=True)
    if start and stop and stop <= start:
        raise ReportError(f"the period is empty: from {from_} to {to}")
    by_type: Counter[str] = Counter()
    access_by_role: Counter[str] = Counter()
    access_by_org: Counter[str] = Counter()
    access_by_purpose: Counter[str] = Counter()
    access_by_day: dict[str, Counter[str]] = defaultdict(Counter)
    decisions_by_action: dict[str, Counter[str]] = defaultdict(Counter)
    denial_reasons: Counter[str] = Counter()
    denials_by_org: Counter[str] = Counter()
    denials: list[dict] = []
    people_by_org: dict[str, set[str]] = defaultdict(set)
    consent_granted: Counter[str] = Counter()
    withdrawals: list[dict] = []
    withdrawn_people: dict[str, list[dict]] = defaultdict(list)
    link_runs: list[dict] = []
    ingests: Counter[str] = Counter()
    first = last = None

    for at, event in _events_in(ledger.events(), start, stop):
        etype = event.get("type", "?")
        actor = _actor(event)
        role, org = actor.get("role", "?"), actor.get("organisation", "?")
        first = first or at
        last = at
        by_type[etype] += 1
        if etype in DISCLOSURE_TYPES:
            access_by_role[role] += 1
            access_by_org[org] += 1
            access_by_purpose[event.get("purpose") or "unstated"] += 1
            access_by_day[at.date().isoformat()][etype] += 1
            if etype in PERSON_DISCLOSURE_TYPES and isinstance(event.get("person_key"), str):
                people_by_org[org].add(event["person_key"])
        for decision in decisions_in(event):
            allowed = decision.get("allow") is True
            action = decision.get("action") or "?"
            decisions_by_action[action]["allowed" if allowed else "denied"] += 1
            if not allowed:
                reasons = [str(r) for r in decision.get("reasons") or []] or ["(no reason given)"]
                denial_reasons.update(reasons)
                denials_by_org[org] += 1
                denials.append({
                    "time": event["time"], "event_id": event.get("event_id"),
                    "role": role, "organisation": org, "action": action,
                    "purpose": decision.get("purpose"), "reasons": reasons,
                    "decision_id": decision.get("decision_id"),
                })  # fmt: skip
                person = decision.get("person_key") or event.get("person_key")
                for withdrawal in withdrawn_people.get(person, []) if person else []:
                    withdrawal["stopped"].append({
                        "time": event["time"], "action": action,
                        "organisation": org, "decision_id": decision.get("decision_id"),
                    })  # fmt: skip
        if etype == "consent.granted":
            for purpose in event.get("purposes") or [event.get("purpose") or "unstated"]:
                consent_granted[str(purpose)] += 1
        elif etype == "consent.withdrawn":
            withdrawal = {
                "time": event["time"], "event_id": event.get("event_id"),
                "receipt_id": event.get("receipt_id"), "organisation": org, "stopped": [],
            }  # fmt: skip
            withdrawals.append(withdrawal)
            if isinstance(event.get("person_key"), str):
                withdrawn_people[event["person_key"]].append(withdrawal)
        elif etype == "linkage.run":
            link_runs.append({
                k: v for k, v in event.items()
                if k not in ("actor", "type") and not isinstance(v, (dict, list))
            } | {"organisation": org})  # fmt: skip
        elif etype == "extract.ingested":
            ingests[str(event.get("source") or event.get("kind") or "?")] += 1

    for withdrawal in withdrawals:
        withdrawal["requests_stopped"] = len(withdrawal["stopped"])
    return {
        "period": {
            "from": start.isoformat() if start else None,
            "to": stop.isoformat() if stop else None,
            "first_event": first.isoformat() if first else None,
            "last_event": last.isoformat() if last else None,
        },
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": sum(by_type.values()),
        "events_by_type": dict(sorted(by_type.items())),
        "accesses": {
            "total": sum(access_by_org.values()),
            "by_role": dict(access_by_role.most_common()),
            "by_organisation": dict(access_by_org.most_common()),
            "by_purpose": dict(access_by_purpose.most_common()),
            "by_day": {day: dict(c) for day, c in sorted(access_by_day.items())},
        },
        "decisions": {
            "by_action": {a: dict(c) for a, c in sorted(decisions_by_action.items())},
            "allowed": sum(c["allowed"] for c in decisions_by_action.values()),
            "denied": sum(c["denied"] for c in decisions_by_action.values()),
        },
        "denials": {
            "total": len(denials),
            "by_reason": dict(denial_reasons.most_common()),
            "by_organisation": dict(denials_by_org.most_common()),
            "recent": denials[-50:],
        },
        "consent": {
            "granted_by_purpose": dict(consent_granted.most_common()),
            "withdrawn": len(withdrawals),
            "withdrawals": withdrawals,
        },
        "link_runs": link_runs,
        "extracts_ingested_by_source": dict(sorted(ingests.items())),
        "people_seen_by_organisation": {
            org: len(keys) for org, keys in sorted(people_by_org.items())
        },
    }


def subject_access(ledger, person_key: str) -> dict:
    """Every event about one person: the disclosures first, then decisions and consent."""
    disclosures, other = [], []
    for event in ledger.events():
        if not mentions_person(event, person_key):
            continue
        (disclosures if event.get("type") in PERSON_DISCLOSURE_TYPES else other).append(event)
    return {
        "person_key": person_key,
        "disclosures": disclosures,
        "other_events": other,
        "summary": {
            "disclosures": len(disclosures),
            "organisations": sorted({_actor(e).get("organisation", "?") for e in disclosures}),
        },
    }
