"""Test-only stand-ins for the linkage unit's pieces collation needs, following
docs/CONTRACTS.md, used while (or where) the real ones are not the subject of the test:

- `write_truth_run`: a link run whose entities are the synthetic ground truth
  (RUN_DIR/entities.parquet + HOME/runs/CURRENT), i.e. a perfect linkage;
- `TokenScorer`: scores an encoded identity against the ingested linkage files with
  exact keyed-token agreement (a crude Fellegi-Sunter stand-in).

The connectors (synth, readers, encoder, content encryption), ingest, consent, policies,
audit and the users store are all the real ones.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.extract import pseudonymise_extract
from connectors.synth import write_synthetic_sources

INPUTS = {"dwp": "dwp_claimants.csv", "council": "council.sqlite", "nhs": "nhs",
          "housing": "housing_tenancies.csv"}
SOURCE_NAMES = {kind: f"{kind}-thanet" for kind in INPUTS}


def build_linked_home(home, people: int = 600, seed: int = 5) -> dict:
    """Synthetic sources -> real extracts under the home -> a perfect link run."""
    src = home.root.parent / f"{home.root.name}-src"
    write_synthetic_sources(src, people, seed)
    staged = home.root.parent / f"{home.root.name}-staged"
    manifests = {}
    for kind, name in INPUTS.items():
        manifests[kind] = pseudonymise_extract(home.keyring(), kind, SOURCE_NAMES[kind],
                                               str(src / name), None, staged / kind)
    install_extracts(home, staged, manifests)
    entities = write_truth_run(home, src, staged, manifests)
    return {"src": src, "staged": staged, "manifests": manifests, "entities": entities}


def install_extracts(home, staged: Path, manifests: dict) -> None:
    """The linkage unit's real ingest (verifies hashes and key ids, registers, copies)."""
    from linkage.ingest import ingest_extracts

    ingest_extracts([staged / kind for kind in manifests], home.extracts_dir, home.store_path,
                    home.project_id, home.keyring().key_ids())


def write_truth_run(home, src: Path, staged: Path, manifests: dict) -> pd.DataFrame:
    truth = pd.read_csv(src / "ground_truth.csv", dtype=str)
    frames = []
    for kind, manifest in manifests.items():
        keymap = pq.read_table(staged / kind / "keymap.parquet").to_pandas()
        joined = keymap.merge(truth[truth.source == kind], on="local_id")
        frames.append(pd.DataFrame({"entity_id": "E" + joined.person_id.str[1:],
                                    "source": manifest["source"], "ref": joined.ref,
                                    "person_id": joined.person_id, "local_id": joined.local_id,
                                    "kind": kind}))
    entities = pd.concat(frames, ignore_index=True)
    run = home.runs_dir / "run-truth"
    run.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(entities[["entity_id", "source", "ref"]], preserve_index=False),
                   run / "entities.parquet")
    (home.runs_dir / "CURRENT").write_text("run-truth\n")
    return entities


class TokenScorer:
    """Scores against every ingested linkage file: strong identifiers or name+DOB."""

    def __init__(self, home) -> None:
        parts = []
        for path in home.extracts_dir.glob("*/*/linkage.parquet"):
            frame = pq.read_table(path, columns=["ref", "tk_nino", "tk_nhs", "mk_name_dob",
                                                 "mk_given_dob", "mk_family_dob"]).to_pandas()
            frame["source"] = path.parent.parent.name
            parts.append(frame)
        self.rows = pd.concat(parts, ignore_index=True)
        self.calls = 0

    def __call__(self, run_dir: Path, encoded: dict) -> list[dict]:
        self.calls += 1
        r = self.rows

        def same(col):
            value = encoded.get(col)
            return (r[col] == value) if value is not None else pd.Series(False, index=r.index)

        strong = same("tk_nino") | same("tk_nhs") | same("mk_name_dob")
        weak = same("mk_given_dob") | same("mk_family_dob")
        hits = r[strong | weak]
        return [{"source": s, "ref": ref, "match_probability": 0.995 if st else 0.6}
                for s, ref, st in zip(hits.source, hits.ref, strong[hits.index], strict=True)]
