"""The attack suite breaks the v1 encoding (so the attacks are real) and not the default one."""

from __future__ import annotations

import pytest

from attacks import load_world, run_all
from attacks.bloom import bigrams, decode, learn_positions
from connectors.extract import pseudonymise_extract
from connectors.keys import KeyRing
from connectors.pseudonymise import EncodingSettings

INPUTS = {"dwp": "dwp_claimants.csv", "housing": "housing_tenancies.csv"}
MASTER = bytes(range(32))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from connectors.synth import write_synthetic_sources

    root = tmp_path_factory.mktemp("attacks")
    write_synthetic_sources(root / "src", 3000, 9)
    out = {}
    for scheme in ("v1", "v2"):
        dirs = {}
        for project in ("p1", "p2"):
            for kind, name in INPUTS.items():
                d = root / scheme / project / kind
                pseudonymise_extract(KeyRing(MASTER, project), kind, kind, str(root / "src" / name), None, d,
                                     settings=EncodingSettings(scheme=scheme))
                dirs[(project, kind)] = d
        world = load_world(root / "src", {k: dirs[("p1", k)] for k in INPUTS}, INPUTS)
        other = load_world(root / "src", {"dwp": dirs[("p2", "dwp")]}, {"dwp": INPUTS["dwp"]})
        out[scheme] = {(r.attack, r.extract): r for r in run_all(world, other, known_fraction=0.02)}
    return out


def test_layout_attacks_break_v1_and_not_v2(results):
    v1, v2 = results["v1"], results["v2"]
    for kind in INPUTS:
        assert v1[("row order -> keymap", kind)].rate == 1.0
        assert v1[("row order -> keymap", kind)].details["manifest_confirms_keymap"]
        assert v2[("row order -> keymap", kind)].rate < 0.01
        assert not v2[("row order -> keymap", kind)].details["manifest_confirms_keymap"]
        length_v1 = v1[("ciphertext length -> indicators", kind)].details
        length_v2 = v2[("ciphertext length -> indicators", kind)].details
        assert length_v1["distinct_lengths"] > 5
        assert length_v2["distinct_lengths"] == 1
        assert length_v2["code_set_accuracy"] == length_v2["baseline_accuracy"]
    assert v1[("cross-project: by row position", "dwp")].rate > 0.99
    assert v1[("cross-project: by value-count and popcount signature", "dwp")].rate > 0.5
    assert v2[("cross-project: by row position", "dwp")].rate < 0.01
    assert v2[("cross-project: by value-count and popcount signature", "dwp")].rate < 0.03


def test_token_attacks_break_v1_and_not_v2(results):
    v1, v2 = results["v1"], results["v2"]
    assert v1[("frequency: tk_sex", "dwp")].details["value_recovered"] == 1.0
    assert v1[("known plaintext (1% of people) + public frequency lists", "dwp")].rate > 0.3
    assert v2[("known plaintext (1% of people) + public frequency lists", "dwp")].rate < 0.02
    assert v2[("frequency: all columns combined (profile)", "dwp")].rate < 0.01
    for (attack, _extract), r in v2.items():
        if attack.startswith(("cross-project: signature with repeat counts of", "within-salt graph matching")):
            continue  # the known, unmet exceptions (docs/PRIVACY.md promises 1 and 4): next tests
        assert r.rate < 0.03, (attack, r.rate)


def test_within_salt_graph_matching_is_a_known_leak_of_v2(results):
    """Not a promise kept: the Dice of two filters under one postcode salt is public, so
    each postcode's name-similarity graph can be matched to a register with addresses
    (issue #12; attacks.salt_graph). v1 has no postcode-salted filters to attack this way."""
    graph = "within-salt graph matching (postcode groups by address, register with addresses)"
    assert results["v2"][(graph, "dwp")].rate > 0.01
    assert results["v1"][(graph, "dwp")].details["skipped"] == "no postcode-salted filters"


def test_cross_project_filter_repeat_counts_are_a_known_leak_of_v2(results):
    """Not a promise kept: the filters' repeat counts (exact, and more so near-duplicate)
    link two projects' extracts of one source beyond the 1% target (issue #12)."""
    v2 = results["v2"]
    base = v2[("cross-project: by value-count and popcount signature", "dwp")].rate
    exact = v2[("cross-project: signature with repeat counts of exact filters", "dwp")].rate
    near = v2[("cross-project: signature with repeat counts of near-duplicate filters (Dice >= 0.4)", "dwp")].rate
    assert base < exact < near


def test_filter_attacks_decode_v1_names_and_nothing_of_v2(results):
    v1, v2 = results["v1"], results["v2"]
    name = "pattern mining on Bloom filters"
    assert v1[(name, "dwp")].details["family_decoded"] > 0.05
    assert v2[(name, "dwp")].details["family_decoded"] < 0.005
    assert v2[(name, "dwp")].details["given_decoded"] < 0.005


def test_learnt_positions_decode_an_unsalted_filter():
    import numpy as np

    rng = np.random.default_rng(0)
    # sorted: a set's order of strings changes with each process's hash seed; 1024 bits so
    # that the six toy names' bigrams rarely share a position (sharing hides a position)
    positions = {b: rng.choice(1024, size=6, replace=False) for b in
                 sorted(set().union(*(bigrams(n) for n in ("ann", "anna", "bob", "bobby", "hannah", "nan"))))}

    def encode(name):
        f = np.zeros(1024, dtype=np.uint8)
        for b in bigrams(name):
            f[positions[b]] = 1
        return f

    names = ["ann", "anna", "bob", "bobby", "hannah", "nan"] * 3
    bits = np.stack([encode(n) for n in names])
    learnt = learn_positions(bits, names)
    assert decode(bits, ["ann", "anna", "bob", "bobby", "hannah", "nan"], learnt) == names


def test_salted_view_attacks_run_in_the_suite(results):
    """Unsalted v1 filters are their own fingerprint: the dictionary reads names; the v2
    salting leaves no fingerprint, and no pair of salt frames shares enough filters."""
    v1, v2 = results["v1"], results["v2"]
    kp = "salted views: fingerprints + equal values (1% known) + tokens"
    assert v1[(kp, "dwp")].details["given_recovered"] > 0.05
    assert v1[(kp, "dwp")].details["extracts_pooled"] == len(INPUTS)
    assert v2[(kp, "dwp")].details["given_recovered"] < 0.01
    assert v2[("salted views: fingerprint frequency alignment (no plaintext)", "dwp")].details["given_recovered"] < 0.01
    bound = "frame alignment bound (pairwise; not a re-identification)"
    assert v1[(bound, "all")].rate == 1.0
    assert v2[(bound, "all")].rate < 0.01 and v2[(bound, "all")].details["max_shared_filters"] >= 2
    exact = "cross-project: signature with repeat counts of exact filters"
    assert v2[(exact, "dwp")].rate >= v2[("cross-project: by value-count and popcount signature", "dwp")].rate - 0.005
