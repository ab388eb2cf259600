"""The run's report.html shows the match-weight waterfalls of the pairs nearest the cluster
threshold, the same bars as `explain_pair` on the finished run (and as the review page),
with Splink's waterfall chart over them and no encoding printed."""

from __future__ import annotations

import json
import re

import pytest

from linkage import report_waterfall
from linkage.score import explain_pair

pytestmark = pytest.mark.slow


def test_report_has_waterfalls_of_pairs_near_the_threshold(demo_run):
    run = demo_run[0] / "runs" / "demo-run"
    report = (run / "report.html").read_text()
    assert "Match-weight waterfalls near the threshold" in report
    threshold = json.loads((run / "summary.json").read_text())["thresholds"]["cluster_match_probability"]
    near = report_waterfall.near_threshold(run / "links.parquet", threshold)
    assert len(near) == report_waterfall.PAIRS_SHOWN
    # The nearest pairs really are the nearest: no other link is closer than the farthest shown.
    import duckdb

    gaps = [abs(p - threshold) for *_, p in near]
    closer = duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{run / 'links.parquet'}') "
        f"WHERE abs(match_probability - {threshold!r}) < {max(gaps)!r}").fetchone()[0]
    assert closer <= len(near)

    section = report.split("id='waterfalls'", 1)[1]
    tables = re.findall(r"<table class='waterfall'>(.*?)</table>", section)
    assert len(tables) == len(near)
    for (sl, rl, sr, rr, p), table in zip(near, tables, strict=True):
        explained = explain_pair(run, (sl, rl), (sr, rr))
        shown = [float(w) for w in re.findall(r"<td style='text-align:right'>([-+0-9.]+)</td>", table)]
        expected = [b["log2_bayes_factor"] for b in explained["waterfall"]]
        assert shown == pytest.approx(expected, abs=1e-3)
        assert explained["match_probability"] == pytest.approx(p, abs=1e-6)
        assert f"{sl}/{rl}" in section and f"{sr}/{rr}" in section

    # Splink's own waterfall chart over the same bars, with the record values left empty.
    assert "Match-weight waterfall chart" in report
    spec_text = report.split("Match-weight waterfall chart", 1)[1]
    spec = json.loads(re.search(r"vegaEmbed\('#chart\d+', (\{.*?\}), \{\}\);", spec_text).group(1))
    values = spec["data"]["values"]
    assert {v["record_number"] for v in values} == set(range(len(near)))
    assert all(v["value_l"] == "" and v["value_r"] == "" for v in values)


def test_chart_records_carry_no_values():
    pair = {"waterfall": [{"column_name": "Prior", "label_for_charts": "prior",
                           "comparison_vector_value": None, "log2_bayes_factor": -8.0,
                           "bayes_factor": 2 ** -8, "bar_sort_order": 0}]}
    (record,) = report_waterfall.chart_records([pair])
    assert record["record_number"] == 0 and record["value_l"] == record["value_r"] == ""
