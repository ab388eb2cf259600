"""Graph matching inside postcode salt groups (attacks.salt_graph) on a real extract: the
Dice of two filters under one salt carries the names' similarity, and that is what the
attack reads. With the postcode-salted name filters replaced by random ones of the same
popcount, it learns next to nothing.

The first assertion records a measured weakness of the default encoding (bench/
RESULTS-privacy.md, session 11): when the encoding stops leaking the within-postcode
similarity graph, it fails, and this test should then show the attack on a leaking
encoding instead."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from attacks import load_world
from attacks.salt_graph import address_groups, within_salt_graph
from attacks.world import Extract
from connectors.extract import pseudonymise_extract
from connectors.keys import KeyRing, new_master_secret
from connectors.synth import write_synthetic_sources

INPUTS = {"dwp": "dwp_claimants.csv", "council": "council.sqlite", "nhs": "nhs", "housing": "housing_tenancies.csv"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("salt-graph")
    write_synthetic_sources(root / "src", 5_000, 3)
    return root


def _nhs_world(root, settings=None):
    out = root / f"nhs-{len(list(root.iterdir()))}"
    pseudonymise_extract(KeyRing(new_master_secret(), "p"), "nhs", "nhs", str(root / "src" / "nhs"), None, out,
                         settings=settings)
    return load_world(root / "src", {"nhs": out}, INPUTS)


@pytest.fixture(scope="module")
def nhs_world(sources):
    return _nhs_world(sources)


def _with_random_name_filters(extract: Extract, seed: int) -> Extract:
    """The extract with clk_given_pc and clk_family_pc replaced by random filters of the
    same popcount: the rows, groups and addresses stay, the names' similarity is gone."""
    rng = np.random.default_rng(seed)
    table = extract.linkage
    for column in ("clk_given_pc", "clk_family_pc"):
        bits, present = extract.filters(column)
        noise = []
        for row, ok in zip(bits, present, strict=True):
            if not ok:
                noise.append(None)
                continue
            fresh = np.zeros(len(row), dtype=np.uint8)
            fresh[rng.choice(len(row), size=int(row.sum()), replace=False)] = 1
            noise.append(np.packbits(fresh).tobytes())
        table = table.set_column(table.schema.get_field_index(column), column, pa.array(noise, pa.binary()))
    return Extract(extract.name, extract.directory, extract.manifest, table, extract.content, extract.truth)


def test_address_groups_are_the_postcodes(nhs_world):
    """Step 1 needs no key: unrelated salts give chance-level Dice, one street well above."""
    extract = nhs_world.extracts[0]
    postcodes = extract.truth["postcode"].tolist()
    groups = [g for g in address_groups(extract) if len(g) > 1]
    pure = sum(len({postcodes[i] for i in g}) == 1 for g in groups)
    assert groups and pure / len(groups) > 0.95


def test_the_attack_reads_the_names_similarity_inside_a_postcode(nhs_world):
    extract, register = nhs_world.extracts[0], nhs_world.register
    leaked = within_salt_graph(extract, register)
    assert leaked.details["groups_of_2_or_more"] > 100
    assert leaked.rate > 0.01  # the default encoding's measured weakness (see the module docstring)
    blind = within_salt_graph(_with_random_name_filters(extract, 1), register)
    assert blind.rate < leaked.rate / 4


def test_salting_by_the_other_name_leaves_no_postcode_graph(sources, nhs_world):
    """`[encoding] name_postcode_salt = "postcode+other-name"` (off by default: it costs
    FEBRL recall): a salt group of the postcode views is then a household or one person."""
    leaked = within_salt_graph(nhs_world.extracts[0], nhs_world.register)
    world = _nhs_world(sources, {"name_postcode_salt": "postcode+other-name"})
    split = within_salt_graph(world.extracts[0], world.register)
    assert split.rate < 0.005 and split.rate < leaked.rate / 4
