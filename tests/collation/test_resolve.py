"""Turning scored candidates into matched / no match / needs review (never a merge)."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkage.collation import (
    MATCHED,
    NEEDS_REVIEW,
    NO_MATCH,
    ResolutionSettings,
    decide_resolution,
    resolve_person,
)


def test_one_strong_candidate_is_a_match_even_with_several_records():
    r = decide_resolution([{"entity_id": "E1", "match_probability": 0.99},
                           {"entity_id": "E1", "match_probability": 0.7},
                           {"entity_id": "E2", "match_probability": 0.1}])
    assert (r.outcome, r.entity_id, r.plausible) == (MATCHED, "E1", 1)
    assert "E2" not in str(r.public()) and "E1" not in str(r.public())


def test_two_plausible_people_need_review_and_name_no_one():
    r = decide_resolution([{"entity_id": "E1", "match_probability": 0.999},
                           {"entity_id": "E2", "match_probability": 0.6}])
    assert r.outcome == NEEDS_REVIEW and r.entity_id is None and r.plausible == 2


def test_weak_single_candidate_needs_review_and_nothing_is_no_match():
    assert decide_resolution([("E1", 0.8)]).outcome == NEEDS_REVIEW
    assert decide_resolution([("E1", 0.2)]).outcome == NO_MATCH
    assert decide_resolution([]).outcome == NO_MATCH
    strict = ResolutionSettings(match_probability=0.999, plausible_probability=0.9)
    assert decide_resolution([("E1", 0.99)], strict).outcome == NEEDS_REVIEW
    with pytest.raises(ValueError):
        ResolutionSettings(match_probability=0.4, plausible_probability=0.5)


def test_source_ref_candidates_map_to_entities():
    entity = {("dwp-a", "r1"): "E1", ("nhs-a", "r9"): "E1", ("nhs-a", "r7"): "E3"}.get
    cands = [{"source": "dwp-a", "ref": "r1", "match_probability": 0.98},
             {"source": "nhs-a", "ref": "r9", "match_probability": 0.97}]
    assert decide_resolution(cands, entity_of=lambda s, r: entity((s, r))).entity_id == "E1"
    cands.append({"source": "nhs-a", "ref": "r7", "match_probability": 0.96})
    assert decide_resolution(cands, entity_of=lambda s, r: entity((s, r))).outcome == NEEDS_REVIEW


def test_resolve_person_uses_the_given_scorer_and_reports_a_missing_one(monkeypatch):
    seen = {}

    def scorer(run_dir, encoded):
        seen["args"] = (run_dir, encoded)
        return [("E5", 0.97)]

    r = resolve_person({"tk_dob": 1}, Path("/runs/r1"), scorer=scorer)
    assert r.entity_id == "E5" and seen["args"] == (Path("/runs/r1"), {"tk_dob": 1})
    from linkage.collation.resolve import default_scorer
    from linkage.score import score_identity_against_run

    # The linkage scorer is a dependency, not an optional piece (no ImportError fallback).
    assert default_scorer() is score_identity_against_run


def test_a_strong_identifier_of_another_person_forces_review():
    strong_match = [("E1", 0.9999)]
    assert decide_resolution(strong_match, sharing_strong_identifier={"E1"}).outcome == MATCHED
    r = decide_resolution(strong_match, sharing_strong_identifier={"E1", "E7"})
    assert r.outcome == NEEDS_REVIEW and r.entity_id is None and "NI or NHS" in r.reason
    nobody = decide_resolution([("E2", 0.01)], sharing_strong_identifier={"E7"})
    assert nobody.outcome == NEEDS_REVIEW


def test_resolution_thresholds_come_from_the_home_settings():
    from joinedup.collate import CollationInputError, resolution_settings

    assert resolution_settings({}) == ResolutionSettings()
    tuned = resolution_settings({"resolution": {"match_probability": 0.99, "plausible_probability": 0.8}})
    assert (tuned.match_probability, tuned.plausible_probability) == (0.99, 0.8)
    with pytest.raises(CollationInputError, match=r"\[resolution\]: only"):
        resolution_settings({"resolution": {"match": 0.9}})
    with pytest.raises(CollationInputError, match=r"\[resolution\]"):
        resolution_settings({"resolution": {"match_probability": 0.3}})


def test_review_names_the_two_linked_people_to_compare_only_when_there_are_two():
    two = decide_resolution([("E1", 0.999), ("E2", 0.6), ("E3", 0.55)])
    assert two.review_entities == ("E1", "E2")  # the two strongest
    conflict = decide_resolution([("E1", 0.9999)], sharing_strong_identifier={"E1", "E7"})
    assert conflict.review_entities == ("E1", "E7")
    # The doubt is about the identifiers given, not about two people: nothing to compare.
    assert decide_resolution([("E1", 0.8)]).review_entities == ()
    assert decide_resolution([("E2", 0.01)], sharing_strong_identifier={"E7"}).review_entities == ()
    assert decide_resolution([("E1", 0.99)]).review_entities == ()
    assert "E2" not in str(two.public())  # never shown to the adviser
    assert two.cause == "several_people" and conflict.cause == "identifier_of_another"
    assert decide_resolution([("E1", 0.8)]).cause == "weak_match"
