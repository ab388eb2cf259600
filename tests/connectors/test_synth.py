"""The synthetic population and sources: determinism, overlap, prevalence, planted errors."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from connectors.sources import read_records
from connectors.synth import BARRIERS, write_synthetic_sources
from connectors.synth_errors import nhs_number_is_valid
from joinedup.cli import cli

SOURCES = ("dwp", "council", "nhs", "housing")
INPUTS = {
    "dwp": "dwp_claimants.csv",
    "council": "council.sqlite",
    "nhs": "nhs",
    "housing": "housing_tenancies.csv",
}
HEAVY = {"surname_change", "dob_swap", "dob_typo", "moved", "missing_postcode"}


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "council.sqlite":
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    with sqlite3.connect(root / "council.sqlite") as db:
        dump = "\n".join(db.iterdump())
    out["council.sqlite (dump)"] = hashlib.sha256(dump.encode()).hexdigest()
    return out


def _truth(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "ground_truth.csv", dtype=str, keep_default_na=False)


def _records(root: Path, source: str):
    return list(read_records(source, str(root / INPUTS[source])))


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    a = _digest(_write(tmp_path / "a", 600, 5))
    b = _digest(_write(tmp_path / "b", 600, 5))
    c = _digest(_write(tmp_path / "c", 600, 6))
    assert a == b
    assert set(a) == set(c)
    assert all(a[k] != c[k] for k in a)


def _write(root: Path, people: int, seed: int) -> Path:
    write_synthetic_sources(root, people, seed)
    return root


def test_output_is_written_whole_and_no_temporary_directory_is_left(tmp_path):
    summary = write_synthetic_sources(tmp_path, 300, 2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["council.sqlite", "dwp_claimants.csv", "ground_truth.csv",
                            "housing_tenancies.csv", "nhs", "people_truth.csv"])
    assert sum(summary["records"].values()) == len(_truth(tmp_path))


def test_every_source_holds_an_overlapping_subset_of_the_people(synth_dir):
    truth = _truth(synth_dir)
    people = pd.read_csv(synth_dir / "people_truth.csv")
    members = {s: set(truth.loc[truth.source == s, "person_id"]) for s in SOURCES}
    n = len(people)
    for s in SOURCES:
        assert 0.1 * n < len(members[s]) < 0.9 * n, s
        assert members[s] == set(people.loc[people[f"in_{s}"] == 1, "person_id"])
    for i, s in enumerate(SOURCES):
        for t in SOURCES[i + 1 :]:
            assert len(members[s] & members[t]) > 0.02 * n, (s, t)
    assert len(set.union(*members.values())) < n  # some people are known to nobody


def test_prevalence_of_multiple_disadvantage_is_about_one_in_ten(synth_dir):
    people = pd.read_csv(synth_dir / "people_truth.csv")
    count = (people[list(BARRIERS)] > 0).sum(axis=1)
    assert (count == people["barrier_count"]).all()
    assert 0.06 <= (count >= 3).mean() <= 0.15
    assert 0.2 <= (count >= 1).mean() <= 0.6
    assert people[list(BARRIERS)].isin([0, 1, 2, 3]).all().all()
    assert (people["CLV"] > 0).mean() < (people["MH"] > 0).mean()  # care leavers are rare


def test_duplicates_inside_each_source_are_between_2_and_5_percent(synth_dir):
    truth = _truth(synth_dir)
    for s in SOURCES:
        rows = truth[truth.source == s]
        assert rows.local_id.is_unique, s
        dup_share = 1 - rows.person_id.nunique() / len(rows)
        assert 0.015 <= dup_share <= 0.05, (s, dup_share)


def test_nhs_numbers_are_valid_except_the_deliberately_bad_ones(synth_dir):
    truth = _truth(synth_dir).set_index(["source", "local_id"])
    bad_seen = 0
    for source in ("nhs", "council"):
        for rec in _records(synth_dir, source):
            number = rec.identity["nhs_number"]
            if number is None:
                continue
            planted_bad = "bad_nhs" in truth.loc[(source, rec.identity["local_id"]), "errors"].split(";")
            assert nhs_number_is_valid(number) is not planted_bad, (source, number)
            bad_seen += planted_bad
    assert bad_seen >= 1


def test_ninos_have_the_uk_format_except_the_deliberately_bad_ones(synth_dir):
    import re

    form = re.compile(r"^[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]$")
    truth = _truth(synth_dir).set_index(["source", "local_id"])
    for rec in _records(synth_dir, "dwp"):
        nino = rec.identity["nino"].replace(" ", "")
        planted_bad = "bad_nino" in truth.loc[("dwp", rec.identity["local_id"]), "errors"]
        assert bool(form.match(nino)) is not planted_bad, nino


def test_error_tags_explain_every_difference_between_copies_of_a_person(synth_dir):
    """Copies without an error tag agree exactly on name and date of birth; tagged ones do not
    pile up identity-heavy errors, so every true match stays recoverable."""
    truth = _truth(synth_dir).set_index(["source", "local_id"])
    clean: dict[str, set] = defaultdict(set)
    tag_counts: Counter = Counter()
    for source in SOURCES:
        for rec in _records(synth_dir, source):
            tags = set(filter(None, truth.loc[(source, rec.identity["local_id"]), "errors"].split(";")))
            tag_counts.update(tags)
            assert len(tags & HEAVY) <= 1
            assert not ({"surname_change", "family_typo"} <= tags)
            person = truth.loc[(source, rec.identity["local_id"]), "person_id"]
            dob = rec.identity["date_of_birth"]
            iso = dob if "-" in dob else "-".join(reversed(dob.split("/")))
            if not tags & {"nickname", "given_typo", "family_typo", "surname_change", "dob_swap", "dob_typo", "bad_dob"}:
                clean[person].add((rec.identity["given_name"].lower(), rec.identity["family_name"].lower(), iso))
    assert all(len(v) == 1 for v in clean.values())
    for tag in ("nickname", "given_typo", "family_typo", "surname_change", "dob_swap", "dob_typo",
                "moved", "missing_postcode", "bad_dob", "bad_nhs", "missing_nhs"):
        assert tag_counts[tag] > 0, tag
    total = len(_truth(synth_dir))
    assert tag_counts["bad_dob"] < 0.01 * total  # a few malformed rows, not many


# Positive evidence of each barrier in its primary source (see connectors.synth docstring).
PRIMARY = {
    "MH": ("nhs", {"nhs.secondary_mental_health", "nhs.talking_therapies"}),
    "PH": ("nhs", {"nhs.long_term_condition"}),
    "DIS": ("dwp", {"dwp.benefit=PIP"}),
    "SUB": ("nhs", {"nhs.drug_alcohol"}),
    "HOU": ("housing", {"housing.homelessness_application"}),
    "FIN": ("council", {"council.ctax_arrears_gbp>0"}),
    "SKL": ("dwp", {"dwp.skills_need"}),
    "CAR": ("dwp", {"dwp.lone_parent", "dwp.benefit=CA"}),
    "CLV": ("council", {"council.care_leaver"}),
    "FAM": ("council", {"council.supporting_families"}),
    "WRK": ("dwp", {"dwp.months_unemployed>5"}),
}


def _evidence(indicator) -> set[str]:
    keys = {indicator.code, f"{indicator.code}={indicator.value}"}
    if isinstance(indicator.value, int | float) and not isinstance(indicator.value, bool):
        if indicator.value > 0:
            keys.add(f"{indicator.code}>0")
        if indicator.value > 5:
            keys.add(f"{indicator.code}>5")
    return keys


def test_planted_barriers_are_evidenced_in_their_primary_source_and_absent_otherwise(synth_dir):
    truth = _truth(synth_dir).set_index(["source", "local_id"])["person_id"]
    people = pd.read_csv(synth_dir / "people_truth.csv").set_index("person_id")
    evidence: dict[tuple[str, str], set[str]] = defaultdict(set)
    for source in SOURCES:
        for rec in _records(synth_dir, source):
            person = truth[(source, rec.identity["local_id"])]
            for ind in rec.indicators:
                evidence[(source, person)] |= _evidence(ind)
    for code, (source, keys) in PRIMARY.items():
        planted = people.index[people[code] > 0]
        unplanted = people.index[people[code] == 0]
        assert len(planted) > 0, code
        assert all(evidence[(source, p)] & keys for p in planted), code
        assert not any(evidence[(source, p)] & keys for p in unplanted), code


def test_cli_synth_writes_the_sources_and_reports_counts(tmp_path):
    result = CliRunner().invoke(cli, ["synth", "--people", "200", "--seed", "4", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "synthesised 200 people" in result.output
    with (tmp_path / "o" / "dwp_claimants.csv").open() as fh:
        rows = sum(1 for _ in csv.DictReader(fh))
    assert f"dwp {rows}" in result.output
    assert len(list((tmp_path / "o" / "nhs").glob("bundle-*.json"))) >= 1


def test_cli_synth_refuses_a_council_target_that_is_not_a_dsn(tmp_path):
    result = CliRunner().invoke(cli, ["synth", "--people", "10", "--out", str(tmp_path), "--council-db", "mysql"])
    assert result.exit_code != 0
    assert "--council-db" in result.output


@pytest.mark.parametrize("people", [0, -3])
def test_synth_refuses_an_empty_population(tmp_path, people):
    with pytest.raises(ValueError):
        write_synthetic_sources(tmp_path, people, 1)


def test_fhir_bundles_are_uk_core_shaped(synth_dir):
    bundle = json.loads(sorted((synth_dir / "nhs").glob("*.json"))[0].read_text())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    kinds = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    assert kinds["Patient"] > 0 and kinds["EpisodeOfCare"] > 0 and kinds["Condition"] > 0
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["identifier"][0]["system"] == "https://fhir.nhs.uk/Id/nhs-number"
    assert {"name", "gender", "birthDate", "address"} <= set(patient)
    ids = {e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"}
    for e in bundle["entry"]:
        r = e["resource"]
        ref = (r.get("patient") or r.get("subject") or {}).get("reference")
        if ref:
            assert ref.removeprefix("urn:uuid:") in ids


@pytest.mark.slow  # spawning two worker processes takes a few seconds
def test_output_does_not_depend_on_chunking_into_workers(tmp_path, monkeypatch):
    """Several chunks generated by 2 worker processes give the same files as 1 process."""
    import connectors.synth as synth

    monkeypatch.setattr(synth, "CHUNK", 350)
    one = write_synthetic_sources(tmp_path / "one", 1000, 8, workers=1)
    two = write_synthetic_sources(tmp_path / "two", 1000, 8, workers=2)
    assert one["records"] == two["records"]
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    truth = _truth(tmp_path / "one")
    assert truth.local_id.is_unique  # ids keep counting across chunks
    people = pd.read_csv(tmp_path / "one" / "people_truth.csv")
    assert len(people) == 1000 and people.person_id.is_unique


def _norm(rec) -> dict:
    ident = rec.identity
    dob = ident["date_of_birth"] or ""
    parts = dob.split("-") if "-" in dob else list(reversed(dob.split("/")))
    nhs = (ident["nhs_number"] or "").replace(" ", "")
    return {
        "given": (ident["given_name"] or "").lower(),
        "family": (ident["family_name"] or "").lower(),
        "dob": tuple(int(x) for x in parts) if len(parts) == 3 else None,
        "nhs": nhs if nhs and nhs_number_is_valid(nhs) else None,
        "nino": (ident["nino"] or "").replace(" ", "") or None,
        "postcode": (ident["postcode"] or "").replace(" ", "").upper() or None,
    }


def _dob_close(a, b) -> bool:
    if a is None or b is None:
        return False
    if a == b or a == (b[0], b[2], b[1]):
        return True
    return sum(x != y for x, y in zip(a, b, strict=True)) == 1 and all(abs(x - y) <= 1 for x, y in zip(a, b, strict=True))


def _recoverable(a: dict, b: dict) -> bool:
    if a["nhs"] and a["nhs"] == b["nhs"]:
        return True
    if a["nino"] and a["nino"] == b["nino"]:
        return True
    names = (a["given"] == b["given"]) + (a["family"] == b["family"])
    if _dob_close(a["dob"], b["dob"]) and names >= 1:
        return True
    return names == 2 and a["postcode"] is not None and a["postcode"] == b["postcode"]


def test_true_matches_across_sources_stay_recoverable(synth_dir):
    """Each pair of records of one person in two sources shares a strong identifier, or a
    date of birth (allowing one slip or a day/month swap) and a name, or both names and
    the postcode. A proxy for 'the linkage target is reachable': rows refused for an
    impossible date are left out, as the extract rejects them."""
    truth = _truth(synth_dir).set_index(["source", "local_id"])
    by_person: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for source in SOURCES:
        for rec in _records(synth_dir, source):
            key = (source, rec.identity["local_id"])
            if "bad_dob" in truth.loc[key, "errors"]:
                continue
            by_person[truth.loc[key, "person_id"]].append((source, _norm(rec)))
    pairs = ok = 0
    for recs in by_person.values():
        for i, (sa_, a) in enumerate(recs):
            for sb, b in recs[i + 1 :]:
                if sa_ != sb:
                    pairs += 1
                    ok += _recoverable(a, b)
    assert pairs > 1000
    assert ok / pairs >= 0.995, (ok, pairs)


def test_a_failed_council_write_leaves_no_partial_output(tmp_path):
    from sqlalchemy.exc import OperationalError

    with pytest.raises(OperationalError):
        write_synthetic_sources(tmp_path, 50, 1, council_dsn="postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert list(tmp_path.iterdir()) == []
