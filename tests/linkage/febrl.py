"""The FEBRL data sets' columns as a connector mapping: the one the benchmarks and the FEBRL
tests extract with (the same fields plaintext Splink compares; soc_sec_id is left out), and
a FEBRL deduplication set run through the CLI as a data officer runs it."""

from __future__ import annotations

import json
from pathlib import Path

FEBRL_MAPPING = """
[identity]
local_id = "rec_id"
given_name = "given_name"
family_name = "surname"
date_of_birth = { column = "date_of_birth", format = "%Y%m%d" }
postcode = { column = "postcode", validate = false }
address = ["street_number", "address_1", "address_2"]
locality = "suburb"
"""

# A user's data with fewer fields: names, date of birth and town (no postcode, no address).
FEWER_FIELDS_MAPPING = """
[identity]
local_id = "rec_id"
given_name = "given_name"
family_name = "surname"
date_of_birth = { column = "date_of_birth", format = "%Y%m%d" }
locality = "suburb"
"""


def dedupe_through_cli(work: Path, frame, mapping: str = FEBRL_MAPPING) -> tuple[set, set, dict]:
    """`init`, `extract`, `ingest`, `link` with the default settings on one FEBRL
    deduplication frame: (same-entity pairs found, true pairs, the run's summary), pairs
    as sorted (rec_id, rec_id)."""
    import duckdb
    from click.testing import CliRunner

    from joinedup.cli import cli

    def run(*args: str) -> None:
        out = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert out.exit_code == 0, out.output

    home = work / "home"
    run("init", "--home", str(home))
    (work / "map.toml").write_text(mapping)
    frame.to_csv(work / "data.csv")
    run("extract", "--home", str(home), "--kind", "csv", "--source-name", "febrl",
        "--input", str(work / "data.csv"), "--mapping", str(work / "map.toml"), "--out", str(work / "x"))
    run("ingest", "--home", str(home), str(work / "x"))
    run("link", "--home", str(home), "--out", "run")
    out = home / "runs" / "run"
    rows = duckdb.connect().execute(
        f"SELECT e.entity_id, k.local_id FROM read_parquet('{out / 'entities.parquet'}') e "
        f"JOIN read_parquet('{work / 'x' / 'keymap.parquet'}') k USING (ref)").fetchall()

    def pairs(groups: dict[str, list[str]]) -> set:
        return {tuple(sorted((a, b))) for recs in groups.values() for i, a in enumerate(recs) for b in recs[i + 1:]}

    found: dict[str, list[str]] = {}
    for entity, local in rows:
        found.setdefault(entity, []).append(local)
    people: dict[str, list[str]] = {}
    for rec in frame.index:
        people.setdefault(rec.split("-")[1], []).append(rec)
    return pairs(found), pairs(people), json.loads((out / "summary.json").read_text())
