"""The taxonomy's rules recover the synthetic population's planted barriers.

Real pipeline up to the content: `connectors.synth` writes the four agencies' sources, the
real connectors write split extracts, and each person's content rows (found through the
ground truth and the key maps, so this test does not depend on the linkage model) are
decrypted and assessed with the shipped taxonomy.

Where the synthetic planting can be expressed by one-indicator rules the severity must
match exactly. Where it cannot, the test checks the relationship the source records allow
(documented in connectors/synth.py's planting rules):
- PH: one long-term condition is planted for severity 1 and 2, two for 3; only a DWP WCA
  "physical" group (claimants whose physical health dominates) says 2 -> derived 1 or 2;
- DIS: PIP for any severity, care-act status only for council residents -> 1 or planted;
- SUB: an active episode is planted for 2 and 3 -> 2 for both;
- CAR: CA (1), lone parent (2) and both (3) -> "both" reads as 2.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import pandas as pd
import pyarrow.parquet as pq
import pytest

from connectors.content import decrypt_rows
from connectors.extract import pseudonymise_extract
from connectors.keys import KeyRing, new_master_secret
from connectors.synth import write_synthetic_sources
from connectors.synth_people import REF_DATE
from linkage.collation import assess_barriers, load_taxonomy
from tests.collation.test_taxonomy import SHIPPED

EXACT = ("MH", "HOU", "FIN", "SKL", "CLV", "FAM", "WRK")
INPUTS = {"dwp": "dwp_claimants.csv", "council": "council.sqlite", "nhs": "nhs",
          "housing": "housing_tenancies.csv"}


@pytest.fixture(scope="module")
def assessed(tmp_path_factory):
    root = tmp_path_factory.mktemp("truth")
    write_synthetic_sources(root / "src", 1500, 11)
    keyring = KeyRing(new_master_secret(), "truth-project")
    by_person: dict[str, list[dict]] = defaultdict(list)
    truth = pd.read_csv(root / "src" / "ground_truth.csv", dtype=str)
    for kind, name in INPUTS.items():
        out = root / "extracts" / kind
        manifest = pseudonymise_extract(keyring, kind, f"{kind}-thanet", str(root / "src" / name),
                                        None, out)
        keymap = pq.read_table(out / "keymap.parquet").to_pandas()
        person_of_ref = keymap.merge(truth[truth.source == kind], on="local_id").set_index("ref")["person_id"]
        for doc in decrypt_rows(keyring.content_key(), manifest["extract_id"],
                                pq.read_table(out / "content.parquet")):
            by_person[person_of_ref[doc["ref"]]].append(doc)
    people = pd.read_csv(root / "src" / "people_truth.csv", dtype={"person_id": str})
    taxonomy = load_taxonomy(SHIPPED)
    as_of = date.fromisoformat(str(REF_DATE))
    found = {pid: assess_barriers(docs, taxonomy, as_of) for pid, docs in by_person.items()}
    return people.set_index("person_id"), found


def derived(found, pid, code) -> int:
    f = found.get(pid, {}).get(code)
    return f.severity if f else 0


def test_planted_barriers_found_with_their_severity(assessed):
    people, found = assessed
    with_barriers = people[people.barrier_count > 0]
    assert len(with_barriers) > 200
    checked = defaultdict(int)
    for pid, row in people.iterrows():
        for code in (*EXACT, "PH", "DIS", "SUB", "CAR"):
            planted, got = int(row[code]), derived(found, pid, code)
            assert (got > 0) == (planted > 0), (pid, code, planted, got)  # presence: exact
            if code in EXACT:
                assert got == planted, (pid, code, planted, got)
            elif code == "PH" and planted:
                assert got in (1, 2) and got <= planted, (pid, code, planted, got)
            elif code == "DIS" and planted:
                assert got in (1, planted), (pid, code, planted, got)
            elif code == "SUB" and planted:
                assert got == min(planted, 2), (pid, code, planted, got)
            elif code == "CAR" and planted:
                assert got == min(planted, 2), (pid, code, planted, got)
            checked[code] += planted > 0
    assert all(checked[c] >= 10 for c in ("MH", "PH", "FIN", "SKL", "WRK")), checked


def test_multiple_disadvantage_matches_truth(assessed):
    people, found = assessed
    planted_md = people.barrier_count >= 3
    got_md = pd.Series({pid: len(found.get(pid, {})) >= 3 for pid in people.index})
    assert (planted_md == got_md[people.index]).all()
    share = planted_md.mean()
    assert 0.03 < share < 0.25  # "about one adult in ten", loosely


def test_evidence_kinds_are_agencies_that_hold_the_person(assessed):
    people, found = assessed
    for pid, barriers in found.items():
        for finding in barriers.values():
            for kind in finding.evidenced_by:
                assert people.loc[pid, f"in_{kind}"] == 1
