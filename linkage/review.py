"""Clerical review: a queue of uncertain pairs, labels, and what the labels are used for.

Everything is on encodings: a pair is two records named by (source, ref); a label says
"match", "non-match" or "unsure", with who gave it and when. Labels live in the linkage
unit's home (REVIEW_DIR/labels.jsonl, append-only, the latest label of a pair wins);
"needs review" requests (an identity the service could not resolve between two entities)
in REVIEW_DIR/requests.jsonl.

What the labels do:
- the next link run clusters with them as constraints: a "match" pair is joined (even one
  no blocking rule found), a "non-match" pair is never put in one entity;
- with enough decided labels, the run's cluster threshold is the one that disagrees with
  the fewest of them (`threshold_from_labels`);
- labels of randomly sampled pairs estimate precision and recall, with Wilson intervals
  (`accuracy_estimate`), shown in the report and by `joinedup review stats`.

The queue orders pairs by how much a decision would change the entities: the pair's
uncertainty (4p(1-p) of its calibrated match probability) times the records whose entity a
decision would change (the two entities' sizes when they are apart, the entity's size
when they are together).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

LABELS = ("match", "non-match", "unsure")
PURPOSES = ("queue", "sample-links", "sample-band", "request")
MIN_LABELS_FOR_THRESHOLD = 10
QUEUE_MAX_PROBABILITY = 0.999


class ReviewError(Exception):
    """A label or request is invalid, or the run cannot be reviewed."""


Record = tuple[str, str]  # (source, ref)


def pair_id(left: Record, right: Record) -> str:
    """An id for the unordered pair (the same whichever record comes first)."""
    a, b = sorted([tuple(left), tuple(right)])
    return "P" + hashlib.sha256("|".join([*a, *b]).encode()).hexdigest()[:16]


def _append(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(doc, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ReviewError(f"{path} line {i}: not JSON ({exc.msg})") from exc
    return out


def add_label(review_dir: Path, left: Record, right: Record, label: str, by: str,
              purpose: str = "queue", run: str | None = None,
              match_probability: float | None = None,
              event_id: str | None = None) -> dict[str, Any]:
    """Record a clerical decision on a pair; returns the stored label. `event_id`: the
    ledger event that recorded the decision first (the service's label action keys its
    idempotent re-apply on it)."""
    if label not in LABELS:
        raise ReviewError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    if purpose not in PURPOSES:
        raise ReviewError(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}")
    if tuple(left) == tuple(right):
        raise ReviewError("a pair needs two different records")
    doc = {"pair_id": pair_id(left, right), "source_l": left[0], "ref_l": left[1],
           "source_r": right[0], "ref_r": right[1], "label": label, "by": by,
           "at": datetime.now(UTC).isoformat(timespec="seconds"), "purpose": purpose,
           "run": run, "match_probability": match_probability}
    if event_id is not None:
        doc["event_id"] = event_id
    _append(Path(review_dir) / "labels.jsonl", doc)
    return doc


def labels(review_dir: Path | None) -> dict[str, dict[str, Any]]:
    """The latest label of every labelled pair, by pair id."""
    if review_dir is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for doc in _read(Path(review_dir) / "labels.jsonl"):
        out[doc["pair_id"]] = doc
    return out


def add_request(review_dir: Path, left: Record, right: Record, reason: str, by: str,
                event_id: str | None = None) -> dict[str, Any] | None:
    """Ask a data officer to review a pair (e.g. an identity that scored as two entities).
    With `event_id` (the ledger event that recorded the request) it is stored once: None
    when a request of that event is already there."""
    if event_id is not None and any(doc.get("event_id") == event_id
                                    for doc in _read(Path(review_dir) / "requests.jsonl")):
        return None
    doc = {"pair_id": pair_id(left, right), "source_l": left[0], "ref_l": left[1],
           "source_r": right[0], "ref_r": right[1], "reason": reason, "by": by,
           "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if event_id is not None:
        doc["event_id"] = event_id
    _append(Path(review_dir) / "requests.jsonl", doc)
    return doc


def constraints(review_dir: Path | None) -> tuple[list[tuple[Record, Record]], list[tuple[Record, Record]]]:
    """(must-link, cannot-link) pairs from the labels ("unsure" constrains nothing)."""
    must, cannot = [], []
    for doc in labels(review_dir).values():
        pair = ((doc["source_l"], doc["ref_l"]), (doc["source_r"], doc["ref_r"]))
        if doc["label"] == "match":
            must.append(pair)
        elif doc["label"] == "non-match":
            cannot.append(pair)
    return must, cannot


def threshold_from_labels(scored: list[tuple[float, str]], default: float) -> tuple[float, int]:
    """The cluster threshold that disagrees with the fewest decided labels.

    `scored`: (match probability in this run, label) of labelled pairs. With fewer than
    MIN_LABELS_FOR_THRESHOLD decided labels, the default is kept. Among equally good
    thresholds the one nearest the default wins. Returns (threshold, labels used)."""
    decided = [(p, lab) for p, lab in scored if lab in ("match", "non-match")]
    if len(decided) < MIN_LABELS_FOR_THRESHOLD:
        return default, len(decided)
    cuts = sorted({p for p, _ in decided} | {default})
    best = (math.inf, math.inf, default)
    for t in cuts:
        errors = sum(1 for p, lab in decided if (lab == "match") != (p >= t))
        best = min(best, (errors, abs(t - default), t))
    return min(max(best[2], 0.5), 0.999), len(decided)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% by default)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _links(con: duckdb.DuckDBPyConnection, run_dir: Path) -> None:
    con.execute(f"""CREATE OR REPLACE TEMP TABLE ent AS
                    SELECT * FROM read_parquet('{_q(run_dir / 'entities.parquet')}')""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE lk AS
        SELECT k.*, el.entity_id AS entity_l, er.entity_id AS entity_r
        FROM read_parquet('{_q(run_dir / 'links.parquet')}') k
        JOIN ent el ON el.source = k.source_l AND el.ref = k.ref_l
        JOIN ent er ON er.source = k.source_r AND er.ref = k.ref_r""")


def _q(path: Path) -> str:
    return str(path).replace("'", "''")


def _threshold(run_dir: Path) -> float:
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    return float(summary["thresholds"]["cluster_match_probability"])


def review_queue(run_dir: Path, review_dir: Path | None, limit: int = 20) -> list[dict[str, Any]]:
    """Unlabelled pairs to review, most consequential first (requests before pairs)."""
    run_dir = Path(run_dir)
    done = labels(review_dir)
    con = duckdb.connect()
    _links(con, run_dir)
    sizes = dict(con.execute("SELECT entity_id, count(*) FROM ent GROUP BY ALL").fetchall())
    entity_of = None
    items: list[dict[str, Any]] = []
    requests = _read(Path(review_dir) / "requests.jsonl") if review_dir else []
    seen: set[str] = set()
    for req in reversed(requests):
        if req["pair_id"] in done or req["pair_id"] in seen:
            continue
        seen.add(req["pair_id"])
        if entity_of is None:
            entity_of = {(s, r): e for s, r, e in con.execute("SELECT source, ref, entity_id FROM ent").fetchall()}
        el = entity_of.get((req["source_l"], req["ref_l"]))
        er = entity_of.get((req["source_r"], req["ref_r"]))
        items.append({"pair_id": req["pair_id"], "left": [req["source_l"], req["ref_l"]],
                      "right": [req["source_r"], req["ref_r"]], "entity_l": el, "entity_r": er,
                      "match_probability": None, "reason": req["reason"], "priority": math.inf,
                      "impact": (sizes.get(el, 0) + sizes.get(er, 0)) if el != er else sizes.get(el, 0)})
    rows = con.execute(
        f"SELECT source_l, ref_l, source_r, ref_r, match_probability, entity_l, entity_r FROM lk "
        f"WHERE match_probability < {QUEUE_MAX_PROBABILITY}").fetchall()
    for sl, rl, sr, rr, p, el, er in rows:
        pid = pair_id((sl, rl), (sr, rr))
        if pid in done or pid in seen:
            continue
        impact = sizes[el] + sizes[er] if el != er else sizes[el]
        uncertainty = 4 * p * (1 - p)
        items.append({"pair_id": pid, "left": [sl, rl], "right": [sr, rr], "entity_l": el,
                      "entity_r": er, "match_probability": p,
                      "reason": "in one entity" if el == er else "in different entities",
                      "impact": impact, "priority": uncertainty * impact})
    items.sort(key=lambda x: (-x["priority"], x["pair_id"]))
    return items[:limit]


def sample_pair(run_dir: Path, review_dir: Path | None, stratum: str = "links",
                seed: int | None = None) -> dict[str, Any] | None:
    """An unlabelled pair drawn uniformly at random, for the accuracy estimate:
    `links` from the pairs at or above the cluster threshold (precision), `band` from
    those between the report threshold and it (the links it misses, for recall)."""
    run_dir = Path(run_dir)
    t = _threshold(run_dir)
    cond = f"match_probability >= {t}" if stratum == "links" else f"match_probability < {t}"
    if stratum not in ("links", "band"):
        raise ReviewError("stratum must be links or band")
    done = labels(review_dir)
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT source_l, ref_l, source_r, ref_r, match_probability "
        f"FROM read_parquet('{_q(run_dir / 'links.parquet')}') WHERE {cond} "
        "ORDER BY source_l, ref_l, source_r, ref_r").fetchall()
    rng = random.Random(seed)
    rng.shuffle(rows)
    for sl, rl, sr, rr, p in rows:
        pid = pair_id((sl, rl), (sr, rr))
        if pid not in done:
            return {"pair_id": pid, "left": [sl, rl], "right": [sr, rr], "match_probability": p,
                    "purpose": f"sample-{stratum}"}
    return None


def accuracy_estimate(run_dir: Path, review_dir: Path | None,
                      threshold: float | None = None) -> dict[str, Any]:
    """Precision and recall of the run's links (pairs at or above the cluster threshold)
    from the labels of randomly sampled pairs, with 95% Wilson intervals.

    precision = matches among sampled links; missed matches = the share of matches among
    sampled pairs below the threshold (down to the report threshold) x their number;
    recall = found / (found + missed), its interval from the two proportions' bounds.
    Pairs below the report threshold are not counted as missed (none are sampled)."""
    run_dir = Path(run_dir)
    t = _threshold(run_dir) if threshold is None else threshold
    con = duckdb.connect()
    probs = {pair_id((a, b), (c, d)): p for a, b, c, d, p in con.execute(
        f"SELECT source_l, ref_l, source_r, ref_r, match_probability "
        f"FROM read_parquet('{_q(run_dir / 'links.parquet')}')").fetchall()}
    n_links = sum(1 for p in probs.values() if p >= t)
    n_band = len(probs) - n_links
    kinds: dict[str, list[str]] = {"links": [], "band": []}
    for doc in labels(review_dir).values():
        if not doc.get("purpose", "").startswith("sample-") or doc["label"] == "unsure":
            continue
        p = probs.get(doc["pair_id"])
        if p is None:
            continue
        kinds["links" if p >= t else "band"].append(doc["label"])
    k_l, n_l = kinds["links"].count("match"), len(kinds["links"])
    k_b, n_b = kinds["band"].count("match"), len(kinds["band"])
    out: dict[str, Any] = {"cluster_threshold": t, "links": n_links, "band_pairs": n_band}
    if n_l:
        lo, hi = wilson(k_l, n_l)
        out["precision"] = {"estimate": k_l / n_l, "low": lo, "high": hi, "labels": n_l}
        if n_b:
            blo, bhi = wilson(k_b, n_b)
            found = (k_l / n_l) * n_links
            missed = (k_b / n_b) * n_band

            def recall(tp: float, fn: float) -> float:
                return tp / (tp + fn) if tp + fn else 1.0

            out["recall"] = {"estimate": recall(found, missed),
                             "low": recall(lo * n_links, bhi * n_band),
                             "high": recall(hi * n_links, blo * n_band), "labels": n_b}
    return out


def find_pair(run_dir: Path, review_dir: Path | None, pid: str) -> dict[str, Any]:
    """A pair by id: from the run's links, the review requests or the labels."""
    con = duckdb.connect()
    for sl, rl, sr, rr, p in con.execute(
            f"SELECT source_l, ref_l, source_r, ref_r, match_probability "
            f"FROM read_parquet('{_q(Path(run_dir) / 'links.parquet')}')").fetchall():
        if pair_id((sl, rl), (sr, rr)) == pid:
            return {"pair_id": pid, "left": [sl, rl], "right": [sr, rr], "match_probability": p}
    others = (_read(Path(review_dir) / "requests.jsonl") if review_dir else []) + list(labels(review_dir).values())
    for doc in others:
        if doc["pair_id"] == pid:
            return {"pair_id": pid, "left": [doc["source_l"], doc["ref_l"]],
                    "right": [doc["source_r"], doc["ref_r"]], "match_probability": None}
    raise ReviewError(f"no pair {pid} in the run's links, the review requests or the labels")


class RecordNotInRun(ReviewError):
    """A record named is not in the run; `side` says which ("left" or "right")."""

    def __init__(self, message: str, side: str) -> None:
        super().__init__(message)
        self.side = side


def record_in_run(run_dir: Path, record: Record) -> bool:
    """Whether the run's records.parquet holds this (source, ref)."""
    found = duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{_q(Path(run_dir) / 'records.parquet')}') "
        "WHERE source = ? AND ref = ?", [str(record[0]), str(record[1])]).fetchone()[0]
    return bool(found)


def pair_of_records(run_dir: Path, left: Record, right: Record) -> dict[str, Any]:
    """Any two records of a run as a pair, linked or not: its id, and the run's match
    probability where links.parquet kept the pair (None: the run did not score it, or
    scored it under the links floor). ReviewError when a record is not in the run."""
    run_dir = Path(run_dir)
    left, right = (str(left[0]), str(left[1])), (str(right[0]), str(right[1]))
    if left == right:
        raise ReviewError("a pair is two different records")
    for side, record in (("left", left), ("right", right)):
        if not record_in_run(run_dir, record):
            raise RecordNotInRun(f"no record {record[0]}/{record[1]} in run {run_dir.name}", side)
    got = duckdb.connect().execute(
        f"SELECT match_probability FROM read_parquet('{_q(run_dir / 'links.parquet')}') "
        "WHERE (source_l = ? AND ref_l = ? AND source_r = ? AND ref_r = ?) "
        "OR (source_l = ? AND ref_l = ? AND source_r = ? AND ref_r = ?)",
        [*left, *right, *right, *left]).fetchall()
    return {"pair_id": pair_id(left, right), "left": list(left), "right": list(right),
            "match_probability": got[0][0] if got else None}


def blocking_rules_of_pair(run_dir: Path, left: Record, right: Record) -> list[str]:
    """The run's blocking rules that bring the two records together. An empty list means
    the run never compared them: no match key or filter band of the two is equal, so
    however alike they are, only a "match" label can join them."""
    from linkage.clk import (
        band_columns,
        band_select,
        clk_struct_sql,
        create_dice_macro,
        words_for_bits,
    )

    run_dir = Path(run_dir)
    settings = json.loads((run_dir / "settings.json").read_text())
    rules = [r["blocking_rule"] if isinstance(r, dict) else str(r)
             for r in settings["splink"]["blocking_rules_to_generate_predictions"]]
    con = duckdb.connect()
    # The two records, with their CLKs as the link run holds them (word structs) and the
    # filter bands the rules name, so each rule is tested as the run's SQL tested it.
    con.execute(f"""CREATE TEMP TABLE raw AS
        SELECT *, CASE WHEN source = ? AND ref = ? THEN 0 ELSE 1 END AS __side
        FROM read_parquet('{_q(run_dir / 'records.parquet')}')
        WHERE (source = ? AND ref = ?) OR (source = ? AND ref = ?)""",
                [left[0], left[1], *left, *right])
    described = con.execute("SELECT * FROM raw LIMIT 0").description
    blobs = [d[0] for d in described if str(d[1]).upper() in ("BLOB", "BYTES")]
    longest = con.execute("SELECT greatest(" + ", ".join(
        f"coalesce(max(octet_length({c})), 0)" for c in blobs) + ") FROM raw").fetchone()[0] if blobs else 0
    words = words_for_bits(8 * max(int(longest or 0), 1))
    structs = ", ".join(f"{clk_struct_sql(c, words)} AS {c}" for c in blobs)
    con.execute(f"CREATE TEMP TABLE t AS SELECT * REPLACE ({structs}) FROM raw" if blobs
                else "CREATE TEMP TABLE t AS SELECT * FROM raw")
    have = {d[0] for d in con.execute("SELECT * FROM t LIMIT 0").description}
    bands = band_select(have, rules, words)
    # A band of a word neither record's filters reach (or of a filter they lack) is null.
    bands.update({c: "NULL::BIGINT" for c in band_columns(rules) if c not in bands and c not in have})
    if bands:
        extra = ", ".join(f"{sql} AS {c}" for c, sql in bands.items())
        con.execute(f"CREATE OR REPLACE TEMP TABLE t AS SELECT *, {extra} FROM t")
    create_dice_macro(con, words)
    together = []
    for rule in rules:
        hits = con.execute(f"SELECT count(*) FROM t AS l, t AS r WHERE l.__side <> r.__side AND ({rule})").fetchone()[0]
        if hits:
            together.append(rule)
    return together


def why_in_entity(run_dir: Path, source: str, ref: str) -> dict[str, Any]:
    """Why a record is in its entity: the entity's records, and the links at or above the
    run's cluster threshold among them (the ones that hold it together), strongest first;
    `holding` are those that touch this record."""
    run_dir = Path(run_dir)
    t = _threshold(run_dir)
    con = duckdb.connect()
    _links(con, run_dir)
    got = con.execute("SELECT entity_id FROM ent WHERE source = ? AND ref = ?", [source, ref]).fetchall()
    if not got:
        raise ReviewError(f"no record {source}/{ref} in run {run_dir.name}")
    entity = got[0][0]
    members = con.execute("SELECT source, ref FROM ent WHERE entity_id = ? ORDER BY ALL", [entity]).fetchall()
    rows = con.execute(
        "SELECT source_l, ref_l, source_r, ref_r, match_probability, match_weight FROM lk "
        "WHERE entity_l = ? AND entity_r = ? ORDER BY match_probability DESC, source_l, ref_l, source_r, ref_r", [entity, entity]).fetchall()
    links = [{"pair_id": pair_id((a, b), (c, d)), "left": [a, b], "right": [c, d],
              "match_probability": p, "match_weight": w, "above_threshold": p >= t}
             for a, b, c, d, p, w in rows]
    mine = [x for x in links if [source, ref] in (x["left"], x["right"])]
    return {"entity_id": entity, "records": [list(m) for m in members], "cluster_threshold": t,
            "links": links, "holding": [x for x in mine if x["above_threshold"]],
            "weaker": [x for x in mine if not x["above_threshold"]]}
