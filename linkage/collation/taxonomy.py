"""The barrier taxonomy: barrier codes, indicator rules, tariff and adjustment bounds.

The taxonomy is data (TOML, approved by the governance board), never code. This module
loads it and refuses anything malformed with a message naming the file and the entry, so a
typo in a rule cannot silently change who is counted as having a barrier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from connectors.files import read_document

MAX_SEVERITY = 3
SEVERITY_WORDS = ("none", "low", "medium", "high")


class TaxonomyError(ValueError):
    """The taxonomy file is unreadable or invalid."""


@dataclass(frozen=True)
class Barrier:
    code: str
    label: str
    service_need: str
    tariff_gbp: tuple[float, ...]  # indexed by severity 0..3


@dataclass(frozen=True)
class Rule:
    """One indicator condition that evidences a barrier at a severity."""

    indicator: str
    barrier: str
    severity: int
    equals: str | bool | int | float | None = None
    at_least: float | None = None
    recency_months: int | None = None  # None: the taxonomy default; 0: never expires

    def matches(self, value: Any) -> bool:
        if value is None:
            return False
        if self.at_least is not None:
            number = _as_number(value)
            return number is not None and number >= self.at_least
        if self.equals is not None:
            return _same_value(self.equals, value)
        # No condition: any present, non-false value evidences the barrier.
        return value is not False and str(value).strip().lower() not in ("", "false", "0")


@dataclass(frozen=True)
class Adjustment:
    max_fraction: float
    max_gbp: float
    reason_required: bool

    def bound(self, tariff_gbp: float) -> float:
        """The largest adjustment allowed (either direction) on this tariff."""
        return min(self.max_fraction * tariff_gbp, self.max_gbp)


@dataclass(frozen=True)
class Taxonomy:
    version: str
    recency_months: int
    multiple_disadvantage_min: int
    barriers: dict[str, Barrier]
    rules: tuple[Rule, ...]
    adjustment: Adjustment

    def rules_for(self, indicator: str) -> list[Rule]:
        return [r for r in self.rules if r.indicator == indicator]

    def is_current(self, rule: Rule, when: date | None, as_of: date) -> bool:
        """Whether an indicator dated `when` still counts on `as_of` under this rule."""
        months = self.recency_months if rule.recency_months is None else rule.recency_months
        if when is None or months == 0:
            return True
        return _months_between(when, as_of) <= months

    def tariff(self, code: str, severity: int) -> float:
        return self.barriers[code].tariff_gbp[severity]


def load_taxonomy(path: Path | str) -> Taxonomy:
    """Read and validate a taxonomy TOML file."""
    path = Path(path)
    doc = read_document(path, "toml", TaxonomyError, what="taxonomy")
    return parse_taxonomy(doc, str(path))


def parse_taxonomy(doc: dict[str, Any], source: str = "taxonomy") -> Taxonomy:
    """Validate a parsed taxonomy document; every error names `source` and the entry."""

    def fail(where: str, reason: str) -> TaxonomyError:
        return TaxonomyError(f"{source}: {where}: {reason}")

    version = doc.get("version")
    if not isinstance(version, str) or not version.strip():
        raise fail("version", "must be a non-empty string")
    recency = doc.get("recency_months")
    if not _is_int(recency) or recency < 0:
        raise fail("recency_months", f"must be a whole number of months >= 0, got {recency!r}")
    md_min = doc.get("multiple_disadvantage_min", 3)
    if not _is_int(md_min) or md_min < 1:
        raise fail("multiple_disadvantage_min", f"must be a whole number >= 1, got {md_min!r}")

    raw_barriers = doc.get("barriers")
    if not isinstance(raw_barriers, dict) or not raw_barriers:
        raise fail("barriers", "must be a table of barrier codes ([barriers.MH] ...)")
    barriers: dict[str, Barrier] = {}
    for code, entry in raw_barriers.items():
        where = f"barriers.{code}"
        if not code.isalpha() or not code.isupper():
            raise fail(where, "a barrier code must be upper-case letters, e.g. MH")
        if not isinstance(entry, dict):
            raise fail(where, "must be a table")
        unknown = set(entry) - {"label", "service_need", "tariff_gbp"}
        if unknown:
            raise fail(where, f"unknown key(s): {', '.join(sorted(unknown))}")
        for key in ("label", "service_need"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise fail(f"{where}.{key}", "must be a non-empty string")
        tariff = entry.get("tariff_gbp")
        if (
            not isinstance(tariff, list)
            or len(tariff) != MAX_SEVERITY + 1
            or not all(_is_number(t) and t >= 0 for t in tariff)
        ):
            raise fail(f"{where}.tariff_gbp", "must be 4 amounts >= 0, for severity 0, 1, 2, 3")
        if tariff[0] != 0:
            raise fail(f"{where}.tariff_gbp", "severity 0 (no barrier) must pay 0")
        if any(b < a for a, b in zip(tariff, tariff[1:], strict=False)):
            raise fail(f"{where}.tariff_gbp", "must not decrease with severity")
        barriers[code] = Barrier(code, entry["label"], entry["service_need"], tuple(tariff))

    raw_rules = doc.get("rules", [])
    if not isinstance(raw_rules, list):
        raise fail("rules", "must be an array of tables ([[rules]])")
    rules = []
    for n, entry in enumerate(raw_rules, start=1):
        where = f"rules[{n}]"
        if not isinstance(entry, dict):
            raise fail(where, "must be a table")
        unknown = set(entry) - {"indicator", "barrier", "severity", "equals", "at_least", "recency_months"}
        if unknown:
            raise fail(where, f"unknown key(s): {', '.join(sorted(unknown))}")
        indicator = entry.get("indicator")
        if not isinstance(indicator, str) or "." not in indicator:
            raise fail(where, f"indicator must be a catalogue code like 'nhs.drug_alcohol', got {indicator!r}")
        where = f"rules[{n}] ({indicator})"
        if entry.get("barrier") not in barriers:
            raise fail(where, f"barrier {entry.get('barrier')!r} is not one of {', '.join(barriers)}")
        severity = entry.get("severity")
        if not _is_int(severity) or not 1 <= severity <= MAX_SEVERITY:
            raise fail(where, f"severity must be 1, 2 or 3, got {severity!r}")
        if "equals" in entry and "at_least" in entry:
            raise fail(where, "give either equals or at_least, not both")
        at_least = entry.get("at_least")
        if at_least is not None and not _is_number(at_least):
            raise fail(where, f"at_least must be a number, got {at_least!r}")
        equals = entry.get("equals")
        if equals is not None and not isinstance(equals, str | bool | int | float):
            raise fail(where, f"equals must be a string, boolean or number, got {equals!r}")
        rule_recency = entry.get("recency_months")
        if rule_recency is not None and (not _is_int(rule_recency) or rule_recency < 0):
            raise fail(where, f"recency_months must be a whole number >= 0, got {rule_recency!r}")
        rules.append(
            Rule(indicator, entry["barrier"], severity, equals,
                 float(at_least) if at_least is not None else None, rule_recency)
        )

    adj = doc.get("adjustment")
    if not isinstance(adj, dict):
        raise fail("adjustment", "missing [adjustment] table (max_fraction, max_gbp, reason_required)")
    max_fraction, max_gbp = adj.get("max_fraction"), adj.get("max_gbp")
    if not _is_number(max_fraction) or not 0 <= max_fraction <= 1:
        raise fail("adjustment.max_fraction", f"must be between 0 and 1, got {max_fraction!r}")
    if not _is_number(max_gbp) or max_gbp < 0:
        raise fail("adjustment.max_gbp", f"must be an amount >= 0, got {max_gbp!r}")
    reason_required = adj.get("reason_required", True)
    if not isinstance(reason_required, bool):
        raise fail("adjustment.reason_required", "must be true or false")

    return Taxonomy(
        version=version.strip(),
        recency_months=recency,
        multiple_disadvantage_min=md_min,
        barriers=barriers,
        rules=tuple(rules),
        adjustment=Adjustment(float(max_fraction), float(max_gbp), reason_required),
    )


def parse_date(text: Any) -> date | None:
    """An indicator's ISO date, or None when absent or unreadable."""
    if isinstance(text, date):
        return text
    if not isinstance(text, str) or not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _months_between(earlier: date, later: date) -> float:
    return (later - earlier).days / 30.4375


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _same_value(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool):
        if isinstance(actual, bool):
            return actual is expected
        return str(actual).strip().lower() == ("true" if expected else "false")
    if _is_number(expected):
        number = _as_number(actual)
        return number is not None and number == float(expected)
    return str(actual).strip().lower() == str(expected).strip().lower()
