"""A link run: stack the extracts' linkage files, train, score, cluster, write RUN_DIR.

Outputs (docs/CONTRACTS.md "Linkage unit"): links.parquet, entities.parquet, model.json,
summary.json, report.html; plus settings.json (the settings document used) and
records.parquet (each record's encodings and entity id, which person resolution scores
against). Everything is written to a temporary directory beside RUN_DIR and renamed into
place, so a failed run leaves any previous run intact.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from connectors.files import replace_dir_atomically, write_file_atomic
from linkage import blocked_em, calibrate, model
from linkage.blocking import settings_with_chosen_rules
from linkage.clk import add_band_columns, create_dice_macro, words_for_bits
from linkage.clustering import assign_stable_ids, cluster_with_identifier_guard, fingerprint_sql
from linkage.ingest import IngestedExtract, clk_bits_of, stack_sql
from linkage.predict import comparison_vectors, predict_with_blocking_counts
from linkage.settings import (
    default_settings,
    save_settings,
    validate_settings,
    with_name_and_date_joined,
)

Progress = Callable[[str], None]


ENGINES = ("duckdb", "spark")
BLOCKED_PAIRS = "jup_blocked_pairs"


@contextlib.contextmanager
def _any_row_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB may produce rows in any order inside the block (it need not keep the scan's)."""
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        con.execute("RESET preserve_insertion_order")


class LinkError(Exception):
    """A link run cannot start or failed (the previous run is untouched)."""


def link_extracts(
    extracts: list[IngestedExtract],
    out_dir: Path,
    settings: dict[str, Any] | None = None,
    previous_run: Path | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
    review_dir: Path | None = None,
    engine: str = "duckdb",
    spark_master: str | None = None,
) -> dict[str, Any]:
    """Link (and deduplicate) the extracts' records into entities; returns the summary.

    One extract: deduplicate it. Several: link across and deduplicate within all of them.
    `previous_run` (a run dir) gives the entity ids to keep stable. `review_dir` holds
    clerical labels (linkage.review): must-link / cannot-link constraints for clustering,
    and, when there are enough, the cluster threshold.

    `engine` "spark" scores the pairs and clusters on Spark (linkage.spark_engine; local
    mode `local[2]` unless `spark_master` names another), with the same settings, rules,
    model and decisions; everything else is this run's.
    """
    if engine not in ENGINES:
        raise LinkError(f"unknown engine {engine!r} (one of: {', '.join(ENGINES)})")
    if not extracts:
        raise LinkError("no extracts to link (ingest some first, or pass --extracts)")
    sources = [e.source for e in extracts]
    if len(set(sources)) != len(sources):
        raise LinkError(f"two extracts of the same source: {sorted(sources)}")
    if settings is None:
        # The defaults for the extracts' encoding (its columns decide the comparisons).
        from linkage.ingest import encoding_scheme_of
        from linkage.settings import v1_settings

        settings = v1_settings() if encoding_scheme_of(extracts) == "v1" else default_settings()
    settings = validate_settings(settings)
    step = progress or (lambda _s: None)
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    spark_run = None
    try:
        if engine == "spark":
            from linkage.spark_engine import DEFAULT_MASTER, SparkEngineError, SparkRun

            step("starting Spark")
            try:
                # scratch beside the run, never inside it (removed when the run ends)
                spark_run = SparkRun(spark_master or DEFAULT_MASTER, tmp.with_name(tmp.name + "-spark"))
            except SparkEngineError as exc:
                raise LinkError(str(exc)) from exc
        summary = _run(extracts, tmp, settings, previous_run, step, threads, review_dir,
                       spark_run)
        summary["run_id"] = out_dir.name
        _write_json(tmp / "summary.json", summary)
        replace_dir_atomically(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if spark_run is not None:
            spark_run.close()
    return summary


def _run(
    extracts: list[IngestedExtract],
    tmp: Path,
    settings: dict[str, Any],
    previous_run: Path | None,
    step: Progress,
    threads: int | None,
    review_dir: Path | None = None,
    spark_run: Any = None,
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
    # Rows in any order (every reader orders or joins on unique_id, which the load
    # computes from each file's row numbers): the scan need not keep the files' order.
    with _any_row_order(con):
        con.execute(f"CREATE TABLE records AS {stack_sql(extracts, words)}")
    n_records = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
    settings, joined = _join_name_and_date(con, settings, n_records)
    lap("load")

    # Bands of the salted filters (linkage.clk) are derived here, not sent, and only when
    # the match keys leave room for them.
    # The pairs counted while choosing the rules are the ones predict scores: kept, so
    # they are not blocked a second time.
    settings, blocking_info = settings_with_chosen_rules(
        con, "records", settings, lambda rules: add_band_columns(con, "records", rules, words),
        pairs_out=BLOCKED_PAIRS)
    lap("blocking")

    linker = model.make_linker(con, settings)
    if blocking_info is not None:
        linker.table_management.register_blocked_pairs_for_predict(linker._db_api.register(BLOCKED_PAIRS))
    blocked_pairs_em = settings["training"].get("em_on_blocked_pairs", False)
    blocked_fit = None
    vectors = None
    train_m = None
    if blocked_pairs_em:
        step("training: the blocked pairs' levels")
        # Cached by Splink: predict scores these same pairs without blocking again.
        blocked = linker.inference.compute_blocked_pairs_for_predict()
        # Their levels, computed once: u's exact counts and EM read them, predict scores them.
        vectors = comparison_vectors(linker, blocked)
        rules = settings["splink"]["blocking_rules_to_generate_predictions"]
        # The per-rule EM runs only if the fit on the blocked pairs is refused.
        train_m = model.train(linker, settings, lambda s: step(f"training: {s}"), per_rule_em=False,
                              blocked=(vectors.physical_name, rules))
        step("training: m, u and prior on the blocked pairs")
        trained_linker = linker
        linker, blocked_fit = blocked_em.fit(linker, con, blocked.physical_name, vectors.physical_name,
                                             train_m, settings["training"].get("band_stratum_m", "keyed"),
                                             settings["training"].get("identifier_comparisons", []))
        stratified_vectors = bool(blocked_fit.get("vectors_restratified"))
        if (linker is not trained_linker and not stratified_vectors) or spark_run is not None:
            # A stratified model has other levels (and Spark scores its own pairs).
            vectors.drop_table_from_database_and_remove_from_cache()
            vectors = None
        # The run's settings and summary name the rules it scored with (person resolution
        # reads them): a refused band stratum drops the band rules.
        kept = blocked_em.kept_rules(linker)
        settings["splink"]["blocking_rules_to_generate_predictions"] = kept
        if blocking_info is not None and kept != blocking_info["chosen"]:
            why = (blocked_fit.get("filter_bands") or {}).get("rejected_because") or blocked_fit.get("rejected_because")
            for candidate in blocking_info["candidates"]:
                if candidate["chosen"] and candidate["rule"] not in kept:
                    candidate.update(chosen=False, reason=f"{candidate['reason']}; dropped after training: {why}")
            blocking_info["chosen"] = kept
    else:
        model.train(linker, settings, lambda s: step(f"training: {s}"))
    lap("train")

    step("scoring pairs")
    thresholds = settings["thresholds"]
    # Every blocked pair is scored once; the prior is then re-estimated from them (m and
    # u fixed) and the weights shifted by the change, so no second scoring pass.
    if spark_run is None:
        predictions, blocking_counts = predict_with_blocking_counts(linker, None, n_records, vectors)
    else:
        predictions, blocking_counts = _predict_on_spark(con, linker, spark_run, words, n_records)
    pred_table = predictions.physical_name
    if blocked_fit and blocked_fit.get("applied"):
        prior = blocked_fit
    else:
        prior = _calibrate_prior(con, linker, pred_table, n_records, settings)
        if blocked_fit:
            prior["blocked_pairs_em"] = blocked_fit
    cluster_t = _cluster_threshold(con, pred_table, thresholds)
    must, cannot, cluster_t, labels_used = _labels(con, pred_table, review_dir, cluster_t)
    report_t = min(thresholds["report_match_probability"], cluster_t)
    con.execute(
        f"""COPY (SELECT source_l, ref_l, source_r, ref_r, match_probability, match_weight
                  FROM {pred_table}
                  WHERE match_probability >= {report_t}
                  ORDER BY source_l, ref_l, source_r, ref_r)
            TO '{tmp / 'links.parquet'}' (FORMAT parquet)"""
    )
    lap("predict")

    step("clustering")
    cluster = cluster_with_identifier_guard if spark_run is None else spark_run.guarded_clusters
    clusters, refused = cluster(
        con, pred_table, "records", cluster_t,
        one_record_per_source=settings.get("clustering", {}).get("one_record_per_source", False),
        join_groups_threshold=settings.get("clustering", {}).get("join_groups_match_probability"),
        must_link=must, cannot_link=cannot,
        identifiers_across_sources=(settings.get("clustering", {}).get("identifier_guard")
                                    == "across_sources"),
    )
    step("clustering: entity ids")
    con.execute(
        f"""CREATE TABLE clustered AS
            SELECT c.cluster_id, r.unique_id, r.source, r.ref, {fingerprint_sql('r')} AS fingerprint
            FROM {clusters} c JOIN records r USING (unique_id)"""
    )
    previous_records = Path(previous_run) / "records.parquet" if previous_run else None
    changes = assign_stable_ids(con, "clustered", previous_records)
    _write_json(tmp / "entity_changes.json", {
        "previous_run": str(previous_run) if previous_run else None, **changes.pop("details")})
    con.execute(
        f"COPY (SELECT entity_id, source, ref FROM entities ORDER BY entity_id, source, ref) "
        f"TO '{tmp / 'entities.parquet'}' (FORMAT parquet)"
    )
    step("clustering: records.parquet")
    # records.parquet keeps the CLKs as the extracts' BLOBs: read them again rather than
    # carry both forms through the run, numbered as the load numbered them, so each row
    # meets its entity and fingerprint on unique_id. Its rows are in no particular order
    # (readers join on (source, ref)), so the write need not keep any; uncompressed: the
    # CLKs hardly compress (1,757 MB against Snappy's 1,650 MB at 2M records) and the
    # write is faster (bench: 9.9-10.0 s against 12.1-15.4 s).
    with _any_row_order(con):
        con.execute(
            f"""COPY (SELECT r.* EXCLUDE (unique_id), e.entity_id, c.fingerprint
                      FROM ({stack_sql(extracts, identity_fp=False)}) r
                      JOIN entities e ON e.unique_id = r.unique_id
                      JOIN clustered c ON c.unique_id = r.unique_id)
                TO '{tmp / 'records.parquet'}' (FORMAT parquet, COMPRESSION uncompressed)"""
        )
    lap("cluster")

    step("writing the model and report")
    trained = model.trained_model(linker)
    _write_json(tmp / "model.json", trained)
    save_settings(settings, tmp / "settings.json")
    summary = _summary(con, extracts, n_records, changes, settings, tmp / "links.parquet")
    summary["thresholds"] = {**thresholds, "cluster_match_probability": cluster_t,
                             "cluster_match_probability_setting": thresholds["cluster_match_probability"]}
    summary["prior"] = prior
    summary["labels"] = {"must_link": len(must), "cannot_link": len(cannot),
                         "used_for_threshold": labels_used}
    if review_dir is not None:
        from linkage.review import accuracy_estimate

        summary["accuracy_from_labels"] = accuracy_estimate(tmp, review_dir, cluster_t)
    if blocking_info is not None:
        summary["blocking"] = blocking_info
    summary["timings_s"] = timings
    summary["engine"] = "duckdb" if spark_run is None else {"name": "spark", **spark_run.describe()}
    summary["merges_refused_conflicting_identifiers"] = refused
    if joined is not None:
        summary["name_and_date_joined"] = joined
    try:
        from linkage.report import write_report

        write_report(linker, predictions, con, summary, tmp / "report.html", blocking_counts)
    finally:
        lap("report")
        summary["timings_s"]["total"] = round(time.perf_counter() - started, 3)
        con.close()
    return summary


def _predict_on_spark(con: duckdb.DuckDBPyConnection, linker: Any, spark_run: Any, words: int,
                      n_records: int) -> tuple[Any, list[dict[str, Any]]]:
    """The trained model scores the blocked pairs on Spark; the pairs come back as the
    table the DuckDB run's predict makes (same columns), for the stages that follow."""
    from linkage.predict import blocking_count_records, predictions_frame

    clk_columns = [name for name, dtype in con.execute(
        "SELECT column_name, column_type FROM (DESCRIBE records)").fetchall()
        if dtype.upper().startswith("STRUCT")]
    spark_run.load_records(con, "records", clk_columns, words)
    path = spark_run.scratch / "predictions.parquet"
    counts = spark_run.score(model.trained_model(linker), path, n_records)
    con.execute(f"CREATE TABLE spark_predictions AS SELECT * FROM read_parquet('{path}/*.parquet')")
    return (predictions_frame(linker, "spark_predictions"),
            blocking_count_records(linker, counts, n_records))


# "auto" joins the name and date-of-birth comparisons when fewer than this share of the
# records carry a postcode-salted name filter: the names then compare only within one date
# of birth (linkage.settings.name_and_date_comparison). With postcodes the two comparisons
# are kept apart: joined there, FEBRL4 and FEBRL2 lost 0.005 and 0.004 F1 (FEBRL3 and
# FEBRL1 gained 0.003 and 0.008, 50,000 synthetic people 0.0008 of recall), and the link
# took 1.3x as long (bench/RESULTS-linkage.md, session 10).
JOIN_WHEN_POSTCODE_SHARE_BELOW = 0.5


def _join_name_and_date(con: duckdb.DuckDBPyConnection, settings: dict[str, Any],
                        n_records: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The settings to link with, under `training.join_name_and_date`, and what was decided
    (None when the settings have no such choice to make)."""
    how = settings.get("training", {}).get("join_name_and_date", "never")
    names = {c.get("output_column_name") for c in settings["splink"]["comparisons"]}
    if how == "never" or not {"name", "date_of_birth"} <= names:
        return settings, None
    columns = {r[0] for r in con.execute("DESCRIBE records").fetchall()}
    with_pc = (con.execute("SELECT count(*) FROM records WHERE clk_given_pc IS NOT NULL").fetchall()[0][0]
               if "clk_given_pc" in columns else 0)
    share = with_pc / n_records if n_records else 0.0
    join = how == "always" or share < JOIN_WHEN_POSTCODE_SHARE_BELOW
    decided = {"setting": how, "joined": join, "records_with_postcode_salted_names": round(share, 4)}
    return (with_name_and_date_joined(settings) if join else settings), decided


def _calibrate_prior(con: duckdb.DuckDBPyConnection, linker: Any, pred_table: str,
                     n_records: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Re-estimate the prior from the scored blocked pairs (linkage.calibrate) unless the
    settings fix it; shift every pair's weight by the change and put it in the model."""
    settings_obj = linker._settings_obj
    start = float(settings_obj._probability_two_random_records_match)
    if not settings["training"].get("prior_from_scored_pairs", True):
        return {"estimated_from": "training.prior_rules", "value": start}
    start_log2_odds = math.log2(start / (1.0 - start))
    weights = con.execute(f"SELECT match_weight FROM {pred_table}").fetchnumpy()["match_weight"]
    bayes = np.asarray(weights, dtype=np.float64) - start_log2_odds
    total_pairs = n_records * (n_records - 1) / 2.0
    prior = calibrate.estimate_prior(bayes, total_pairs, start)
    shift = math.log2(prior / (1.0 - prior)) - start_log2_odds
    con.execute(
        f"""UPDATE {pred_table} SET match_weight = match_weight + {shift!r},
                   match_probability = CASE WHEN match_weight + {shift!r} >= 0
                       THEN 1.0 / (1.0 + pow(2.0, -(match_weight + {shift!r})))
                       ELSE pow(2.0, match_weight + {shift!r}) / (1.0 + pow(2.0, match_weight + {shift!r})) END"""
    )
    settings_obj._probability_two_random_records_match = prior
    return {"estimated_from": "scored blocked pairs (m, u fixed)", "value": prior,
            "start": start, "blocked_pairs": int(len(bayes))}


def _labels(con: duckdb.DuckDBPyConnection, pred_table: str, review_dir: Path | None,
            cluster_t: float) -> tuple[list, list, float, int]:
    """Clerical labels as unique_id constraints, and the threshold they choose."""
    from linkage import review

    must, cannot = review.constraints(review_dir)
    if not must and not cannot:
        return [], [], cluster_t, 0
    import pyarrow as pa

    rows = [(a[0], a[1], b[0], b[1], kind) for kind, pairs in (("m", must), ("c", cannot))
            for a, b in pairs]
    con.register("jup_labels", pa.table({
        name: [r[i] for r in rows]
        for i, name in enumerate(("source_a", "ref_a", "source_b", "ref_b", "kind"))}))
    try:
        got = con.execute(
            f"""SELECT a.unique_id, b.unique_id, l.kind, p.match_probability
                FROM jup_labels l
                JOIN records a ON a.source = l.source_a AND a.ref = l.ref_a
                JOIN records b ON b.source = l.source_b AND b.ref = l.ref_b
                LEFT JOIN {pred_table} p
                  ON p.unique_id_l = least(a.unique_id, b.unique_id)
                 AND p.unique_id_r = greatest(a.unique_id, b.unique_id)"""
        ).fetchall()
    finally:
        con.unregister("jup_labels")
    must_ids = [(a, b) for a, b, k, _p in got if k == "m"]
    cannot_ids = [(a, b) for a, b, k, _p in got if k == "c"]
    scored = [(p, "match" if k == "m" else "non-match") for _a, _b, k, p in got if p is not None]
    t, used = review.threshold_from_labels(scored, cluster_t)
    return must_ids, cannot_ids, t, used


def _cluster_threshold(con: duckdb.DuckDBPyConnection, pred_table: str,
                       thresholds: dict[str, Any]) -> float:
    """The settings' threshold, or with "auto" the one that maximises expected F1."""
    setting = thresholds["cluster_match_probability"]
    if setting != "auto":
        return float(setting)
    probs = con.execute(
        f"SELECT match_probability FROM {pred_table} WHERE match_probability >= 0.01"
    ).fetchnumpy()["match_probability"]
    t, _f = calibrate.expected_f1_threshold(np.asarray(probs, dtype=np.float64),
                                            beta=float(thresholds.get("auto_beta", 1.0)))
    return t


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


