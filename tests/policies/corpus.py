"""A generated corpus of policy requests for engine parity: every role with every
organisation, every action and purpose, every consent state, category and source mixes,
every data-sharing agreement in and out of force, and malformed fields.

Half the corpus is built from valid requests of each kind (role x action x its purposes) with
one thing changed, so allowed decisions and every single reason for a refusal are well
represented; the other half draws every field at random from the lists below.
`coverage(corpus)` reports which values were used, for the test to check.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from policies.bundle import load_bundle

PERSON = "ab" * 32
OTHER = "cd" * 32
DATA = load_bundle().data
ROLES = sorted(DATA["roles"])
ORGANISATIONS = sorted(DATA["organisations"])
ACTIONS = sorted(DATA["actions"])
PURPOSES = sorted(DATA["purposes"])
CATEGORIES = sorted(DATA["categories"])
SOURCES = sorted(DATA["sources"])

# Times chosen around the agreements' spans (2025 pilot; 2026-2027 employment and planning).
TIMES = ["2026-11-22T10:00:00Z", "2026-01-01T00:00:00Z", "2027-12-31T23:59:59Z",
         "2025-06-01T09:00:00Z", "2025-12-31T23:59:59Z", "2028-01-01T00:00:00Z",
         "2024-06-01T00:00:00Z", "2026-11-22T11:30:00+01:00", "yesterday", None]
CONSENT_STATES = ["active", "active-past-expiry", "active-no-expiry", "active-bad-expiry",
                  "active-other-purpose", "active-no-purposes", "active-other-person",
                  "withdrawn", "expired", "none", "unknown-status", "no-status", "missing"]
CATEGORY_MIXES: list[Any] = [None, [], ["MH"], ["HOU"], ["MH", "SUB", "HOU"], ["FIN", "CAR", "WRK"],
                             ["OFF"], ["OFF", "XYZ"], ["MH", "MH"], CATEGORIES, "MH", {"a": "HOU"}]
SOURCE_MIXES: list[Any] = [None, [], ["dwp"], ["dwp", "nhs"], ["housing", "council"], ["probation"],
                           ["housing", "council", "probation"], SOURCES, "dwp"]
CONSENT_CATEGORY_MIXES: list[Any] = [
    ["dwp", "nhs", "council", "housing", "MH", "HOU", "FIN"], ["dwp", "council", "housing", "nhs", "MH", "HOU"],
    ["dwp", "SKL"], ["nhs", "MH", "PH", "DIS", "SUB"], [], ["HOU"], SOURCES + CATEGORIES,
    {"x": "HOU", "y": "dwp"}, "MH"]
PROVIDERS: list[Any] = [None, "provider-a", "provider-b", "provider-c", "provider-z", "csc-margate", 9, False]
REFERRED: list[Any] = [None, ["provider-a"], ["provider-b"], ["provider-a", "provider-b"], ["provider-c"], [],
                       "provider-a"]


def consent_for(state: str, rng: random.Random) -> dict | None:
    if state == "missing":
        return None
    consent: dict[str, Any] = {
        "status": "active", "purposes": ["employment_support"], "person_key": PERSON,
        "categories": copy.deepcopy(rng.choice(CONSENT_CATEGORY_MIXES)),
        "expires_at": rng.choice(["2027-06-01T00:00:00Z", "2029-01-01T00:00:00+00:00"]),
        "receipt_id": f"r-{rng.randrange(10**6)}",
    }
    changes = {
        "active-past-expiry": {"expires_at": "2026-01-01T00:00:00Z"},
        "active-bad-expiry": {"expires_at": rng.choice(["not a time", 12])},
        "active-other-purpose": {"purposes": ["service_planning"]},
        "active-other-person": {"person_key": OTHER},
        "withdrawn": {"status": "withdrawn"},
        "expired": {"status": "expired"},
        "none": {"status": "none"},
        "unknown-status": {"status": "maybe"},
    }
    consent.update(changes.get(state, {}))
    for key, state_dropping in (("expires_at", "active-no-expiry"), ("purposes", "active-no-purposes"),
                                ("status", "no-status")):
        if state == state_dropping:
            del consent[key]
    return consent


def subject_for(role: Any, organisation: Any, rng: random.Random) -> dict | None:
    subject: dict[str, Any] = {"id": f"u-{rng.randrange(1000)}", "role": role, "organisation": organisation}
    if role == "citizen":
        subject["person_key"] = rng.choice([PERSON, PERSON, OTHER])
    return subject


def valid_organisation(role: str) -> str:
    kinds = DATA["roles"][role]["organisation_kinds"]
    return next(o for o in ORGANISATIONS if DATA["organisations"][o]["kind"] in kinds)


def request_of(rng: random.Random, subject: Any, action: Any, purpose: Any, time: Any,
               consent_state: str, categories: Any, sources: Any, provider: Any, referred: Any,
               person_key: Any = PERSON) -> tuple[dict, dict[str, Any]]:
    """(request, the dimension values it used)."""
    resource = {"person_key": person_key, "categories": copy.deepcopy(categories),
                "sources": copy.deepcopy(sources), "provider": provider, "referred_to": copy.deepcopy(referred)}
    request: dict[str, Any] = {
        "subject": subject, "action": action, "purpose": purpose, "time": time,
        "resource": {k: v for k, v in resource.items() if v is not None},
        "consent": consent_for(consent_state, rng),
    }
    used = {"role": (subject or {}).get("role"), "organisation": (subject or {}).get("organisation"),
            "action": action, "purpose": purpose, "consent": consent_state, "time": time,
            "categories": repr(categories), "sources": repr(sources), "provider": repr(provider)}
    return {k: v for k, v in request.items() if v is not None}, used


def generate_corpus(n: int = 10_000, seed: int = 14) -> tuple[list[dict], list[dict[str, Any]]]:
    """n requests and, for each, the dimension values it used."""
    rng = random.Random(seed)
    requests, used = [], []
    # Valid kinds: every role with each action it may take, under each purpose allowing it.
    kinds = [(role, action, purpose) for role in ROLES for action in DATA["roles"][role]["actions"]
             for purpose in PURPOSES if action in DATA["purposes"][purpose]["actions"]]
    i = 0
    while len(requests) < n:
        i += 1
        if i % 2:
            role, action, purpose = kinds[i // 2 % len(kinds)]
            organisation = valid_organisation(role)
            if role == "provider":
                organisation = rng.choice(["provider-a", "provider-b", "provider-c"])
            subject = subject_for(role, organisation, rng)
            if role == "citizen":
                subject["person_key"] = PERSON
            args = dict(
                subject=subject, action=action, purpose=purpose,
                time=rng.choice(TIMES[:3]), consent_state="active",
                categories=rng.choice(CATEGORY_MIXES[:7]), sources=rng.choice(SOURCE_MIXES[:5]),
                provider=rng.choice(["provider-a", "provider-b"]), referred=[organisation])
            # Change one thing (or nothing), so each refusal appears alone.
            change = rng.randrange(10)
            if change == 1:
                args["consent_state"] = rng.choice(CONSENT_STATES)
            elif change == 2:
                args["time"] = rng.choice(TIMES)
            elif change == 3:
                args["subject"] = subject_for(role, rng.choice(ORGANISATIONS), rng)
            elif change == 4:
                args["purpose"] = rng.choice(PURPOSES + [None, "marketing"])
            elif change == 5:
                args["provider"] = rng.choice(PROVIDERS)
            elif change == 6:
                args["referred"] = rng.choice(REFERRED)
            elif change == 7:
                args["categories"] = rng.choice(CATEGORY_MIXES)
                args["sources"] = rng.choice(SOURCE_MIXES)
            elif change == 8:
                args["action"] = rng.choice(ACTIONS)
            request, values = request_of(rng, **args)
        else:
            role = rng.choice(ROLES + ["superuser", None, 7])
            organisation = rng.choice(ORGANISATIONS + ["acme", None, 5])
            subject = rng.choice([subject_for(role, organisation, rng)] * 9 + [None])
            if subject is not None and rng.random() < 0.05:
                subject.pop("id")
            request, values = request_of(
                rng, subject=subject, action=rng.choice(ACTIONS + ["summary.delete", 12, None]),
                purpose=rng.choice(PURPOSES + [None, "marketing", 3]), time=rng.choice(TIMES),
                consent_state=rng.choice(CONSENT_STATES), categories=rng.choice(CATEGORY_MIXES),
                sources=rng.choice(SOURCE_MIXES), provider=rng.choice(PROVIDERS),
                referred=rng.choice(REFERRED), person_key=rng.choice([PERSON, PERSON, OTHER, None, 42]))
        requests.append(request)
        used.append(values)
    return requests, used


def coverage(used: list[dict[str, Any]]) -> dict[str, set]:
    """The values each dimension took over the corpus."""
    seen: dict[str, set] = {}
    for values in used:
        for key, value in values.items():
            seen.setdefault(key, set()).add(value if isinstance(value, (str, int, type(None))) else repr(value))
    return seen
