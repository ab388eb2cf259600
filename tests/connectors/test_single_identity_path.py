"""Person resolution encodes one identity at a time with its own (scalar) path: it must give
exactly the batch path's linkage row, for real source records with all their gaps and errors."""

from __future__ import annotations

import os

from connectors.keys import KeyRing
from connectors.pseudonymise import IdentityEncoder
from connectors.sources import read_records
from connectors.standardise import standardise_identity
from connectors.synth import write_synthetic_sources


def test_single_identity_path_equals_batch_path(tmp_path):
    write_synthetic_sources(tmp_path / "src", people=300, seed=11)
    idents = []
    for kind, path in (("dwp", "dwp_claimants.csv"), ("nhs", "nhs"), ("housing", "housing_tenancies.csv")):
        for record in read_records(kind, str(tmp_path / "src" / path)):
            idents.append(standardise_identity(record.identity)[0])
    assert len(idents) > 300
    keyring = KeyRing(os.urandom(32), "project-x")
    batch = IdentityEncoder(keyring).encode_batch(idents)
    single = IdentityEncoder(keyring)  # a fresh encoder: no cache shared with the batch run
    nulls = 0
    for i, ident in enumerate(idents):
        row = single.encode_standardised(ident)
        assert row.keys() == batch.keys()
        for column, value in row.items():
            assert batch[column][i].as_py() == value, (i, column)
            nulls += value is None
    assert nulls > 0  # gaps were exercised, not only complete identities
