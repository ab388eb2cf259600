"""A cheap guard that keeps raw identifiers and barrier content out of the ledger.

Events must carry pseudonymous ids only (person_key, entity_id, extract_id, ...). This is
not a proof of that, only a tripwire for the obvious mistakes: a key named like a raw
identifier or like barrier content, anywhere in the event, or a string value that looks
like a NINO, an NHS number (valid mod-11 check digit) or a full UK postcode.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

# Keys (compared lower-case, anywhere in the event) that name raw identifiers...
IDENTIFIER_KEYS = frozenset(
    {
        "name", "full_name", "given_name", "given_names", "first_name", "forename",
        "forenames", "middle_name", "middle_names", "family_name", "surname", "last_name",
        "dob", "date_of_birth", "birth_date", "nino", "ni_number",
        "national_insurance_number", "nhs_number", "nhs_no", "postcode", "post_code",
        "address", "address_line1", "address_line2", "street", "email", "phone",
        "telephone", "mobile",
    }
)  # fmt: skip
# ...or barrier content (the codes of categories *requested* are fine, under other keys).
CONTENT_KEYS = frozenset({"indicators", "barriers", "barrier_summary", "diagnosis", "ciphertext"})

NINO_RE = re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
NHS_RE = re.compile(r"\b(\d{3}) ?(\d{3}) ?(\d{4})\b")
POSTCODE_RE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2}\b")

KNOWN_TYPES = frozenset(
    {
        "extract.ingested", "linkage.run", "consent.granted", "consent.withdrawn",
        "policy.decision", "summary.disclosed", "referral.created", "referral.read",
        "area_counts.disclosed", "audit.verified", "user.added", "user.revoked",
    }
)  # fmt: skip
TYPE_RE = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$")


class EventRejected(ValueError):
    """An event is malformed or looks like it carries a raw identifier or barrier content."""


def _nhs_check_digit_ok(digits: str) -> bool:
    total = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9]))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def _scan_string(path: str, value: str) -> None:
    if NINO_RE.search(value):
        raise EventRejected(f"event field {path}: value looks like a National Insurance number")
    for match in NHS_RE.finditer(value):
        if _nhs_check_digit_ok("".join(match.groups())):
            raise EventRejected(f"event field {path}: value looks like an NHS number")
    if POSTCODE_RE.search(value):
        raise EventRejected(f"event field {path}: value looks like a postcode")


def _scan(path: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EventRejected(f"event field {path}: keys must be strings, got {key!r}")
            lowered = key.lower()
            where = f"{path}.{key}" if path else key
            if lowered in IDENTIFIER_KEYS:
                raise EventRejected(
                    f"event field {where}: looks like a raw identifier; use a pseudonymous id "
                    "(person_key, entity_id, ...)"
                )
            if lowered in CONTENT_KEYS:
                raise EventRejected(f"event field {where}: barrier content never goes in the ledger")
            _scan(where, item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _scan(f"{path}[{i}]", item)
    elif isinstance(value, str):
        _scan_string(path, value)
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        _scan_string(path, str(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise EventRejected(f"event field {path}: NaN/infinity cannot be hashed canonically")
    else:
        raise EventRejected(f"event field {path}: {type(value).__name__} is not JSON")


def check_event(event: Any) -> None:
    """Raise EventRejected with the field and reason unless the event may be appended."""
    if not isinstance(event, dict):
        raise EventRejected(f"an event must be a dict, got {type(event).__name__}")
    etype = event.get("type")
    if not isinstance(etype, str) or not TYPE_RE.match(etype):
        raise EventRejected(f"event field type: must be like 'summary.disclosed', got {etype!r}")
    actor = event.get("actor")
    if not isinstance(actor, dict):
        raise EventRejected("event field actor: must be {'id', 'role', 'organisation'}")
    for field in ("id", "role", "organisation"):
        if not isinstance(actor.get(field), str) or not actor[field]:
            raise EventRejected(f"event field actor.{field}: must be a non-empty string")
    time = event.get("time")
    if not isinstance(time, str):
        raise EventRejected(f"event field time: must be an ISO-8601 string, got {time!r}")
    try:
        datetime.fromisoformat(time.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EventRejected(f"event field time: not ISO-8601: {time!r}") from exc
    if "event_id" in event:
        raise EventRejected("event field event_id: assigned by the ledger, do not set it")
    # The time string is exempt from the pattern scan (it is a timestamp by contract).
    _scan("", {k: v for k, v in event.items() if k != "time"})


def scan_for_identifiers(event: dict) -> str | None:
    """The reason an already-stored event looks like it carries a raw identifier, or None."""
    try:
        _scan("", {k: v for k, v in event.items() if k != "time"})
    except EventRejected as exc:
        return str(exc)
    return None
