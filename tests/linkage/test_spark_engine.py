"""The Spark engine (`joinedup link --engine spark`) gives the DuckDB run's entities.

The parity test runs the real CLI end to end on ~20,000 synthetic records (synth, extract,
ingest, review labels, link on each engine) with Spark in local[2] mode. The clustering
test checks the component-wise guarded merge the Spark engine uses against the DuckDB
run's one pass, with identifier conflicts and clerical labels in play.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from linkage.clustering import guarded_merge

SOURCES = {"dwp": "dwp_claimants.csv", "council": "council.sqlite", "nhs": "nhs",
           "housing": "housing_tenancies.csv"}
# The synthetic sources hold ~1.86 records per person: 10,750 people -> ~20,000 records.
PEOPLE = 10_750


def _spark_available() -> bool:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return False
    return shutil.which("java") is not None


def _cli(*argv: str) -> str:
    """`joinedup ARGV` in its own process (the link runs: Spark's JVM stays out of pytest)."""
    exe = Path(sys.executable).with_name("joinedup")
    out = subprocess.run([str(exe), *argv], capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"joinedup {' '.join(argv)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _cli_here(*argv: str) -> str:
    """The same CLI in this process (the quick steps: no interpreter start-up each)."""
    from click.testing import CliRunner

    from joinedup.cli import cli

    out = CliRunner().invoke(cli, list(argv))
    assert out.exit_code == 0, f"joinedup {' '.join(argv)} failed:\n{out.output}"
    return out.stdout


def _partition(run: Path) -> set[frozenset]:
    rows = duckdb.connect().execute(
        f"SELECT entity_id, source, ref FROM read_parquet('{run / 'entities.parquet'}')").fetchall()
    groups: dict[str, set] = {}
    for entity, source, ref in rows:
        groups.setdefault(entity, set()).add((source, ref))
    return {frozenset(g) for g in groups.values()}


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.skipif(not _spark_available(), reason="needs pyspark and Java (scripts/setup.sh --test)")
def test_spark_engine_gives_the_duckdb_entities_on_20000_records(tmp_path: Path) -> None:
    home, src = tmp_path / "home", tmp_path / "src"
    _cli_here("init", "--home", str(home))
    _cli("synth", "--people", str(PEOPLE), "--seed", "16", "--out", str(src), "--workers", "1")
    dirs = []
    for kind, name in SOURCES.items():
        _cli_here("extract", "--home", str(home), "--kind", kind, "--source-name",
                  f"{kind}-thanet", "--input", str(src / name), "--out", str(tmp_path / f"x-{kind}"))
        dirs.append(str(tmp_path / f"x-{kind}"))
    _cli_here("ingest", "--home", str(home), *dirs)
    # A first run to review; its top queue items labelled, so that both runs below cluster
    # with must-link and cannot-link constraints.
    _cli("link", "--home", str(home), "--out", "first")
    queue = json.loads(_cli_here("review", "next", "--home", str(home), "--count", "6", "--json"))
    assert len(queue) >= 2
    for item, label in zip(queue, ["non-match", "match", "non-match", "match"], strict=False):
        _cli_here("review", "label", "--home", str(home), item["pair_id"], "--as", label, "--by", "test")

    _cli("link", "--home", str(home), "--out", "duck")
    said = _cli("link", "--home", str(home), "--out", "spark", "--engine", "spark")
    assert "entities" in said
    duck, spark = home / "runs" / "duck", home / "runs" / "spark"

    s_duck = json.loads((duck / "summary.json").read_text())
    s_spark = json.loads((spark / "summary.json").read_text())
    assert s_duck["records"] >= 19_000, s_duck["records"]
    assert s_spark["engine"]["name"] == "spark" and s_spark["engine"]["master"] == "local[2]"
    assert s_duck["engine"] == "duckdb"
    # the same decisions: rules chosen, prior calibrated, threshold, labels applied
    assert s_spark["blocking"]["chosen"] == s_duck["blocking"]["chosen"]
    assert s_spark["blocking"]["comparisons"] == s_duck["blocking"]["comparisons"]
    assert s_spark["prior"]["blocked_pairs"] == s_duck["prior"]["blocked_pairs"]
    assert s_spark["prior"]["value"] == pytest.approx(s_duck["prior"]["value"], rel=1e-9)
    # to the last bits: see model.json below
    assert _floats_close(s_spark["thresholds"], s_duck["thresholds"])
    assert s_spark["labels"] == s_duck["labels"]
    assert s_duck["labels"]["must_link"] >= 1 and s_duck["labels"]["cannot_link"] >= 1
    assert (s_spark["merges_refused_conflicting_identifiers"]
            == s_duck["merges_refused_conflicting_identifiers"])

    # the same entities: the same partition of the records (ids are stable across runs)
    assert _partition(spark) == _partition(duck)
    assert s_spark["entities"] == s_duck["entities"]
    assert s_spark["cluster_sizes"] == s_duck["cluster_sizes"]

    # the same links, with the same probabilities (double arithmetic on both engines)
    con = duckdb.connect()
    diff = con.execute(
        f"""SELECT count(*) FILTER (WHERE d.ref_l IS NULL OR s.ref_l IS NULL),
                   max(abs(d.match_probability - s.match_probability)), count(*)
            FROM read_parquet('{duck / 'links.parquet'}') d
            FULL JOIN read_parquet('{spark / 'links.parquet'}') s
              USING (source_l, ref_l, source_r, ref_r)""").fetchall()[0]
    assert diff[0] == 0 and diff[2] > 1000, diff
    assert diff[1] < 1e-9, diff

    # the same trained model, and every output of the run contract
    m_duck = json.loads((duck / "model.json").read_text())
    m_spark = json.loads((spark / "model.json").read_text())
    assert m_duck.pop("linker_uid") != m_spark.pop("linker_uid")  # random per linker
    # Equal to the last bits: each run's blocked-pairs EM sums pattern counts in the order
    # DuckDB's GROUP BY returns them, which varies between runs of the same engine.
    assert _floats_close(m_spark, m_duck)
    for name in ("links.parquet", "entities.parquet", "model.json", "summary.json",
                 "report.html", "settings.json", "records.parquet", "entity_changes.json"):
        assert (spark / name).exists(), name
    assert "Comparisons generated by each blocking rule" in (spark / "report.html").read_text()
    assert not list((home / "runs").glob("*-spark")), "the Spark scratch directory was left behind"


def _floats_close(a: object, b: object, rel: float = 1e-9) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_floats_close(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_floats_close(x, y, rel) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=rel, abs=1e-300)
    return a == b


def _random_graph(seed: int) -> tuple[list[tuple], list[tuple], list, list]:
    rng = random.Random(seed)
    n = 400
    sources = ["a", "b", "c"]
    records = [(uid, rng.choice(sources), rng.choice([None, 1, 2, 3]), rng.choice([None, 7, 8]))
               for uid in range(1, n + 1)]
    edges = set()
    for _ in range(520):
        a, b = sorted(rng.sample(range(1, n + 1), 2))
        edges.add((a, b, round(rng.uniform(0.5, 1.0), 3)))  # ties: ordered by ids
    ordered = sorted(edges, key=lambda e: (-e[2], e[0], e[1]))
    must = [tuple(rng.sample(range(1, n + 1), 2)) for _ in range(6)]
    cannot = [(e[0], e[1]) for e in rng.sample(ordered, 12)]
    return records, ordered, must, cannot


def _components(records: list[tuple], edges: list[tuple], must: list) -> list[set[int]]:
    parent = {r[0]: r[0] for r in records}

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b, *_ in [*edges, *must]:
        parent[find(a)] = find(b)
    groups: dict[int, set[int]] = {}
    for r in records:
        groups.setdefault(find(r[0]), set()).add(r[0])
    return list(groups.values())


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("one_per_source", [False, True])
def test_guarded_merge_component_by_component_equals_one_pass(seed: int, one_per_source: bool) -> None:
    """What the Spark engine does (merge each connected component, in buckets of several,
    on its own) gives the DuckDB run's clusters and refusals, ids included."""
    records, edges, must, cannot = _random_graph(seed)
    whole, refused = guarded_merge(records, edges, one_per_source, 0.9, must, cannot)
    assert refused > 0  # the guards are exercised
    assert len(set(whole.values())) < len(records)
    components = _components(records, edges, must)
    assert len(components) > 3
    rng = random.Random(seed)
    buckets: dict[int, set[int]] = {}
    for comp in components:
        buckets.setdefault(rng.randrange(3), set()).update(comp)
    parts: dict[int, int] = {}
    refused_parts = 0
    for members in buckets.values():
        got, r = guarded_merge(
            [rec for rec in records if rec[0] in members],
            [e for e in edges if e[0] in members], one_per_source, 0.9,
            [p for p in must if p[0] in members and p[1] in members],
            [p for p in cannot if p[0] in members and p[1] in members])
        parts.update(got)
        refused_parts += r
    assert parts == whole
    assert refused_parts == refused


def test_duckdb_leaves_room_for_a_local_spark_driver() -> None:
    """With Spark local, the driver's DuckDB and the JVM share one machine: DuckDB's limit is
    its default 80% of memory less the heap and its overheads; with a cluster master the
    JVM doing the work is elsewhere, and DuckDB keeps its default."""
    from linkage.spark_engine import duckdb_memory_limit

    gib = 1 << 30
    assert duckdb_memory_limit("local[2]", "4g", 24 * gib) == int(0.8 * 24 * gib - 5 * gib)
    assert duckdb_memory_limit("local[*]", "512m", 8 * gib) == int(0.8 * 8 * gib - 640 * (1 << 20))
    assert duckdb_memory_limit("local[2]", "4g", 4 * gib) == gib  # never below 1 GiB
    assert duckdb_memory_limit("spark://cluster:7077", "4g", 24 * gib) is None
