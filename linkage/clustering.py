"""Entities with stable ids across runs.

Clusters come from Splink's connected components at the cluster threshold. Each new
cluster inherits the id of the previous run's entity it shares most records with; a
record is "the same" as in the previous run when it has the same (source, ref), or, for
a re-extracted source (new random refs), the same source and the same token fingerprint.
Ids are handed out greedily by overlap, so when a previous entity splits, the largest
part keeps its id; when two merge, the one contributing most records survives.
"""

from __future__ import annotations

import gc
import secrets
from pathlib import Path
from typing import Any

import duckdb


def fingerprint_sql(alias: str) -> str:
    """Equal fingerprints = same identity values (the digest `linkage.ingest.stack_sql`
    computes from the encoding's identity columns)."""
    return f"{alias}.identity_fp"


def new_entity_id() -> str:
    return "E" + secrets.token_hex(8)


def assign_stable_ids(
    con: duckdb.DuckDBPyConnection,
    clusters_table: str,
    previous_records: Path | None,
) -> dict[str, Any]:
    """Create table `entities` (unique_id, source, ref, entity_id) from `clusters_table`
    (unique_id, source, ref, fingerprint, cluster_id); returns the change report."""
    if previous_records is not None and Path(previous_records).exists():
        con.execute(
            "CREATE TEMP TABLE prev AS SELECT source, ref, fingerprint, entity_id "
            f"FROM read_parquet('{_q(str(previous_records))}')"
        )
    else:
        con.execute(
            "CREATE TEMP TABLE prev (source VARCHAR, ref VARCHAR, fingerprint VARCHAR, "
            "entity_id VARCHAR)"
        )
    # The previous entity of each record: by (source, ref), else by (source, fingerprint).
    con.execute(
        f"""
        CREATE TEMP TABLE carried AS
        SELECT c.unique_id, c.cluster_id,
               coalesce(by_ref.entity_id, by_fp.entity_id) AS prev_entity
        FROM {clusters_table} c
        LEFT JOIN prev by_ref ON by_ref.source = c.source AND by_ref.ref = c.ref
        LEFT JOIN (SELECT source, fingerprint, min(entity_id) AS entity_id
                   FROM prev GROUP BY ALL) by_fp
               ON by_fp.source = c.source AND by_fp.fingerprint = c.fingerprint
        """
    )
    overlaps = con.execute(
        """
        SELECT cluster_id::VARCHAR AS cluster, prev_entity, count(*) AS n FROM carried
        WHERE prev_entity IS NOT NULL GROUP BY ALL
        ORDER BY n DESC, prev_entity, cluster
        """
    ).fetchall()
    assigned: dict[str, str] = {}
    taken: set[str] = set()
    prev_clusters: dict[str, set[str]] = {}
    cluster_prevs: dict[str, set[str]] = {}
    for cluster, prev, _n in overlaps:
        prev_clusters.setdefault(prev, set()).add(cluster)
        cluster_prevs.setdefault(cluster, set()).add(prev)
        if cluster not in assigned and prev not in taken:
            assigned[cluster] = prev
            taken.add(prev)
    all_clusters = [
        r[0] for r in con.execute(f"SELECT DISTINCT cluster_id::VARCHAR FROM {clusters_table}").fetchall()
    ]
    for cluster in all_clusters:
        if cluster not in assigned:
            assigned[cluster] = new_entity_id()
    con.execute("CREATE TEMP TABLE id_map (cluster_id VARCHAR, entity_id VARCHAR)")
    _bulk_insert(con, assigned)
    con.execute(
        f"""
        CREATE TABLE entities AS
        SELECT c.unique_id, c.source, c.ref, m.entity_id
        FROM {clusters_table} c JOIN id_map m ON m.cluster_id = c.cluster_id::VARCHAR
        """
    )
    previous_ids = {r[0] for r in con.execute("SELECT DISTINCT entity_id FROM prev").fetchall()}
    kept = previous_ids & set(assigned.values())
    # Which entities changed, with ids (entity_changes.json of the run; `joinedup runs show`).
    new_ids = sorted(assigned[c] for c in all_clusters if c not in cluster_prevs)
    merged = sorted(
        ({"entity_id": assigned[c], "from": sorted(prevs)} for c, prevs in cluster_prevs.items()
         if len(prevs) > 1), key=lambda x: x["entity_id"])
    split = sorted(
        ({"entity_id": prev, "into": sorted(assigned[c] for c in clusters)}
         for prev, clusters in prev_clusters.items() if len(clusters) > 1),
        key=lambda x: x["entity_id"])
    retired = sorted(previous_ids - kept)
    details = {"new": new_ids, "merged": merged, "split": split, "retired": retired}
    return {
        "entities": len(all_clusters),
        "previous_entities": len(previous_ids),
        "kept": len(kept),
        "new": len(new_ids),
        "merged": len(merged),
        "split": len(split),
        "retired": len(retired),
        "details": details,
    }


def _bulk_insert(con: duckdb.DuckDBPyConnection, assigned: dict[str, str]) -> None:
    import pyarrow as pa

    table = pa.table({"cluster_id": list(assigned.keys()), "entity_id": list(assigned.values())})
    con.register("id_map_arrow", table)
    con.execute("INSERT INTO id_map SELECT * FROM id_map_arrow")
    con.unregister("id_map_arrow")


def _q(value: str) -> str:
    return value.replace("'", "''")


def cluster_with_identifier_guard(
    con: duckdb.DuckDBPyConnection,
    predictions_table: str,
    records_table: str,
    threshold: float,
    one_record_per_source: bool = False,
    join_groups_threshold: float | None = None,
    must_link: list[tuple[int, int]] = (),
    cannot_link: list[tuple[int, int]] = (),
    identifiers_across_sources: bool = False,
) -> tuple[str, int]:
    """Connected components of the pairs at or above `threshold`, strongest pair first,
    refusing a merge that would join two records of one source holding different NHS
    numbers (or NINOs): one weak link must not chain two people together when a
    source's own identifiers say they differ. With `identifiers_across_sources` two
    records of any sources holding different NHS numbers (or NINOs) conflict too: the
    tokens are keyed alike in every extract, so they name one person wherever held.
    Creates a table (unique_id, cluster_id)
    covering every record; returns its name and the number of merges refused.

    `one_record_per_source` (for sources known to hold no duplicates, e.g. FEBRL's two
    files) also refuses any merge that would put two records of one source together,
    which makes the clustering one-to-one between such sources.

    `join_groups_threshold`: a link that would join two groups of two or more records each
    must reach it (a weaker link still joins a single record to a group). One weak false
    link between two true pairs otherwise makes a false entity of four (FEBRL4: 12 links
    at 0.74-0.85 made 40 false pairs); a refused link is left for clerical review.

    Clerical labels (unique_id pairs): `must_link` pairs are joined first, whatever their
    score (or none: a pair no blocking rule found); no merge may put the two records of a
    `cannot_link` pair in one entity.

    Plain connected components (Splink's) merge whole chains through a single link;
    taking pairs in descending probability means the strong links form the clusters
    first and the weak link that would join two conflicting clusters is the one refused.
    """
    # Many small sets and dicts, no reference cycles: the cyclic GC's full passes over
    # them cost more than the merging itself (0.04-0.17 s on FEBRL), so it waits.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _guarded_components(con, predictions_table, records_table, threshold,
                                   one_record_per_source, join_groups_threshold,
                                   list(must_link), list(cannot_link),
                                   identifiers_across_sources)
    finally:
        if was_enabled:
            gc.enable()


def _guarded_components(
    con: duckdb.DuckDBPyConnection,
    predictions_table: str,
    records_table: str,
    threshold: float,
    one_record_per_source: bool,
    join_groups_threshold: float | None = None,
    must_link: list[tuple[int, int]] | None = None,
    cannot_link: list[tuple[int, int]] | None = None,
    identifiers_across_sources: bool = False,
) -> tuple[str, int]:
    import pyarrow as pa

    edges = con.execute(
        f"SELECT unique_id_l, unique_id_r, match_probability FROM {predictions_table} "
        f"WHERE match_probability >= {float(threshold)} "
        "ORDER BY match_probability DESC, unique_id_l, unique_id_r"
    ).fetchall()
    # Only records on an edge or a label can join anything: every other record is its own
    # cluster (its unique_id), so the merge reads just the records it may join. A merge
    # depends only on the two groups it joins, so the clusters and ids are those of the
    # merge over every record (tests/linkage: the same partition and ids).
    labelled = [uid for pair in (*(must_link or []), *(cannot_link or [])) for uid in pair]
    touched = pa.table({"unique_id": pa.array(
        sorted({uid for e in edges for uid in e[:2]}.union(labelled)), pa.int64())})
    con.register("jup_touched", touched)
    try:
        records = con.execute(
            f"SELECT r.unique_id, r.source, r.tk_nhs, r.tk_nino FROM {records_table} r "
            "SEMI JOIN jup_touched t ON t.unique_id = r.unique_id ORDER BY r.unique_id"
        ).fetchall()
    finally:
        con.unregister("jup_touched")
    cluster_of, refused = guarded_merge(records, edges, one_record_per_source,
                                        join_groups_threshold, must_link, cannot_link,
                                        identifiers_across_sources)
    table = pa.table({"unique_id": pa.array([r[0] for r in records], pa.int64()),
                      "cluster_id": pa.array([cluster_of[r[0]] for r in records], pa.int64())})
    name = "guarded_clusters"
    con.register("guarded_clusters_arrow", table)
    con.execute(
        f"""CREATE OR REPLACE TABLE {name} AS
            SELECT r.unique_id, coalesce(g.cluster_id, r.unique_id) AS cluster_id
            FROM {records_table} r LEFT JOIN guarded_clusters_arrow g USING (unique_id)
            ORDER BY r.unique_id""")
    con.unregister("guarded_clusters_arrow")
    return name, refused


def guarded_merge(
    records: list[tuple],
    edges: list[tuple[int, int, float]],
    one_record_per_source: bool,
    join_groups_threshold: float | None = None,
    must_link: list[tuple[int, int]] | None = None,
    cannot_link: list[tuple[int, int]] | None = None,
    identifiers_across_sources: bool = False,
) -> tuple[dict[int, int], int]:
    """The guarded merge (`cluster_with_identifier_guard`) of `records` (unique_id,
    source, tk_nhs, tk_nino), sorted by unique_id, over `edges` (unique_id_l,
    unique_id_r, match_probability) sorted strongest first; returns each record's cluster
    id (the unique_id of its cluster's root) and the merges refused.

    A merge reads and changes only the two groups it joins, so a connected component of
    the edges (with the must-link pairs) can be merged on its own: given the component's
    records and edges in the same order, it ends in the same clusters with the same ids
    (the Spark engine merges one component per task)."""
    index = {uid: i for i, (uid, *_rest) in enumerate(records)}
    parent = list(range(len(records)))
    # per root: {(source, "nhs" | "nino"): set of tokens}, only for records that have one
    # (the source is "*" when identifiers are compared across sources);
    # with one_record_per_source also {(source, "record"): {record index}}
    ids: dict[int, dict[tuple[str, str], set]] = {}
    for i, (_uid, source, nhs, nino) in enumerate(records):
        held: dict[tuple[str, str], set] = {}
        if one_record_per_source:
            held[(source, "record")] = {i}
        scope = "*" if identifiers_across_sources else source
        if nhs is not None:
            held[(scope, "nhs")] = {nhs}
        if nino is not None:
            held[(scope, "nino")] = {nino}
        if held:
            ids[i] = held

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    size = [1] * len(records)
    # per root: the records it must never hold (cannot-link partners of its members)
    partners: dict[int, set[int]] = {}
    for uid_a, uid_b in cannot_link or []:
        if uid_a in index and uid_b in index:
            i, j = index[uid_a], index[uid_b]
            partners.setdefault(i, set()).add(j)
            partners.setdefault(j, set()).add(i)

    def conflicts(a: int, b: int) -> bool:
        return (any(find(j) == a for j in partners.get(b, ()))
                or any(find(j) == b for j in partners.get(a, ())))

    def join(a: int, b: int, held_a: dict, held_b: dict) -> None:
        parent[b] = a
        size[a] += size[b]
        if held_b:
            for key, tokens in held_b.items():
                held_a.setdefault(key, set()).update(tokens)
            ids[a] = held_a
            del ids[b]
        if b in partners:
            partners.setdefault(a, set()).update(partners.pop(b))

    refused = 0
    for uid_a, uid_b in must_link or []:
        if uid_a not in index or uid_b not in index:
            continue
        a, b = find(index[uid_a]), find(index[uid_b])
        if a == b or conflicts(a, b):
            continue
        held_a, held_b = ids.get(a, {}), ids.get(b, {})
        if len(held_a) < len(held_b):
            a, b, held_a, held_b = b, a, held_b, held_a
        join(a, b, held_a, held_b)
    for uid_l, uid_r, prob in edges:
        a, b = find(index[uid_l]), find(index[uid_r])
        if a == b:
            continue
        if (join_groups_threshold is not None and prob < join_groups_threshold
                and size[a] > 1 and size[b] > 1):
            refused += 1
            continue
        held_a, held_b = ids.get(a, {}), ids.get(b, {})
        if len(held_a) < len(held_b):
            a, b, held_a, held_b = b, a, held_b, held_a
        # (source, "record") sets never intersect, so any shared source conflicts
        if any(key in held_a and not (held_a[key] & tokens) for key, tokens in held_b.items()):
            refused += 1
            continue
        if partners and conflicts(a, b):
            refused += 1
            continue
        join(a, b, held_a, held_b)
    return {uid: records[find(i)][0] for i, (uid, *_rest) in enumerate(records)}, refused
