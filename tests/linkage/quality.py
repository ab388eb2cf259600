"""Ground-truth evaluation of a link run on the synthetic sources (tests and bench).

Pairwise precision and recall of the entities against the truth people, counted
separately for cross-source links and within-source duplicates.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

INPUTS = {"dwp": "dwp_claimants.csv", "council": "council.sqlite", "nhs": "nhs",
          "housing": "housing_tenancies.csv"}


def build_extracts(src: Path, staged: Path, keyring, people: int, seed: int) -> dict[str, Path]:
    """Synthetic sources -> the four real extracts; returns kind -> extract dir."""
    from connectors.extract import pseudonymise_extract
    from connectors.synth import write_synthetic_sources

    write_synthetic_sources(src, people, seed)
    out = {}
    for kind, name in INPUTS.items():
        pseudonymise_extract(keyring, kind, f"{kind}-thanet", str(src / name), None, staged / kind)
        out[kind] = staged / kind
    return out


def pair_quality(run_dir: Path, src: Path, staged: Path) -> dict[str, dict[str, float]]:
    """Precision / recall of same-entity pairs, cross-source and within-source."""
    con = duckdb.connect()
    keymaps = " UNION ALL ".join(
        f"SELECT '{kind}' AS kind, '{kind}-thanet' AS source, local_id, ref "
        f"FROM read_parquet('{staged / kind / 'keymap.parquet'}')"
        for kind in INPUTS
    )
    con.execute(
        f"""CREATE TABLE rec AS
            SELECT k.source, k.ref, t.person_id, e.entity_id
            FROM ({keymaps}) k
            JOIN read_csv('{src / 'ground_truth.csv'}', all_varchar=true) t
              ON t.source = k.kind AND t.local_id = k.local_id
            JOIN read_parquet('{run_dir / 'entities.parquet'}') e
              ON e.source = k.source AND e.ref = k.ref"""
    )
    out = {}
    for name, cond in (("cross_source", "a.source <> b.source"), ("within_source", "a.source = b.source")):
        def count(join: str, cond: str = cond) -> int:
            return con.execute(
                f"SELECT count(*) FROM rec a JOIN rec b ON {join} AND {cond} "
                "AND (a.source, a.ref) < (b.source, b.ref)"
            ).fetchall()[0][0]

        truth = count("a.person_id = b.person_id")
        found = count("a.entity_id = b.entity_id")
        right = count("a.person_id = b.person_id AND a.entity_id = b.entity_id")
        out[name] = {
            "true_pairs": truth,
            "found_pairs": found,
            "precision": right / found if found else 1.0,
            "recall": right / truth if truth else 1.0,
        }
    return out
