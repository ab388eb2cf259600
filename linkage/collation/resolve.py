"""Person resolution: which linked entity is the person in front of the adviser?

The adviser's identifiers are encoded by the connectors' `IdentityEncoder` (the same keys
and settings as the extracts) and scored against the current run's records by the
linkage model, without re-running the linkage. This module only turns the scored
candidates into one of three answers, and never merges two people:

- matched: exactly one plausible entity, scored at or above the match threshold;
- needs_review: two or more plausible entities, or one plausible but weak candidate, or
  an exact NI / NHS number given that belongs to another linked person (a probabilistic
  model may explain such a conflict away as a typo; a person's data must not be);
- no_match: nobody plausible and no identifier shared with anyone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MATCHED = "matched"
NO_MATCH = "no_match"
NEEDS_REVIEW = "needs_review"
SEVERAL_PEOPLE = "several_people"  # two or more linked people match
IDENTIFIER_OF_ANOTHER = "identifier_of_another"  # an NI/NHS number given is another's
WEAK_MATCH = "weak_match"  # one candidate, not certain enough

# (run_dir, encoded identity row) -> scored candidates, each with entity_id (or source and
# ref) and match_probability. The linkage package provides the real one.
Scorer = Callable[[Path, dict[str, Any]], Iterable[Any]]


class ResolutionUnavailable(RuntimeError):
    """The scorer (linkage model) is not available, or the run cannot be scored."""


@dataclass(frozen=True)
class ResolutionSettings:
    match_probability: float = 0.95  # a single candidate at/above this is the person
    plausible_probability: float = 0.5  # candidates at/above this are plausible people

    def __post_init__(self) -> None:
        if not 0 < self.plausible_probability <= self.match_probability <= 1:
            raise ValueError("need 0 < plausible_probability <= match_probability <= 1")


@dataclass(frozen=True)
class Resolution:
    outcome: str  # MATCHED | NO_MATCH | NEEDS_REVIEW
    entity_id: str | None = None  # only when matched
    match_probability: float | None = None  # of the best candidate
    plausible: int = 0  # how many distinct entities were plausible
    reason: str = ""
    candidates: tuple[tuple[str, float], ...] = field(default=(), repr=False)  # never shown
    # needs_review between two linked people: the two entities a data officer should
    # compare (are they one person?); empty when the doubt is about the identifiers given.
    review_entities: tuple[str, ...] = field(default=(), repr=False)  # never shown
    # Why review is needed: SEVERAL_PEOPLE, IDENTIFIER_OF_ANOTHER or WEAK_MATCH ("" otherwise).
    cause: str = ""

    def public(self) -> dict[str, Any]:
        """What the adviser is told (no other entity's id)."""
        out: dict[str, Any] = {"outcome": self.outcome, "reason": self.reason}
        if self.match_probability is not None:
            out["match_probability"] = round(self.match_probability, 4)
        return out


def decide_resolution(
    scored: Iterable[Any],
    settings: ResolutionSettings | None = None,
    entity_of: Callable[[str, str], str | None] | None = None,
    sharing_strong_identifier: Iterable[str] = (),
) -> Resolution:
    """Turn scored candidates into matched / no_match / needs_review.

    `sharing_strong_identifier`: entities holding a record with exactly the NI or NHS
    number given (keyed tokens compared); any of them other than the match forces review.
    """
    settings = settings or ResolutionSettings()
    sharing = set(sharing_strong_identifier)
    best: dict[str, float] = {}
    for cand in scored:
        entity, prob = _candidate(cand, entity_of)
        if entity is not None and prob > best.get(entity, -1.0):
            best[entity] = prob
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    plausible = [(e, p) for e, p in ranked if p >= settings.plausible_probability]
    top = ranked[0][1] if ranked else None
    conflict = (
        "an NI or NHS number given belongs to another linked person; a data officer must "
        "review it (no summary is given, and no data are combined)"
    )
    if not plausible:
        if sharing:
            return Resolution(NEEDS_REVIEW, None, top, 0, conflict, tuple(ranked),
                              tuple(sorted(sharing))[:2] if len(sharing) > 1 else (), IDENTIFIER_OF_ANOTHER)
        return Resolution(NO_MATCH, None, top, 0, "no linked record matches these identifiers",
                          tuple(ranked))
    if len(plausible) > 1:
        return Resolution(
            NEEDS_REVIEW, None, top, len(plausible),
            f"{len(plausible)} different people match these identifiers; a data officer must "
            "review them (no summary is given, and no data are combined)",
            tuple(ranked), (plausible[0][0], plausible[1][0]), SEVERAL_PEOPLE,
        )
    entity, prob = plausible[0]
    if prob < settings.match_probability:
        return Resolution(
            NEEDS_REVIEW, None, prob, 1,
            "the best match is not certain enough; check the identifiers or ask for review",
            tuple(ranked), (), WEAK_MATCH,
        )
    if sharing - {entity}:
        return Resolution(NEEDS_REVIEW, None, prob, 1 + len(sharing - {entity}), conflict,
                          tuple(ranked), (entity, min(sharing - {entity})), IDENTIFIER_OF_ANOTHER)
    return Resolution(MATCHED, entity, prob, 1, "one linked person matches", tuple(ranked))


def resolve_person(
    encoded_identity: dict[str, Any],
    run_dir: Path,
    scorer: Scorer | None = None,
    settings: ResolutionSettings | None = None,
    entity_of: Callable[[str, str], str | None] | None = None,
    sharing_strong_identifier: Iterable[str] = (),
) -> Resolution:
    """Score an encoded identity against a run and decide who it is."""
    scorer = scorer or default_scorer()
    return decide_resolution(scorer(Path(run_dir), encoded_identity), settings, entity_of,
                             sharing_strong_identifier)


def default_scorer() -> Scorer:
    """The linkage package's scorer (`score_identity_against_run`)."""
    from linkage.score import score_identity_against_run  # imported late: linkage.score is heavy

    return score_identity_against_run


def _candidate(cand: Any, entity_of: Callable[[str, str], str | None] | None) -> tuple[str | None, float]:
    """Read one scored candidate, whatever its shape (dict, object or tuple)."""
    if isinstance(cand, tuple):
        entity, prob = cand[0], cand[1]
        return str(entity), float(prob)
    get = cand.get if isinstance(cand, dict) else (lambda k, d=None: getattr(cand, k, d))
    prob = float(get("match_probability", 0.0) or 0.0)
    entity = get("entity_id")
    if entity is None and entity_of is not None and get("ref") is not None:
        entity = entity_of(str(get("source")), str(get("ref")))
    return (str(entity) if entity is not None else None), prob
