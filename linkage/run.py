"""A link run: stack the extracts' linkage files, train, score, cluster, write RUN_DIR.

Outputs (docs/CONTRACTS.md "Linkage unit"): links.parquet, entities.parquet, model.json,
summary.json, report.html; plus settings.json (the settings document used) and
records.parquet (each record's encodings and entity id, which person resolution scores
against). Everything is written to a temporary directory beside RUN_DIR and renamed into
place, so a failed run leaves any previous run intact.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from connectors.files import replace_dir_atomically, write_file_atomic
from linkage import model
from linkage.clk import create_dice_macro, words_for_bits
from linkage.clustering import assign_stable_ids, cluster_with_identifier_guard, fingerprint_sql
from linkage.ingest import IngestedExtract, clk_bits_of, stack_sql
from linkage.predict import predict_with_blocking_counts
from linkage.settings import default_settings, save_settings, validate_settings

Progress = Callable[[str], None]


class LinkError(Exception):
    """A link run cannot start or failed (the previous run is untouched)."""


def link_extracts(
    extracts: list[IngestedExtract],
    out_dir: Path,
    settings: dict[str, Any] | None = None,
    previous_run: Path | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Link (and deduplicate) the extracts' records into entities; returns the summary.

    One extract: deduplicate it. Several: link across and deduplicate within all of them.
    `previous_run` (a run dir) gives the entity ids to keep stable.
    """
    if not extracts:
        raise LinkError("no extracts to link (ingest some first, or pass --extracts)")
    sources = [e.source for e in extracts]
    if len(set(sources)) != len(sources):
        raise LinkError(f"two extracts of the same source: {sorted(sources)}")
    settings = validate_settings(settings or default_settings())
    step = progress or (lambda _s: None)
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        summary = _run(extracts, tmp, settings, previous_run, step, threads)
        summary["run_id"] = out_dir.name
        _write_json(tmp / "summary.json", summary)
        replace_dir_atomically(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _run(
    extracts: list[IngestedExtract],
    tmp: Path,
    settings: dict[str, Any],
    previous_run: Path | None,
    step: Progress,
    threads: int | None,
) -> dict[str, Any]:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    mark = started

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(now - mark, 3)
        mark = now

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    step("loading linkage files")
    words = words_for_bits(clk_bits_of(extracts))
    create_dice_macro(con, words)
    con.execute(f"CREATE TABLE records AS {stack_sql(extracts, words)}")
    n_records = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
    lap("load")

    linker = model.make_linker(con, settings)
    model.train(linker, settings, lambda s: step(f"training: {s}"))
    lap("train")

    step("scoring pairs")
    thresholds = settings["thresholds"]
    report_t = min(thresholds["report_match_probability"], thresholds["cluster_match_probability"])
    predictions, blocking_counts = predict_with_blocking_counts(linker, report_t, n_records)
    pred_table = predictions.physical_name
    con.execute(
        f"""COPY (SELECT source_l, ref_l, source_r, ref_r, match_probability, match_weight
                  FROM {pred_table}
                  WHERE match_probability >= {thresholds['report_match_probability']}
                  ORDER BY source_l, ref_l, source_r, ref_r)
            TO '{tmp / 'links.parquet'}' (FORMAT parquet)"""
    )
    lap("predict")

    step("clustering")
    clusters, refused = cluster_with_identifier_guard(
        con, pred_table, "records", thresholds["cluster_match_probability"],
        one_record_per_source=settings.get("clustering", {}).get("one_record_per_source", False),
    )
    con.execute(
        f"""CREATE TABLE clustered AS
            SELECT c.cluster_id, r.unique_id, r.source, r.ref, {fingerprint_sql('r')} AS fingerprint
            FROM {clusters} c JOIN records r USING (unique_id)"""
    )
    previous_records = Path(previous_run) / "records.parquet" if previous_run else None
    changes = assign_stable_ids(con, "clustered", previous_records)
    con.execute(
        f"COPY (SELECT entity_id, source, ref FROM entities ORDER BY entity_id, source, ref) "
        f"TO '{tmp / 'entities.parquet'}' (FORMAT parquet)"
    )
    # records.parquet keeps the CLKs as the extracts' BLOBs: read them again rather than
    # carry both forms through the run.
    con.execute(
        f"""COPY (SELECT r.* EXCLUDE (unique_id, identity_fp), e.entity_id, c.fingerprint
                  FROM ({stack_sql(extracts)}) r
                  JOIN entities e USING (source, ref)
                  JOIN clustered c ON c.unique_id = e.unique_id)
            TO '{tmp / 'records.parquet'}' (FORMAT parquet)"""
    )
    lap("cluster")

    step("writing the model and report")
    trained = model.trained_model(linker)
    _write_json(tmp / "model.json", trained)
    save_settings(settings, tmp / "settings.json")
    summary = _summary(con, extracts, n_records, changes, settings, tmp / "links.parquet")
    summary["timings_s"] = timings
    summary["merges_refused_conflicting_identifiers"] = refused
    try:
        from linkage.report import write_report

        write_report(linker, predictions, con, summary, tmp / "report.html", blocking_counts)
    finally:
        lap("report")
        summary["timings_s"]["total"] = round(time.perf_counter() - started, 3)
        con.close()
    return summary


def _summary(
    con: duckdb.DuckDBPyConnection,
    extracts: list[IngestedExtract],
    n_records: int,
    changes: dict[str, Any],
    settings: dict[str, Any],
    links_path: Path,
) -> dict[str, Any]:
    per_source = dict(
        con.execute("SELECT source, count(*) FROM records GROUP BY ALL ORDER BY 1").fetchall()
    )
    links = con.execute(
        "SELECT least(source_l, source_r), greatest(source_l, source_r), count(*) "
        "FROM read_parquet(?) GROUP BY ALL ORDER BY 1, 2",
        [str(links_path)],
    ).fetchall()
    sizes = con.execute(
        "SELECT n, count(*) FROM (SELECT entity_id, count(*) AS n FROM entities GROUP BY ALL) "
        "GROUP BY ALL ORDER BY 1"
    ).fetchall()
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "extracts": [{"extract_id": e.extract_id, "source": e.source, "kind": e.kind} for e in extracts],
        "records": n_records,
        "records_per_source": per_source,
        "entities": changes["entities"],
        "entity_changes": changes,
        "cluster_sizes": {str(n): c for n, c in sizes},
        "thresholds": settings["thresholds"],
        "links_per_source_pair": [{"source_l": a, "source_r": b, "links": n} for a, b, n in links],
    }


def _write_json(path: Path, doc: Any) -> None:
    write_file_atomic(path, (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode())


