"""The guard that keeps raw identifiers and barrier content out of the ledger.

Events carry pseudonymous ids only (person_key, entity_id, extract_id, ...). This is a
tripwire for the obvious mistakes, not a proof: a key named like a raw identifier or like
barrier content, or a value that looks like a NINO, an NHS number (valid mod-11 check
digit) or a full UK postcode.

Two kinds of field are told apart, because an id is not text:

- **id fields** (`id`, `*_id`, `*_ids`, `*_key`, `*_keys`, `*_hash`, ...; `event_id`,
  `person_key`, `root_hash`): flagged only when the whole value *is* an identifier
  (a local id that is an NHS number), never because a run of ten digits inside a hash or an
  event id happens to pass the NHS check (about 1 in 11 random digit strings do);
- **everything else** (free text and codes: purpose, categories, notes): flagged when an
  identifier appears anywhere in it.

The contract (docs/AUDIT.md, "The guard"):

- `find_identifiers(fields)` is for callers: check the free-text/code fields of a request
  *before* acting, answer 422 naming the fields (never the values), and record the refusal.
- `Ledger.append` never raises for a value: it stores the event with each offending value
  replaced by `"[redacted]"` and a `redacted` list of {field, reason}. It raises
  `EventRejected` only for a malformed event (no type/actor/time, a caller-set event_id, a
  value that is not JSON): a bug in the caller, not bad input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

REDACTED = "[redacted]"

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
# Keys whose values are ids or hashes, not text (see the module docstring).
ID_KEYS = frozenset({"id", "ids", "leaf", "root", "signature", "digest", "sha256", "token"})
ID_KEY_SUFFIXES = ("_id", "_ids", "_key", "_keys", "_hash", "_hashes", "_sha256", "_ref", "_refs")
# Fields the ledger fills or checks itself and that are never scanned.
EXEMPT_TOP_LEVEL = frozenset({"time", "redacted"})

# Case-insensitive: an identifier typed in lower case is still an identifier.
NINO_RE = re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", re.I)
NHS_RE = re.compile(r"\b(\d{3})[ -]?(\d{3})[ -]?(\d{4})\b")
POSTCODE_RE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2}\b", re.I)

LOOKS_LIKE_NINO = "looks like a National Insurance number"
LOOKS_LIKE_NHS = "looks like an NHS number"
LOOKS_LIKE_POSTCODE = "looks like a postcode"
NAMED_LIKE_IDENTIFIER = "named like a raw identifier; use a pseudonymous id (person_key, entity_id, ...)"
NAMED_LIKE_CONTENT = "barrier content never goes in the ledger"
NOT_FINITE = "not a finite number (cannot be hashed canonically)"

KNOWN_TYPES = frozenset(
    {
        "extract.ingested", "linkage.run", "consent.granted", "consent.withdrawn",
        "policy.decision", "summary.disclosed", "referral.created", "referral.read",
        "area_counts.disclosed", "audit.verified", "user.added", "user.revoked",
    }
)  # fmt: skip
TYPE_RE = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$")


class EventRejected(ValueError):
    """An event is malformed (a bug in the caller), or, from `check_event`, would be redacted."""


@dataclass(frozen=True)
class Finding:
    """Where an identifier-like value is and why; never the value itself."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


def _nhs_check_digit_ok(digits: str) -> bool:
    total = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9]))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


# Strings already found clean (the same codes, reasons and key names recur in every event):
# only clean ones are kept, so no identifier-like value outlives its event here.
_CLEAN: set[tuple[str, bool]] = set()
_CLEAN_MAX = 50_000
_CLEAN_LONGEST = 200


def text_reason(value: str, whole: bool = False) -> str | None:
    """Why this string looks like (whole=False: contains; whole=True: is) an identifier."""
    if (value, whole) in _CLEAN:
        return None
    reason = _text_reason(value, whole)
    if reason is None and len(value) <= _CLEAN_LONGEST:
        if len(_CLEAN) >= _CLEAN_MAX:
            _CLEAN.clear()
        _CLEAN.add((value, whole))
    return reason


def _text_reason(value: str, whole: bool) -> str | None:
    if whole:
        value = value.strip()
        nino = NINO_RE.fullmatch(value)
        nhs = NHS_RE.fullmatch(value)
        postcode = POSTCODE_RE.fullmatch(value)
        if nino:
            return LOOKS_LIKE_NINO
        if nhs and _nhs_check_digit_ok("".join(nhs.groups())):
            return LOOKS_LIKE_NHS
        return LOOKS_LIKE_POSTCODE if postcode else None
    if NINO_RE.search(value):
        return LOOKS_LIKE_NINO
    for match in NHS_RE.finditer(value):
        if _nhs_check_digit_ok("".join(match.groups())):
            return LOOKS_LIKE_NHS
    return LOOKS_LIKE_POSTCODE if POSTCODE_RE.search(value) else None


def is_id_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in ID_KEYS or lowered.endswith(ID_KEY_SUFFIXES)


class _Scanner:
    """One walk over a JSON value that finds, and optionally redacts, identifier-like values."""

    def __init__(self, keys: bool) -> None:
        self.keys = keys  # also judge key names (events); a request's field names are its own
        self.findings: list[Finding] = []

    def _found(self, path: str, reason: str) -> str:
        self.findings.append(Finding(path or "(value)", reason))
        return REDACTED

    def walk(self, path: str, value: Any, whole: bool = False) -> Any:
        if isinstance(value, dict):
            return self._walk_dict(path, value, whole)
        if isinstance(value, (list, tuple)):
            return [self.walk(f"{path}[{i}]", item, whole) for i, item in enumerate(value)]
        if isinstance(value, str):
            reason = text_reason(value, whole)
            return self._found(path, reason) if reason else value
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            reason = text_reason(str(value), whole)
            return self._found(path, reason) if reason else value
        if isinstance(value, float):
            return self._found(path, NOT_FINITE) if not math.isfinite(value) else value
        raise EventRejected(f"event field {path}: {type(value).__name__} is not JSON")

    def _walk_dict(self, path: str, value: dict, whole: bool) -> dict:
        out: dict[str, Any] = {}
        for position, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise EventRejected(f"event field {path}: keys must be strings, got {type(key).__name__}")
            where = f"{path}.{key}" if path else key
            key_reason = text_reason(key)
            if key_reason:  # the key itself is data (e.g. a dict keyed by NINO)
                where = f"{path}.[key {position + 1}]" if path else f"[key {position + 1}]"
                self.findings.append(Finding(where, key_reason))
                key = f"[redacted key {position + 1}]"
            lowered = key.lower()
            if self.keys and lowered in IDENTIFIER_KEYS:
                out[key] = self._found(where, NAMED_LIKE_IDENTIFIER)
            elif self.keys and lowered in CONTENT_KEYS:
                out[key] = self._found(where, NAMED_LIKE_CONTENT)
            else:
                out[key] = self.walk(where, item, whole or is_id_key(key))
        return out


def find_identifiers(fields: Any, path: str = "") -> list[Finding]:
    """Every place in a request's free-text/code fields that looks like a raw identifier.

    Call it before acting on a request: a non-empty answer means invalid input (422) that
    names each `Finding.field` and reason, never the value. Field names ending in `_id`,
    `_key`, `_hash`... are judged as ids (the whole value must be an identifier).
    """
    scanner = _Scanner(keys=False)
    scanner.walk(path, fields)
    return scanner.findings


def redact_identifiers(value: Any, path: str = "") -> tuple[Any, list[Finding]]:
    """A copy with each identifier-like value replaced by "[redacted]", and the findings."""
    scanner = _Scanner(keys=False)
    return scanner.walk(path, value), scanner.findings


def _check_structure(event: Any) -> None:
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
        raise EventRejected("event field time: not ISO-8601") from exc
    if "event_id" in event:
        raise EventRejected("event field event_id: assigned by the ledger, do not set it")
    marker = event.get("redacted", [])
    if not isinstance(marker, list) or not all(
        isinstance(m, dict) and set(m) == {"field", "reason"} and all(isinstance(v, str) for v in m.values())
        for m in marker
    ):
        raise EventRejected("event field redacted: must be a list of {'field', 'reason'} strings")


def prepare_event(event: Any) -> dict:
    """The event as the ledger stores it: structure checked, identifier-like values redacted.

    Raises EventRejected only for a malformed event. Redactions are listed in `redacted`
    (appended to any the caller made itself, e.g. after `redact_identifiers`).
    """
    _check_structure(event)
    scanner = _Scanner(keys=True)
    scanned = scanner.walk("", {k: v for k, v in event.items() if k not in EXEMPT_TOP_LEVEL})
    if not scanner.findings:
        return dict(event)
    out = {**scanned, **{k: event[k] for k in EXEMPT_TOP_LEVEL if k in event}}
    out["redacted"] = list(event.get("redacted", [])) + [f.to_dict() for f in scanner.findings]
    return out


def check_event(event: Any) -> None:
    """Strict check: raise EventRejected if the event is malformed *or* would be redacted."""
    _check_structure(event)
    scanner = _Scanner(keys=True)
    scanner.walk("", {k: v for k, v in event.items() if k not in EXEMPT_TOP_LEVEL})
    if scanner.findings:
        raise EventRejected(f"event field {scanner.findings[0]}")


def scan_for_identifiers(event: dict) -> str | None:
    """The reason an already-stored event looks like it carries a raw identifier, or None."""
    scanner = _Scanner(keys=True)
    try:
        scanner.walk("", {k: v for k, v in event.items() if k not in EXEMPT_TOP_LEVEL})
    except EventRejected as exc:
        return str(exc)
    return f"event field {scanner.findings[0]}" if scanner.findings else None
