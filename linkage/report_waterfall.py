"""The report's match-weight waterfalls: a few scored pairs nearest the cluster threshold
(the ones a data officer would review), each comparison's level and weight, as a plain
table and as Splink's own waterfall chart over the same records.

The bars come from `linkage.score.RunScorer.explain` on the run being written (model.json,
settings.json and records.parquet are in place before the report), the same waterfall the
review page and `joinedup review explain` show. Encodings only: the chart's record values
(`value_l`, `value_r`) are left empty, so no encoding is printed either.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import duckdb

log = logging.getLogger(__name__)
PAIRS_SHOWN = 4


def near_threshold(links: Path, threshold: float, n: int = PAIRS_SHOWN) -> list[tuple]:
    """(source_l, ref_l, source_r, ref_r, match_probability) of the n scored pairs nearest
    the threshold, in a stable order."""
    path = str(links).replace("'", "''")
    return duckdb.connect().execute(
        f"SELECT source_l, ref_l, source_r, ref_r, match_probability "
        f"FROM read_parquet('{path}') "
        f"ORDER BY abs(match_probability - {float(threshold)!r}), source_l, ref_l, source_r, ref_r LIMIT {int(n)}").fetchall()


def waterfalls(run_dir: Path, threshold: float, n: int = PAIRS_SHOWN,
               scorer: Any = None) -> list[dict[str, Any]]:
    """The explained pairs nearest the threshold (see linkage.score.explain_pair).

    The run's scorer loads only the records of these pairs (term frequencies still over
    the whole run): the full scorer holds every record's encodings, seconds and gigabytes
    at millions of records, for a handful of bars. `scorer` may be one already loaded
    with (at least) these records."""
    from linkage import score

    pairs = near_threshold(run_dir / "links.parquet", threshold, n)
    if scorer is None:
        scorer = score.RunScorer(run_dir, only={rec for sl, rl, sr, rr, _p in pairs
                                                for rec in ((sl, rl), (sr, rr))})
    out = []
    for sl, rl, sr, rr, p in pairs:
        explained = score.explain_pair_with(scorer, (sl, rl), (sr, rr))
        explained["run_match_probability"] = p
        out.append(explained)
    return out


def chart_records(explained: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The waterfalls as Splink's waterfall chart records, one record_number per pair."""
    records = []
    for number, pair in enumerate(explained):
        for bar in pair["waterfall"]:
            records.append({**bar, "record_number": number, "value_l": "", "value_r": "",
                            "sql_condition": "", "bayes_factor_description": ""})
    return records


def section(run_dir: Path, threshold: float, scorer: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """(HTML of the section, Splink chart records). A failure leaves a note, not a failed
    run."""
    try:
        explained = waterfalls(run_dir, threshold, scorer=scorer)
    except Exception as exc:  # noqa: BLE001 - the report must not fail the run
        log.warning("waterfalls not drawn: %s", exc)
        return ("<h2>Match-weight waterfalls near the threshold</h2>"
                f"<p>Not drawn: {html.escape(type(exc).__name__)}.</p>", [])
    parts = ["<h2 id='waterfalls'>Match-weight waterfalls near the threshold</h2>",
             f"<p>The {len(explained)} scored pairs nearest the cluster threshold "
             f"({threshold:g}): each comparison's level and its weight (log2 Bayes factor); "
             "their sum is the match weight.</p>"]
    for number, pair in enumerate(explained):
        left, right = pair["left"], pair["right"]
        same = "one entity" if left["entity_id"] == right["entity_id"] else "different entities"
        rows = "".join(
            f"<tr><td>{html.escape(str(b['column_name']))}</td>"
            f"<td>{html.escape(str(b['label_for_charts']))}</td>"
            f"<td>{'' if b['comparison_vector_value'] is None else b['comparison_vector_value']}</td>"
            f"<td style='text-align:right'>{b['log2_bayes_factor']:+.3f}</td></tr>"
            for b in pair["waterfall"])
        parts.append(
            f"<h3>Pair {number}: {html.escape(left['source'])}/{html.escape(str(left['ref']))} "
            f"and {html.escape(right['source'])}/{html.escape(str(right['ref']))}</h3>"
            f"<p>Match probability {pair['match_probability']:.4f} (weight "
            f"{pair['match_weight']:.3f}); in {same}.</p>"
            "<table class='waterfall'><thead><tr><th>comparison</th><th>level</th>"
            f"<th>level number</th><th>weight</th></tr></thead><tbody>{rows}</tbody></table>")
    return "".join(parts), chart_records(explained)
