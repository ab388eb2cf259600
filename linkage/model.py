"""The Fellegi–Sunter model on encodings, trained and applied with Splink 5 on DuckDB.

Training needs no labels: u by random sampling, the prior (lambda) from deterministic
rules on identifier tokens, m by expectation maximisation on several blocked samples.
Term-frequency adjustments apply to the token columns named in the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import duckdb
from splink import DuckDBAPI, Linker
from splink.internals.splink_dataframe import SplinkDataFrame

from linkage.settings import splink_settings

RECORDS_TABLE = "records"

# Splink logs every EM iteration, and warns about levels a training sample did not
# observe; the run reports its own progress, and the report shows the parameters.
logging.getLogger("splink").setLevel(logging.ERROR)


def make_linker(con: duckdb.DuckDBPyConnection, settings_doc: dict[str, Any]) -> Linker:
    """A Linker over the stacked `records` table (unique_id, source, ref, encodings)."""
    db_api = DuckDBAPI(connection=con)
    df = db_api.register(RECORDS_TABLE, dataset_display_name="records")
    return Linker(df, splink_settings(settings_doc), log_level=None)


def train(
    linker: Linker,
    settings_doc: dict[str, Any],
    step: Callable[[str], None] = lambda _name: None,
) -> None:
    """Estimate the prior, u and m in place on the linker."""
    training = settings_doc["training"]
    step("prior")
    try:
        linker.training.estimate_probability_two_random_records_match(
            training["prior_rules"], recall=training["prior_recall"]
        )
    except Exception as exc:  # noqa: BLE001 - Splink raises a bare Exception when no pair matches
        # Too few records for a deterministic match: keep the settings' prior.
        logging.getLogger(__name__).info("prior not estimated: %s", exc)
    step("u")
    linker.training.estimate_u_using_random_sampling(
        max_pairs=training["u_max_pairs"], seed=training.get("seed")
    )
    for rule in training["em_blocking_rules"]:
        step(f"m: {rule}")
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule,
            estimate_without_term_frequencies=True,
            max_pairs=training["em_max_pairs"],
        )


def predict(linker: Linker, threshold: float) -> SplinkDataFrame:
    """Scored pairs at or above `threshold` match probability."""
    return linker.inference.predict(threshold_match_probability=threshold, warning_mode="never")


def trained_model(linker: Linker) -> dict[str, Any]:
    """The trained Splink settings (what `model.json` holds)."""
    return linker.misc.save_model_to_json()
