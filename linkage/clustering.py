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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np


def fingerprint_sql(alias: str) -> str:
    """Equal fingerprints = same identity values (the digest `linkage.ingest.stack_sql`
    computes from the encoding's identity columns)."""
    return f"{alias}.identity_fp"


def new_entity_id() -> str:
    return "E" + secrets.token_hex(8)


def new_entity_ids(count: int) -> list[str]:
    """`count` new entity ids at once, each as `new_entity_id` makes one ("E" and 16
    random hex digits)."""
    if count <= 0:
        return []
    digits = np.frombuffer(secrets.token_bytes(8 * count).hex().encode("ascii"), dtype=np.uint8)
    ids = np.empty((count, 17), dtype=np.uint8)
    ids[:, 0] = ord("E")
    ids[:, 1:] = digits.reshape(count, 16)
    return ids.view("S17").ravel().astype(str).tolist()


def assign_stable_ids(
    con: duckdb.DuckDBPyConnection,
    clusters_table: str,
    previous_records: Path | None,
) -> dict[str, Any]:
    """Create table `entities` (unique_id, source, ref, entity_id) from `clusters_table`
    (unique_id, source, ref, fingerprint, cluster_id); returns the change report."""
    import pyarrow as pa

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
    # Greedy by overlap; ties to the smaller previous id, then the cluster id as text.
    overlaps = con.execute(
        """
        SELECT cluster_id, prev_entity, count(*) AS n, cluster_id::VARCHAR AS cluster_text
        FROM carried WHERE prev_entity IS NOT NULL GROUP BY cluster_id, prev_entity
        ORDER BY n DESC, prev_entity, cluster_text
        """
    ).fetchall()
    assigned: dict[Any, str] = {}
    taken: set[str] = set()
    prev_clusters: dict[str, set] = {}
    cluster_prevs: dict[Any, set[str]] = {}
    for cluster, prev, _n, _text in overlaps:
        prev_clusters.setdefault(prev, set()).add(cluster)
        cluster_prevs.setdefault(cluster, set()).add(prev)
        if cluster not in assigned and prev not in taken:
            assigned[cluster] = prev
            taken.add(prev)
    del overlaps
    # Every other cluster gets a new id; all made at once.
    cluster_type = con.sql(f"SELECT cluster_id FROM {clusters_table} LIMIT 0").to_arrow_table().schema.field(0).type
    carried_ids = pa.table({"cluster_id": pa.array(list(assigned), cluster_type),
                            "entity_id": pa.array(list(assigned.values()), pa.string())})
    con.register("jup_carried_ids", carried_ids)
    try:
        others = con.sql(
            f"""SELECT DISTINCT cluster_id FROM {clusters_table}
                WHERE cluster_id NOT IN (SELECT cluster_id FROM jup_carried_ids)"""
        ).to_arrow_table().column("cluster_id").combine_chunks()
    finally:
        con.unregister("jup_carried_ids")
    fresh = new_entity_ids(len(others))
    id_map = pa.table({"cluster_id": pa.concat_arrays([carried_ids.column("cluster_id").combine_chunks(), others]),
                       "entity_id": pa.concat_arrays([carried_ids.column("entity_id").combine_chunks(),
                                                      pa.array(fresh, pa.string())])})
    con.register("jup_id_map", id_map)
    try:
        con.execute(
            f"""
            CREATE TABLE entities AS
            SELECT c.unique_id, c.source, c.ref, m.entity_id
            FROM {clusters_table} c JOIN jup_id_map m ON m.cluster_id = c.cluster_id
            """
        )
    finally:
        con.unregister("jup_id_map")
    # Which entities changed, with ids (entity_changes.json of the run; `joinedup runs show`).
    # A cluster none of whose records was in the previous run is new; one whose previous
    # entities all went to other clusters has a new id but is not.
    other_ids = others.to_pylist()
    new_ids = sorted(eid for c, eid in zip(other_ids, fresh, strict=True) if c not in cluster_prevs)
    id_of = {**{c: eid for c, eid in zip(other_ids, fresh, strict=True) if c in cluster_prevs}, **assigned}
    previous_ids = {r[0] for r in con.execute("SELECT DISTINCT entity_id FROM prev").fetchall()}
    kept = previous_ids & set(assigned.values())  # fresh ids are random, never previous
    merged = sorted(
        ({"entity_id": id_of[c], "from": sorted(prevs)} for c, prevs in cluster_prevs.items()
         if len(prevs) > 1), key=lambda x: x["entity_id"])
    split = sorted(
        ({"entity_id": prev, "into": sorted(id_of[c] for c in clusters)}
         for prev, clusters in prev_clusters.items() if len(clusters) > 1),
        key=lambda x: x["entity_id"])
    retired = sorted(previous_ids - kept)
    details = {"new": new_ids, "merged": merged, "split": split, "retired": retired}
    return {
        "entities": len(id_map),
        "previous_entities": len(previous_ids),
        "kept": len(kept),
        "new": len(new_ids),
        "merged": len(merged),
        "split": len(split),
        "retired": len(retired),
        "details": details,
    }


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

    The merge runs one connected component at a time (`merge_by_components`): a component
    in which nothing can be refused is one cluster, found without the per-pair merge.
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
    ).fetchnumpy()
    edge_l = np.asarray(edges["unique_id_l"], dtype=np.int64)
    edge_r = np.asarray(edges["unique_id_r"], dtype=np.int64)
    edge_p = np.asarray(edges["match_probability"], dtype=np.float64)
    del edges
    # Only records on an edge or a label can join anything: every other record is its own
    # cluster (its unique_id), so the merge reads just the records it may join. A merge
    # depends only on the two groups it joins, so the clusters and ids are those of the
    # merge over every record (tests/linkage: the same partition and ids).
    labelled = np.array([uid for pair in (*(must_link or []), *(cannot_link or [])) for uid in pair],
                        dtype=np.int64)
    touched = _sorted_unique(np.concatenate([edge_l, edge_r, labelled]))
    con.register("jup_touched", pa.table({"unique_id": pa.array(touched, pa.int64())}))
    try:
        records = con.sql(
            f"SELECT r.unique_id, r.source, r.tk_nhs, r.tk_nino FROM {records_table} r "
            "SEMI JOIN jup_touched t ON t.unique_id = r.unique_id ORDER BY r.unique_id"
        ).to_arrow_table()
    finally:
        con.unregister("jup_touched")
    cluster_ids, refused = merge_by_components(
        records, edge_l, edge_r, edge_p, one_record_per_source, join_groups_threshold,
        must_link, cannot_link, identifiers_across_sources)
    table = pa.table({"unique_id": records.column("unique_id"),
                      "cluster_id": pa.array(cluster_ids, pa.int64())})
    del records
    name = "guarded_clusters"
    con.register("guarded_clusters_arrow", table)
    con.execute(
        f"""CREATE OR REPLACE TABLE {name} AS
            SELECT r.unique_id, coalesce(g.cluster_id, r.unique_id) AS cluster_id
            FROM {records_table} r LEFT JOIN guarded_clusters_arrow g USING (unique_id)
            ORDER BY r.unique_id""")
    con.unregister("guarded_clusters_arrow")
    return name, refused


def merge_by_components(
    records: Any,
    edge_l: np.ndarray,
    edge_r: np.ndarray,
    edge_p: np.ndarray,
    one_record_per_source: bool,
    join_groups_threshold: float | None = None,
    must_link: list[tuple[int, int]] | None = None,
    cannot_link: list[tuple[int, int]] | None = None,
    identifiers_across_sources: bool = False,
    stats: dict[str, int] | None = None,
) -> tuple[np.ndarray, int]:
    """`guarded_merge`, one connected component at a time: the same cluster ids (per
    record of `records`, an Arrow table (unique_id, source, tk_nhs, tk_nino) sorted by
    unique_id and holding every record on an edge or a label) and the same merges refused.

    The components (of the edges, with the must-link pairs) are found by scipy. In most
    of them no merge can be refused: no two of their records hold different NHS numbers
    (or NINOs) in one scope, none holds two records of one source (with
    `one_record_per_source`), no cannot-link pair and no must-link pair falls inside,
    and `join_groups_threshold` cannot apply (every edge reaches it, or fewer than four
    records: two groups of two or more). There every edge is a plain union, and the
    cluster is the whole component; its id, the root `guarded_merge` ends with, follows
    from the same unions in the same order (the root of the group holding more distinct
    identifier keys survives, the first pair's left one on a tie), made for every such
    component at once: the k-th edge of each in round k. The other components go through
    `guarded_merge`, together (components never interact). `stats`, when given, receives
    how many components took each path."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    uids = np.asarray(records.column("unique_id").to_numpy(), dtype=np.int64)
    n = len(uids)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    must = [(a, b) for a, b in must_link or []]
    cannot = [(a, b) for a, b in cannot_link or []]
    el, er = np.searchsorted(uids, edge_l), np.searchsorted(uids, edge_r)

    def dense(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        a = np.array([p[0] for p in pairs], dtype=np.int64)
        b = np.array([p[1] for p in pairs], dtype=np.int64)
        ia, ib = np.searchsorted(uids, a).clip(max=n - 1), np.searchsorted(uids, b).clip(max=n - 1)
        present = (uids[ia] == a) & (uids[ib] == b)
        return ia[present], ib[present]

    ml, mr = dense(must)
    cl, cr = dense(cannot)
    graph = coo_matrix((np.ones(len(el) + len(ml), dtype=np.int8),
                        (np.concatenate([el, ml]), np.concatenate([er, mr]))), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=True, connection="weak")
    del graph
    comp = comp.astype(np.int64)
    size = np.bincount(comp, minlength=n_comp)
    unsafe = np.zeros(n_comp, dtype=bool)
    unsafe[comp[ml]] = True
    unsafe[comp[cl][comp[cl] == comp[cr]]] = True
    if join_groups_threshold is not None and len(el):
        weakest = np.full(n_comp, np.inf)
        np.minimum.at(weakest, comp[el], edge_p)
        unsafe |= (weakest < join_groups_threshold) & (size >= 4)

    sources = records.column("source").combine_chunks().dictionary_encode()
    source_code = np.asarray(sources.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    n_sources = len(sources.dictionary)
    scope = np.zeros(n, dtype=np.int64) if identifiers_across_sources else source_code

    def conflicting(groups: np.ndarray, group: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The components in which two records of one `group` hold different `values`."""
        order = np.lexsort((values, group, groups))
        g, k, v = groups[order], group[order], values[order]
        clash = (g[1:] == g[:-1]) & (k[1:] == k[:-1]) & (v[1:] != v[:-1])
        return g[1:][clash]

    # key bits: (scope, nhs), (scope, nino) and, with one_record_per_source, (source, record)
    n_scopes = 1 if identifiers_across_sources else n_sources
    n_bits = 2 * n_scopes + (n_sources if one_record_per_source else 0)
    wide = n_bits > 63
    mask = np.zeros(n, dtype=object if wide else np.uint64)
    for kind, column in enumerate(("tk_nhs", "tk_nino")):
        tokens = records.column(column)
        held = ~np.asarray(tokens.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        if held.any():
            values = np.asarray(tokens.fill_null(0).to_numpy(), dtype=np.int64)
            sub = np.flatnonzero(held)
            unsafe[conflicting(comp[sub], scope[sub], values[sub])] = True
            mask[sub] |= _bits(2 * scope[sub] + kind, wide)
    if one_record_per_source:
        unsafe[conflicting(comp, source_code, np.arange(n, dtype=np.int64))] = True
        mask |= _bits(2 * n_scopes + source_code, wide)

    cluster = uids.copy()
    refused = 0
    node_unsafe = unsafe[comp]
    edge_unsafe = node_unsafe[el]
    if node_unsafe.any():
        import pyarrow as pa

        sub = records.filter(pa.array(node_unsafe))
        slow_records = list(zip(*(sub.column(c).to_pylist() for c in
                                  ("unique_id", "source", "tk_nhs", "tk_nino")), strict=True))
        slow_edges = list(zip(edge_l[edge_unsafe].tolist(), edge_r[edge_unsafe].tolist(),
                              edge_p[edge_unsafe].tolist(), strict=True))
        slow_set = set(uids[node_unsafe].tolist())
        cluster_of, refused = guarded_merge(
            slow_records, slow_edges, one_record_per_source, join_groups_threshold,
            [p for p in must if p[0] in slow_set and p[1] in slow_set],
            [p for p in cannot if p[0] in slow_set and p[1] in slow_set],
            identifiers_across_sources)
        cluster[node_unsafe] = [cluster_of[r[0]] for r in slow_records]
    # The safe components: plain unions, edge by edge in each component's order.
    fast = np.flatnonzero(~edge_unsafe)
    parent = np.arange(n, dtype=np.int64)
    if len(fast):
        fc = comp[el[fast]]
        by_comp = fast[np.argsort(fc, kind="stable")]  # global order within a component
        fc = comp[el[by_comp]]
        starts = np.flatnonzero(np.r_[True, fc[1:] != fc[:-1]])
        first = np.repeat(starts, np.diff(np.r_[starts, len(fc)]))
        rank = np.arange(len(fc)) - first
        order = np.argsort(rank, kind="stable")
        rounds = np.bincount(rank)
        bounds = np.r_[0, np.cumsum(rounds)]
        popcount = _popcount(wide)
        for k in range(len(rounds)):
            edge = by_comp[order[bounds[k]:bounds[k + 1]]]
            a, b = _roots(parent, el[edge]), _roots(parent, er[edge])
            join = a != b
            a, b = a[join], b[join]
            swap = popcount(mask[a]) < popcount(mask[b])
            a, b = np.where(swap, b, a), np.where(swap, a, b)
            parent[b] = a
            mask[a] = mask[a] | mask[b]
        safe_nodes = np.flatnonzero(~node_unsafe)
        cluster[safe_nodes] = uids[_roots(parent, safe_nodes)]
    if stats is not None:
        on_edge = np.zeros(n_comp, dtype=bool)
        on_edge[comp[el]] = True
        stats.update(components=int(n_comp), merged=int((unsafe & on_edge).sum()),
                     fast=int((~unsafe & on_edge).sum()))
    return cluster, refused


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique of int64s by one sort (np.unique's hashing took 3.1-3.4 s for the 3.2M
    ends of a 2M-record run's pairs; this 0.3 s)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _bits(bits: np.ndarray, wide: bool) -> np.ndarray:
    if wide:
        return np.array([1 << int(b) for b in bits], dtype=object)
    return np.left_shift(np.uint64(1), bits.astype(np.uint64))


def _popcount(wide: bool) -> Callable[[np.ndarray], np.ndarray]:
    if wide:
        return lambda x: np.array([int(v).bit_count() for v in x], dtype=np.int64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count
    return lambda x: np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def _roots(parent: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The union-find root of each node (and those nodes pointed straight at it)."""
    roots = parent[nodes]
    while True:
        up = parent[roots]
        if np.array_equal(up, roots):
            break
        roots = up
    parent[nodes] = roots
    return roots


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
