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

import threading
import weakref
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

DISCLOSURE_TYPES = ("summary.disclosed", "referral.created", "referral.read", "area_counts.disclosed")
PERSON_DISCLOSURE_TYPES = ("summary.disclosed", "referral.created", "referral.read")
RECENT_DENIALS = 50  # the denials the report lists one by one (the latest)


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
    fold = _ReportFold()
    for at, event in _events_in(ledger.events(), start, stop):
        fold.add(at, event)
    return fold.report(start, stop)


class _ReportFold:
    """The report's counts, folded one event at a time in ledger order (the order matters:
    a denial counts as stopped by the withdrawals recorded before it)."""

    def __init__(self) -> None:
        self.by_type: Counter[str] = Counter()
        self.access_by_role: Counter[str] = Counter()
        self.access_by_org: Counter[str] = Counter()
        self.access_by_purpose: Counter[str] = Counter()
        self.access_by_day: dict[str, Counter[str]] = defaultdict(Counter)
        self.decisions_by_action: dict[str, Counter[str]] = defaultdict(Counter)
        self.denial_reasons: Counter[str] = Counter()
        self.denials_by_org: Counter[str] = Counter()
        self.denials = 0
        self.recent_denials: deque[dict] = deque(maxlen=RECENT_DENIALS)
        self.people_by_org: dict[str, set[str]] = defaultdict(set)
        self.consent_granted: Counter[str] = Counter()
        self.withdrawals: list[dict] = []
        self.withdrawn_people: dict[str, list[dict]] = defaultdict(list)
        self.link_runs: list[dict] = []
        self.ingests: Counter[str] = Counter()
        self.first: datetime | None = None
        self.last: datetime | None = None

    def add(self, at: datetime, event: dict) -> None:
        etype = event.get("type", "?")
        actor = _actor(event)
        role, org = actor.get("role", "?"), actor.get("organisation", "?")
        self.first = self.first or at
        self.last = at
        self.by_type[etype] += 1
        if etype in DISCLOSURE_TYPES:
            self.access_by_role[role] += 1
            self.access_by_org[org] += 1
            self.access_by_purpose[event.get("purpose") or "unstated"] += 1
            self.access_by_day[at.date().isoformat()][etype] += 1
            if etype in PERSON_DISCLOSURE_TYPES and isinstance(event.get("person_key"), str):
                self.people_by_org[org].add(event["person_key"])
        for decision in decisions_in(event):
            allowed = decision.get("allow") is True
            action = decision.get("action") or "?"
            self.decisions_by_action[action]["allowed" if allowed else "denied"] += 1
            if not allowed:
                reasons = [str(r) for r in decision.get("reasons") or []] or ["(no reason given)"]
                self.denial_reasons.update(reasons)
                self.denials_by_org[org] += 1
                self.denials += 1
                self.recent_denials.append({
                    "time": event["time"], "event_id": event.get("event_id"),
                    "role": role, "organisation": org, "action": action,
                    "purpose": decision.get("purpose"), "reasons": reasons,
                    "decision_id": decision.get("decision_id"),
                })  # fmt: skip
                person = decision.get("person_key") or event.get("person_key")
                for withdrawal in self.withdrawn_people.get(person, []) if person else []:
                    withdrawal["stopped"].append({
                        "time": event["time"], "action": action,
                        "organisation": org, "decision_id": decision.get("decision_id"),
                    })  # fmt: skip
        if etype == "consent.granted":
            for purpose in event.get("purposes") or [event.get("purpose") or "unstated"]:
                self.consent_granted[str(purpose)] += 1
        elif etype == "consent.withdrawn":
            withdrawal = {
                "time": event["time"], "event_id": event.get("event_id"),
                "receipt_id": event.get("receipt_id"), "organisation": org, "stopped": [],
            }  # fmt: skip
            self.withdrawals.append(withdrawal)
            if isinstance(event.get("person_key"), str):
                self.withdrawn_people[event["person_key"]].append(withdrawal)
        elif etype == "linkage.run":
            self.link_runs.append({
                k: v for k, v in event.items()
                if k not in ("actor", "type") and not isinstance(v, (dict, list))
            } | {"organisation": org})  # fmt: skip
        elif etype == "extract.ingested":
            self.ingests[str(event.get("source") or event.get("kind") or "?")] += 1

    def report(self, start: datetime | None, stop: datetime | None) -> dict:
        """The report as it stands (new containers: later folds do not change it)."""
        withdrawals = [{**w, "stopped": list(w["stopped"]), "requests_stopped": len(w["stopped"])}
                       for w in self.withdrawals]
        decisions = self.decisions_by_action
        return {
            "period": {
                "from": start.isoformat() if start else None,
                "to": stop.isoformat() if stop else None,
                "first_event": self.first.isoformat() if self.first else None,
                "last_event": self.last.isoformat() if self.last else None,
            },
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "events": sum(self.by_type.values()),
            "events_by_type": dict(sorted(self.by_type.items())),
            "accesses": {
                "total": sum(self.access_by_org.values()),
                "by_role": dict(self.access_by_role.most_common()),
                "by_organisation": dict(self.access_by_org.most_common()),
                "by_purpose": dict(self.access_by_purpose.most_common()),
                "by_day": {day: dict(c) for day, c in sorted(self.access_by_day.items())},
            },
            "decisions": {
                "by_action": {a: dict(c) for a, c in sorted(decisions.items())},
                "allowed": sum(c["allowed"] for c in decisions.values()),
                "denied": sum(c["denied"] for c in decisions.values()),
            },
            "denials": {
                "total": self.denials,
                "by_reason": dict(self.denial_reasons.most_common()),
                "by_organisation": dict(self.denials_by_org.most_common()),
                "recent": [{**d, "reasons": list(d["reasons"])} for d in self.recent_denials],
            },
            "consent": {
                "granted_by_purpose": dict(self.consent_granted.most_common()),
                "withdrawn": len(withdrawals),
                "withdrawals": withdrawals,
            },
            "link_runs": [dict(r) for r in self.link_runs],
            "extracts_ingested_by_source": dict(sorted(self.ingests.items())),
            "people_seen_by_organisation": {
                org: len(keys) for org, keys in sorted(self.people_by_org.items())
            },
        }


class ReportIndex:
    """The whole-ledger report (no period), kept up to date as entries are appended: each
    call folds only the entries added since the last one, so its cost does not grow with
    the ledger. The report reads the entries as recorded; whether they are still what was
    recorded is what `verify` checks. If the ledger no longer holds the last entry folded
    at its position (cut, or replaced), everything is folded again."""

    def __init__(self) -> None:
        self._fold = _ReportFold()
        self._folded = 0  # entries of the ledger folded so far
        self._last_id: str | None = None
        self._lock = threading.Lock()

    def catch_up(self, ledger) -> None:
        """Fold the entries appended since the last call."""
        with self._lock:
            self._catch_up(ledger)

    def report(self, ledger) -> dict:
        with self._lock:
            self._catch_up(ledger)
            return self._fold.report(None, None)

    def _catch_up(self, ledger) -> None:
        if self._folded and not self._still_there(ledger):
            self._fold, self._folded, self._last_id = _ReportFold(), 0, None
        for event in ledger.events(self._folded):
            self._folded += 1
            self._last_id = event.get("event_id")
            try:
                at = parse_time(event["time"])
            except (KeyError, TypeError, ValueError):
                continue  # as build_report: an entry without a time is in no period
            self._fold.add(at, event)

    def _still_there(self, ledger) -> bool:
        if len(ledger) < self._folded or self._last_id is None:
            return False
        try:
            return ledger.get(self._last_id).get("event_id") == self._last_id
        except Exception:  # noqa: BLE001 - not there, in whatever way: fold again
            return False


_indexes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def report_index(ledger) -> ReportIndex:
    """This process's ReportIndex of a ledger (one per open Ledger object)."""
    with _indexes_lock:
        index = _indexes.get(ledger)
        if index is None:
            index = _indexes[ledger] = ReportIndex()
        return index


def whole_ledger_report(ledger) -> dict:
    """`build_report(ledger, None, None)`, from this process's ReportIndex of the ledger."""
    return report_index(ledger).report(ledger)


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
