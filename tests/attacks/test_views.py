"""The salted-view attacks on small hand-built worlds: what a byte-level salting leaks, and
that the three-stage salting (connectors.pseudonymise.SaltedPermutation) does not leak it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from attacks.views import (
    ALIGNMENT_FILTERS_NEEDED,
    cross_project_views,
    fingerprint_frequency,
    fingerprint_known_plaintext,
    fingerprints,
    frame_alignment_bound,
)
from attacks.world import REGISTER_ATTRIBUTES, Extract, build_register
from connectors.pseudonymise import SaltedPermutation

GIVEN = ["olivia", "amelia", "isla", "ava", "mia", "noah", "oliver", "george", "arthur", "leo"]
FAMILY = ["smith", "jones", "taylor", "brown", "williams", "wilson", "johnson", "davies"]


def _people(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    # Zipf-like: the i-th name is about 1/(i+1) as common as the first
    pg = 1 / np.arange(1, len(GIVEN) + 1)
    pf = 1 / np.arange(1, len(FAMILY) + 1)
    out = []
    for p in range(n):
        year, day, month = int(rng.integers(1940, 2005)), int(rng.integers(1, 29)), int(rng.integers(1, 13))
        out.append({"person": f"p{p}", "given": str(rng.choice(GIVEN, p=pg / pg.sum())),
                    "family": str(rng.choice(FAMILY, p=pf / pf.sum())), "year": f"{year}",
                    "dm": "-".join(f"{v:02d}" for v in sorted((day, month))),
                    "postcode": f"AB{int(rng.integers(1, n // 4 + 2))} 1XY"})
    return out


def _world(people: list[dict], salting: str, key_seed: int = 0) -> tuple[Extract, object]:
    """One extract, one row per person: clk_given / clk_family under a date-of-birth salt,
    clk_family_pc under a postcode salt. `salting`: "byte" (one byte stage: the old
    design) or "full" (the default SaltedPermutation)."""
    rng = np.random.default_rng(100 + key_seed)
    sizes = np.random.default_rng(99).integers(130, 150, size=len(GIVEN + FAMILY))  # popcounts vary a little
    unsalted = {}
    for name, size in zip(GIVEN + FAMILY, sizes, strict=True):
        bits = np.zeros(1024, dtype=np.uint8)
        bits[rng.choice(1024, size=int(size), replace=False)] = 1
        unsalted[name] = np.packbits(bits)
    perm = SaltedPermutation(bytes([key_seed]) * 32, 128)

    def salted(names: list[str], salts: list[str]) -> list[bytes]:
        raw = np.stack([unsalted[v] for v in names])
        salt_ids = np.array([int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")
                             for s in salts], dtype=np.uint64)  # stable across processes
        rows = perm.rows(salt_ids)
        if salting == "byte":
            out = perm._byte_stage(raw, rows, 0, (np.arange(len(raw)) * 128)[:, None])
        else:
            out = perm.apply(raw, rows)
        return [r.tobytes() for r in out]

    dob = [f"{p['year']}|{p['dm']}" for p in people]
    table = pa.table({
        "ref": [p["person"] for p in people],
        "clk_given": salted([p["given"] for p in people], dob),
        "clk_family": salted([p["family"] for p in people], dob),
        "clk_given_pc": salted([p["given"] for p in people], ["pc" + p["postcode"] for p in people]),
        "clk_family_pc": salted([p["family"] for p in people], ["pc" + p["postcode"] for p in people]),
    })
    truth = pd.DataFrame([{**p, "local_id": p["person"]} for p in people])
    extract = Extract("x", Path("."), {"encoding": {"scheme": "v2"}}, table, None, truth)
    attrs = [{a: p.get(a) for a in REGISTER_ATTRIBUTES} for p in people]
    register = build_register([("x", {p["person"]: (0, a, frozenset()) for p, a in zip(people, attrs, strict=True)})],
                              {("x", p["person"]): p["person"] for p in people})
    return extract, register


def test_fingerprint_is_the_same_for_a_name_under_byte_salting_only():
    people = _people(400, 1)
    extract, _ = _world(people, "byte")
    packed = np.frombuffer(b"".join(extract.column("clk_given")), dtype=np.uint8).reshape(len(people), 128)
    prints = fingerprints(packed, np.ones(len(people), dtype=bool))
    by_name: dict[str, set] = {}
    for p, f in zip(people, prints, strict=True):
        by_name.setdefault(p["given"], set()).add(f)
    assert all(len(s) == 1 for s in by_name.values())  # one fingerprint per name, whatever the salt
    assert len({next(iter(s)) for s in by_name.values()}) == len(by_name)  # and distinct names differ
    full, _ = _world(people, "full")
    packed = np.frombuffer(b"".join(full.column("clk_given")), dtype=np.uint8).reshape(len(people), 128)
    prints = fingerprints(packed, np.ones(len(people), dtype=bool))
    commonest = [f for p, f in zip(people, prints, strict=True) if p["given"] == GIVEN[0]]
    assert len(set(commonest)) > len(commonest) / 2  # the salt, not the name, sets the histogram


def test_known_plaintext_reads_names_through_byte_salting_and_not_through_full_salting():
    people = _people(600, 2)
    known = {p["person"] for p in people[:30]}
    byte, register = _world(people, "byte")
    got = fingerprint_known_plaintext(byte, register, known, tokens=False)
    assert got.records == 570
    # exactly the rows whose name some known person has: fingerprints of distinct names differ
    for attr in ("given", "family"):
        seen = {p[attr] for p in people[:30]}
        assert got.details[f"{attr}_recovered"] == sum(p[attr] in seen for p in people[30:]) / 570
    assert got.rate > 0.002  # full names narrow the register down
    full, register = _world(people, "full")
    got_full = fingerprint_known_plaintext(full, register, known, tokens=False)
    # only rows equal to a known row in some view: same name and salt (date of birth or postcode)
    for attr in ("given", "family"):
        seen = {(p[attr], s) for p in people[:30] for s in (p["postcode"], p["year"] + p["dm"])}
        share = sum((p[attr], p["postcode"]) in seen or (p[attr], p["year"] + p["dm"]) in seen
                    for p in people[30:]) / 570
        # (plus chance hits: a random fingerprint equal to a known row's, the name right by luck)
        assert share <= got_full.details[f"{attr}_recovered"] < min(0.2, share + 0.03)
    assert got_full.rate < got.rate


def test_equal_second_view_tells_family_name_and_postcode():
    people = _people(200, 3)
    people[1].update(family=people[0]["family"], postcode=people[0]["postcode"])  # one household
    extract, register = _world(people, "full")
    got = fingerprint_known_plaintext(extract, register, {"p0"}, tokens=False)
    assert got.details["postcode_recovered"] >= 1 / 199
    # the row of p1 gets family and postcode from p0's equal clk_family_pc
    assert got.reidentified >= 1 / len(register.candidates({"family": people[0]["family"],
                                                            "postcode": people[0]["postcode"]}))


def test_frequency_alignment_of_fingerprints_ranks_names():
    people = _people(3000, 4)
    byte, register = _world(people, "byte")
    got = fingerprint_frequency(byte, register, [byte])
    assert got.details["given_recovered"] > 0.5  # the commonest names, ranked the same
    full, register = _world(people, "full")
    assert fingerprint_frequency(full, register, [full]).details["given_recovered"] < 0.1


def test_cross_project_repeat_counts_link_more_than_the_signature_without_them():
    from attacks.layout import cross_project
    from attacks.views import _view_signatures

    people = _people(300, 5)
    a, _ = _world(people, "full", key_seed=0)
    b, _ = _world(people, "full", key_seed=1)  # another project: other positions, same repeats
    base = cross_project(a, b)[1]
    sig, _pops = _view_signatures(a, "exact")
    family_pc = a.column("clk_family_pc")
    assert [s[-1] for s in sig] == [family_pc.count(v) for v in family_pc]  # repeat count of the exact filter
    exact, with_prints, near = cross_project_views(a, b)
    assert exact.attack.endswith("exact filters") and with_prints.attack.endswith("fingerprints")
    assert "near-duplicate" in near.attack and near.rate > base.rate
    assert exact.rate > base.rate + 0.02
    # only the right row counts: with b's rows relabelled at random the same links earn ~nothing
    shuffled = b.truth.copy()
    shuffled["local_id"] = shuffled["local_id"].sample(frac=1, random_state=0).tolist()
    wrong = Extract("x", Path("."), b.manifest, b.linkage, None, shuffled)
    assert cross_project_views(a, wrong)[0].rate < exact.rate / 3


def test_frame_alignment_bound_counts_distinct_filters_shared_by_a_date_of_birth_and_a_postcode():
    people = _people(300, 6)
    twins = people[:ALIGNMENT_FILTERS_NEEDED]
    for j, p in enumerate(twins):  # one household of same-day births: 6 given names, one family name
        p.update(given=GIVEN[j], family="smith", year="1990", dm="01-05", postcode="ZZ1 1ZZ")
    extract, _ = _world(people, "full")
    got = frame_alignment_bound([extract])
    assert got.details["max_shared_filters"] == ALIGNMENT_FILTERS_NEEDED + 1  # 6 given + 1 family
    assert got.reidentified == ALIGNMENT_FILTERS_NEEDED  # those rows only
    assert frame_alignment_bound([extract.__class__("x", extract.directory, {"encoding": {"scheme": "v1"}},
                                                    extract.linkage, None, extract.truth)]).rate == 1.0


def test_near_duplicate_counts_count_similar_filters_in_the_column():
    from attacks.views import near_duplicate_counts

    rng = np.random.default_rng(7)
    base = np.zeros(1024, dtype=np.uint8)
    base[rng.choice(1024, size=140, replace=False)] = 1
    variant = base.copy()
    variant[np.flatnonzero(base)[:30]] = 0  # Dice with base = 2 * 110 / 250 = 0.88
    other = np.zeros(1024, dtype=np.uint8)
    other[rng.choice(1024, size=140, replace=False)] = 1
    packed = np.packbits(np.stack([base, base, variant, other, other]), axis=1)
    present = np.array([True, True, True, True, False])
    assert near_duplicate_counts(packed, present, 1.0) == [2, 2, 1, 1, 0]
    assert near_duplicate_counts(packed, present, 0.8) == [3, 3, 3, 1, 0]
