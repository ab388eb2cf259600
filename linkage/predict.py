"""Scoring a trained model: Splink's predict, with each CLK's Dice computed once per
pair, and the pairs each blocking rule added (the report's blocking-rule chart) counted
from the blocked pairs predict has just built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from splink import Linker
from splink.internals.blocking import _sql_gen_where_condition
from splink.internals.blocking_analysis import _describe_blocking_rule
from splink.internals.comparison_vector_values import (
    compute_comparison_vector_values_from_id_pairs_sqls,
)
from splink.internals.pipeline import CTEPipeline
from splink.internals.predict import predict_from_comparison_vectors_sqls_using_settings
from splink.internals.splink_dataframe import SplinkDataFrame
from splink.internals.vertically_concatenate import enqueue_df_concat_with_tf

from linkage.clk import DICE_FUNCTION, share_dice
from linkage.settings import equality_terms


def predict_with_blocking_counts(
    linker: Linker, threshold: float | None, records: int,
    vectors: SplinkDataFrame | None = None,
) -> tuple[SplinkDataFrame, list[dict[str, Any]]]:
    """`predict`, plus the pairs each blocking rule added, as the records of Splink's
    blocking-rule chart.

    Splink's chart counts by building every blocked pair again; predict has just built
    them (each tagged with the first rule that produced it, its match_key), so the
    counts are one GROUP BY over that table: exact, whatever the number of records.

    `vectors` (from `comparison_vectors`, for this linker's comparisons) are scored as
    they are, not computed again; they are dropped afterwards.
    """
    blocked = linker.inference.compute_blocked_pairs_for_predict()
    try:
        if vectors is not None:
            predictions = score_comparison_vectors(linker, vectors, threshold)
        else:
            predictions = score_blocked_pairs(linker, blocked, threshold)
        counts = dict(linker._db_api._con.execute(
            f"SELECT CAST(match_key AS INTEGER), count(*) FROM {blocked.physical_name} GROUP BY ALL"
        ).fetchall())
    finally:
        # Ours when the run kept the pairs its rule choice counted (linkage.blocking).
        blocked.drop_table_from_database_and_remove_from_cache(force_non_splink_table=True)
        if vectors is not None:
            vectors.drop_table_from_database_and_remove_from_cache()
    return predictions, blocking_count_records(linker, counts, records)


def _duckdb_dice(clk: str) -> str:
    return f"{DICE_FUNCTION}(l.{clk}, r.{clk})"


def score_blocked_pairs(linker: Linker, blocked: SplinkDataFrame, threshold: float | None,
                        dice: Callable[[str], str] = _duckdb_dice) -> SplinkDataFrame:
    """Splink's predict on blocked pairs (its own SQL, as `linker.inference.predict`
    builds it when not chunked), with each CLK's Dice computed once per pair.

    The join that brings each pair's columns together also computes each Dice once, and
    the levels read it (`linkage.clk.share_dice`). `dice(clk)` is that Dice in the
    linker's SQL dialect over the pair's `l.<clk>` and `r.<clk>` (the DuckDB macro by
    default; linkage.spark_engine gives Spark SQL built-ins).
    Same levels, same weights (tested equal to `linker.inference.predict`).
    """
    pipeline = _comparison_vectors_pipeline(linker, blocked, dice)
    pipeline.enqueue_list_of_sqls(
        predict_from_comparison_vectors_sqls_using_settings(linker._settings_obj, threshold, None))
    return linker._db_api.sql_pipeline_to_splink_dataframe(pipeline)


def comparison_vectors(linker: Linker, blocked: SplinkDataFrame) -> SplinkDataFrame:
    """The blocked pairs' comparison vectors (Splink's `__splink__df_comparison_vectors`:
    ids, retained columns, one gamma per comparison, match_key), as a table.

    Computing the levels (six Dice a pair) is most of scoring: a run that fits EM on the
    blocked pairs (linkage.blocked_em) counts their patterns from this table and then
    scores it (`score_comparison_vectors`), so each pair's levels are computed once.
    Valid while the linker's comparison levels (their SQL, not m and u) are unchanged.
    """
    return linker._db_api.sql_pipeline_to_splink_dataframe(
        _comparison_vectors_pipeline(linker, blocked, _duckdb_dice))


def score_comparison_vectors(linker: Linker, vectors: SplinkDataFrame,
                             threshold: float | None) -> SplinkDataFrame:
    """Splink's predict over comparison vectors already computed (`comparison_vectors`)."""
    pipeline = CTEPipeline([vectors])
    pipeline.enqueue_list_of_sqls(
        predict_from_comparison_vectors_sqls_using_settings(linker._settings_obj, threshold, None))
    return linker._db_api.sql_pipeline_to_splink_dataframe(pipeline)


def _comparison_vectors_pipeline(linker: Linker, blocked: SplinkDataFrame,
                                 dice: Callable[[str], str]) -> CTEPipeline:
    settings = linker._settings_obj
    info = settings.column_info_settings
    cvv_columns, clks = share_dice(settings._columns_to_select_for_comparison_vector_values)
    blocking_columns = settings._columns_to_select_for_blocking + [
        f"{dice(c)} AS __jup_dice_{c}" for c in clks
    ]
    pipeline = CTEPipeline([blocked])
    records = _records_table(linker)
    if records is None:
        enqueue_df_concat_with_tf(linker, pipeline)
        records = "__splink__df_concat_with_tf"
    pipeline.enqueue_list_of_sqls(compute_comparison_vector_values_from_id_pairs_sqls(
        blocking_columns, cvv_columns,
        input_tablename_l=records, input_tablename_r=records,
        source_dataset_input_column=info.source_dataset_input_column,
        unique_id_input_column=info.unique_id_input_column,
        link_type=settings._link_type, sql_dialect_str=linker._sql_dialect_str,
    ))
    return pipeline


def _records_table(linker: Linker) -> str | None:
    """The linker's one input table, when the pairs can join it as it is: no term
    frequencies to add. (Splink's `__splink__df_concat_with_tf` is then every column of
    it again, which DuckDB materialises to join twice: a copy of every record, CLKs
    included, for the pairs to read a few columns of.)"""
    if linker._settings_obj._term_frequency_columns or len(linker._input_tables_dict) != 1:
        return None
    return next(iter(linker._input_tables_dict.values())).physical_name


def blocking_count_records(
    linker: Linker, counts: dict[int, int], records: int
) -> list[dict[str, Any]]:
    """Splink's `count_comparisons_from_blocking_rules` records (record_sample_proportion
    1.0) from the pairs per match_key, for the `dedupe_only` model every run is. Rules that
    are conjunctions of `l.a = r.b` are described without parsing (the strings Splink's
    parser gives them); others by Splink."""
    settings = linker._settings_obj
    info = settings.column_info_settings
    uid_cols = [info.unique_id_input_column]
    if info.source_dataset_input_column:
        uid_cols.insert(0, info.source_dataset_input_column)
    link_condition = _sql_gen_where_condition("dedupe_only", uid_cols)
    out: list[dict[str, Any]] = []
    cumulative = 0
    for key, rule in enumerate(settings._blocking_rules_to_generate_predictions):
        terms = equality_terms(rule.blocking_rule_sql)
        if terms and '"' not in rule.blocking_rule_sql:  # quoted names: Splink's own strings
            describe = {"equi_join_conditions": " AND ".join(
                            f"l.{left} = r.{right}" for left, right in terms),
                        "filter_conditions": "", "link_type_join_condition": link_condition}
        else:
            describe = _describe_blocking_rule(rule, "dedupe_only", info.unique_id_input_column,
                                               info.source_dataset_input_column, linker._db_api)
        marginal = int(counts.get(key, 0))
        cumulative += marginal
        out.append({
            "blocking_rule": rule.blocking_rule_sql, **describe,
            "marginal_comparison_count": marginal, "cumulative_comparison_count": cumulative,
            "total_possible_comparison_count": records * (records - 1) // 2,
            "match_key": key, "record_sample_proportion": 1.0, "is_estimate": False,
        })
    return out


def predictions_frame(linker: Linker, table: str) -> SplinkDataFrame:
    """A table of scored pairs made elsewhere (the Spark engine's, read back) as the
    linker's predictions frame (Splink's name for it: its charts query that name), for
    the stages and charts that take one."""
    return linker._db_api.table_to_splink_dataframe("__splink__df_predict", table)


def connected_components(db_api: Any, nodes_table: str, edges_table: str) -> SplinkDataFrame:
    """Splink's connected components (its SQL, on `db_api`'s backend) of the edges
    (unique_id_l, unique_id_r) in `edges_table` over the nodes (unique_id) in
    `nodes_table`: a frame of (unique_id, cluster_id), cluster_id the component's smallest
    unique_id."""
    from splink.internals.connected_components import solve_connected_components

    return solve_connected_components(
        nodes_table=db_api.register(nodes_table, table_name=f"{nodes_table}_in"),
        edges_table=db_api.register(edges_table, table_name=f"{edges_table}_in"),
        node_id_column_name="unique_id", edge_id_column_name_left="unique_id_l",
        edge_id_column_name_right="unique_id_r", db_api=db_api, threshold_match_probability=None)
