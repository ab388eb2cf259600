"""Which of a run's blocking rules bring two records together (`blocking_rules_of_pair`),
on a hand-made run: match keys, filter bands (equal 128-bit words of a filter), and
records whose filters are null or shorter than a band's word."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkage.review import ReviewError, blocking_rules_of_pair, pair_of_records

RULES = ["l.mk_x = r.mk_x", "l.band_clk_a_0 = r.band_clk_a_0", "l.band_clk_a_1 = r.band_clk_a_1"]


def _run(tmp_path: Path, rows: list[dict]) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    table = pa.table({
        "source": pa.array([r["source"] for r in rows]),
        "ref": pa.array([r["ref"] for r in rows]),
        "mk_x": pa.array([r.get("mk_x") for r in rows], pa.int64()),
        "clk_a": pa.array([r.get("clk_a") for r in rows], pa.binary()),
    })
    pq.write_table(table, run / "records.parquet")
    pq.write_table(pa.table({"source_l": pa.array([], pa.string()), "ref_l": pa.array([], pa.string()),
                             "source_r": pa.array([], pa.string()), "ref_r": pa.array([], pa.string()),
                             "match_probability": pa.array([], pa.float64())}), run / "links.parquet")
    (run / "settings.json").write_text(json.dumps({"splink": {"blocking_rules_to_generate_predictions": RULES}}))
    return run


def _words(w0: int, w1: int) -> bytes:
    return w0.to_bytes(16, "big") + w1.to_bytes(16, "big")


def test_keys_and_bands_each_named_only_when_equal(tmp_path):
    run = _run(tmp_path, [
        {"source": "a", "ref": "1", "mk_x": 7, "clk_a": _words(0b1011, 0b110)},
        {"source": "b", "ref": "2", "mk_x": 8, "clk_a": _words(0b1001, 0b110)},  # word 1 equal
        {"source": "b", "ref": "3", "mk_x": 7, "clk_a": _words(0b1011, 0)},  # key, word 0 equal
        {"source": "b", "ref": "4", "mk_x": None, "clk_a": None},  # nothing at all
        {"source": "b", "ref": "5", "mk_x": 9, "clk_a": _words(0, 0)},  # all-zero words: no band
    ])
    assert blocking_rules_of_pair(run, ("a", "1"), ("b", "2")) == [RULES[2]]
    assert blocking_rules_of_pair(run, ("b", "2"), ("a", "1")) == [RULES[2]]  # either order
    assert blocking_rules_of_pair(run, ("a", "1"), ("b", "3")) == RULES[:2]
    assert blocking_rules_of_pair(run, ("a", "1"), ("b", "4")) == []
    assert blocking_rules_of_pair(run, ("b", "4"), ("b", "5")) == []  # nulls and zeros never equal


def test_records_without_filters_or_with_short_ones_do_not_fail(tmp_path):
    """Both records without a filter, or with one word: the bands of the missing words are
    null, so their rules name no pair (they do not raise)."""
    run = _run(tmp_path, [
        {"source": "a", "ref": "1", "mk_x": 1, "clk_a": None},
        {"source": "a", "ref": "2", "mk_x": 1, "clk_a": None},
        {"source": "a", "ref": "3", "mk_x": 2, "clk_a": (5).to_bytes(16, "big")},
        {"source": "a", "ref": "4", "mk_x": 3, "clk_a": (5).to_bytes(16, "big")},
    ])
    assert blocking_rules_of_pair(run, ("a", "1"), ("a", "2")) == [RULES[0]]
    assert blocking_rules_of_pair(run, ("a", "3"), ("a", "4")) == [RULES[1]]


def test_pair_of_records_needs_two_records_of_the_run(tmp_path):
    run = _run(tmp_path, [{"source": "a", "ref": "1"}, {"source": "a", "ref": "2"}])
    got = pair_of_records(run, ("a", "2"), ("a", "1"))
    assert got["match_probability"] is None and got["pair_id"] == pair_of_records(run, ("a", "1"), ("a", "2"))["pair_id"]
    with pytest.raises(ReviewError, match="no record a/9"):
        pair_of_records(run, ("a", "1"), ("a", "9"))
    with pytest.raises(ReviewError, match="two different records"):
        pair_of_records(run, ("a", "1"), ("a", "1"))
