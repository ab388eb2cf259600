"""Person scoring (`linkage.score`) agrees with Splink itself, pair by pair, on a real run.

The reference is Splink 5's own `predict_between` (the run's model.json, the settings'
blocking rules, term-frequency tables computed over the run's records), fed the same
encoded probes: real people's identifiers re-encoded by the connectors' encoder, as
recorded and altered (nickname, day/month swapped, fields missing, surname typo), record
rows with encodings blanked, and strangers. Candidate sets must be equal and weights
agree to 1e-6. Speed itself is measured in bench/bench_score.py; here we check what makes
it fast (no SQL on the default model's path) and that the fallbacks stay exact.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import shutil
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from splink import DuckDBAPI, Linker

from connectors.pseudonymise import IdentityEncoder
from joinedup.home import init_home
from linkage import active_extracts, ingest_extracts, link_extracts, score_identity_against_run
from linkage.clk import clk_struct_sql, create_dice_macro, words_for_bits
from linkage.score import RunScorer, ScoringError
from tests.linkage.quality import build_extracts

PEOPLE = 900
NOT_ENCODINGS = ("source", "ref", "entity_id", "fingerprint")

logging.getLogger("splink").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    # Fresh random keys each run: which levels EM leaves untrained varies with them, so
    # repeated runs also exercise Splink's default m/u for untrained levels.
    home = init_home(root / "home")
    extracts = build_extracts(root / "src", root / "staged", home.keyring(), PEOPLE, seed=23)
    ingest_extracts(list(extracts.values()), home.extracts_dir, home.store_path,
                    home.project_id, home.keyring().key_ids())
    run = home.runs_dir / "run1"
    link_extracts(active_extracts(home.store_path, home.extracts_dir), run)
    return {"root": root, "home": home, "run": run}


# ------------------------------------------------------------------ probes


def _nicknames() -> dict[str, str]:
    """canonical given name -> one of its nicknames (from the connectors' table)."""
    path = Path(__file__).resolve().parents[2] / "connectors" / "data" / "nicknames.csv"
    with path.open(newline="") as fh:
        out: dict[str, str] = {}
        for row in csv.DictReader(fh):
            out.setdefault(row["canonical"], row["nickname"])
    return out


def _raw_people(src: Path) -> list[dict[str, str]]:
    with open(src / "dwp_claimants.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    people = []
    for row in rows:
        d, m, y = row["date_of_birth"].split("/")
        people.append({
            "given_name": row["forename"], "middle_names": row["middle_names"],
            "family_name": row["surname"].title(), "date_of_birth": f"{y}-{m}-{d}",
            "sex": row["sex"], "nino": row["nino"], "postcode": row["postcode"],
            "address": row["address_line_1"], "locality": row["town"],
        })
    return people


def _variants(person: dict[str, str], nick: dict[str, str], rng: random.Random) -> dict[str, dict]:
    out = {"as recorded": dict(person)}
    y, m, d = person["date_of_birth"].split("-")
    if int(d) <= 12 and d != m:
        out["day and month swapped"] = {**person, "date_of_birth": f"{y}-{d}-{m}", "nino": ""}
    nickname = nick.get(person["given_name"].lower())
    if nickname:
        out["nickname"] = {**person, "given_name": nickname.title()}
    out["no date of birth, no NINO"] = {**person, "date_of_birth": "", "nino": ""}
    out["names and date of birth only"] = {
        k: person[k] for k in ("given_name", "family_name", "date_of_birth")}
    out["no postcode, no address"] = {**person, "postcode": "", "address": "", "nino": ""}
    fam = person["family_name"]
    i = rng.randrange(1, len(fam)) if len(fam) > 2 else 1
    out["surname typo"] = {**person, "family_name": fam[:i] + fam[i + 1:] + fam[i:i + 1], "nino": ""}
    out["moved"] = {**person, "postcode": "CT9 9ZZ", "address": "1 Nowhere Street", "nino": ""}
    return out


STRANGERS = [
    {"given_name": "Zebedee", "family_name": "Quillfeather", "date_of_birth": "1901-02-03",
     "postcode": "ZZ9 9ZZ"},
    {"given_name": "Ottoline", "family_name": "Vantongeren", "date_of_birth": "1950-12-30",
     "sex": "F", "nino": "", "address": "99 Nowhere Lane", "locality": "Nowhere"},
]


@pytest.fixture(scope="module")
def probes(world):
    """(label, encoded identity) pairs covering the cases an adviser meets."""
    enc = IdentityEncoder(world["home"].keyring())
    rng = random.Random(7)
    nick = _nicknames()
    out = []
    people = _raw_people(world["root"] / "src")
    for person in rng.sample(people, 25):
        for label, raw in _variants(person, nick, rng).items():
            out.append((label, enc.encode_identity(raw)))
    # record rows as stored, with some encodings blanked (nulls on the probe side)
    records = pq.read_table(world["run"] / "records.parquet").to_pylist()
    columns = [c for c in records[0] if c not in NOT_ENCODINGS]
    for rec in rng.sample(records, 20):
        ident = {c: rec[c] for c in columns}
        for c in rng.sample(columns, 8):
            ident[c] = None
        out.append(("record with blanks", ident))
    for raw in STRANGERS:
        out.append(("stranger", enc.encode_identity(raw)))
    return out


# ------------------------------------------------------------------ the reference


def splink_reference(run: Path, probes: list[dict]) -> tuple[dict[int, dict], set]:
    """Splink's own scores of each probe against the run's records.

    Returns probe number -> {(source, ref): (match_weight, match_probability)}, and the
    set of (comparison, level weight) values Splink observed (to show the probes exercise
    many levels).
    """
    model = json.loads((run / "model.json").read_text())
    settings = json.loads((run / "settings.json").read_text())
    records = pq.read_table(run / "records.parquet")
    encodings = [c for c in records.column_names if c not in NOT_ENCODINGS]
    clks = [c for c in encodings if pa.types.is_binary(records.schema.field(c).type)]
    width = max(len(b) for b in records.column(clks[0]).to_pylist() if b)
    words = words_for_bits(8 * width)
    con = duckdb.connect()
    create_dice_macro(con, words)
    con.register("records_in", records.append_column(
        "uid", pa.array(range(1, records.num_rows + 1), pa.int64())))
    probe_rows = [{c: p.get(c) for c in encodings} for p in probes]
    con.register("probes_in", pa.Table.from_pylist(
        probe_rows, schema=records.select(encodings).schema).append_column(
        "uid", pa.array(range(len(probes)), pa.int64())))
    select = ", ".join(
        f"{clk_struct_sql('t.' + c, words)} AS {c}" if c in clks else f"t.{c}" for c in encodings)
    con.execute(f"CREATE TABLE records AS SELECT t.uid AS unique_id, t.source, t.ref, {select} "
                "FROM records_in t")
    con.execute(f"CREATE TABLE probes AS SELECT t.uid + 1000000000 AS unique_id, 'probe' AS source, "
                f"'p' || t.uid AS ref, {select} FROM probes_in t")
    db = DuckDBAPI(connection=con)
    records_df, probes_df = db.register("records"), db.register("probes")
    model["blocking_rules_to_generate_predictions"] = (
        settings["splink"]["blocking_rules_to_generate_predictions"])
    linker = Linker(records_df, model)
    # Keep each comparison's weight in the output (private, as linkage/model.py does).
    linker._settings_obj._retain_intermediate_calculation_columns = True
    for col in sorted({lv["tf_adjustment_column"] for c in model["comparisons"]
                       for lv in c["comparison_levels"] if lv.get("tf_adjustment_column")}):
        linker.table_management.compute_tf_table(col)
    pred = linker.inference.predict_between(probes_df, records_df, warning_mode="never")
    df = con.execute(f"SELECT * FROM {pred.physical_name}").df()
    out: dict[int, dict] = {i: {} for i in range(len(probes))}
    for row in df.itertuples():
        out[row.unique_id_l - 1000000000][(row.source_r, row.ref_r)] = (
            row.match_weight, row.match_probability)
    # Each level has its own weight: distinct per-comparison weights = levels met.
    levels = {(c["output_column_name"], round(w, 9))
              for c in model["comparisons"]
              for w in df[f"mw_{c['output_column_name']}"].unique().tolist()}
    con.close()
    return out, levels


def assert_agrees(found: list[dict], reference: dict, label: str) -> None:
    got = {(c["source"], c["ref"]): c for c in found}
    assert set(got) == set(reference), label
    for key, (weight, prob) in reference.items():
        assert got[key]["match_weight"] == pytest.approx(weight, abs=1e-6), (label, key)
        assert got[key]["match_probability"] == pytest.approx(prob, abs=1e-9), (label, key)
    probs = [c["match_probability"] for c in found]
    assert probs == sorted(probs, reverse=True), label


# ------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def reference(world, probes):
    return splink_reference(world["run"], [p for _l, p in probes])


@pytest.mark.parametrize("path", ["pair by pair", "over arrays"])
def test_both_evaluation_paths_equal_splink(world, probes, reference, path):
    """Few candidates are scored pair by pair in Python, many over numpy arrays: each
    path on its own gives Splink's weights for every probe."""
    scorer = RunScorer(world["run"])
    scorer.scalar_max_candidates = 10**9 if path == "pair by pair" else 0
    for i, (label, probe) in enumerate(probes):
        assert_agrees(scorer.score(probe), reference[0][i], f"probe {i} ({label}), {path}")


def test_weights_equal_splink_for_every_kind_of_probe(world, probes, reference):
    reference, levels = reference
    pairs = 0
    for i, (label, probe) in enumerate(probes):
        found = score_identity_against_run(world["run"], probe)
        assert_agrees(found, reference[i], f"probe {i} ({label})")
        pairs += len(found)
    assert pairs >= 300
    # The probes reach well beyond exact agreement: most of the model's levels occur.
    model = json.loads((world["run"] / "model.json").read_text())
    assert len(levels) >= 0.7 * sum(len(c["comparison_levels"]) for c in model["comparisons"])
    by_label: dict[str, list] = {}
    for i, (label, _p) in enumerate(probes):
        by_label.setdefault(label, []).append(max(
            (p for _w, p in reference[i].values()), default=0.0))
    # Altered identities still find their person, strangers find no one plausible.
    for label in ("as recorded", "nickname", "day and month swapped", "moved"):
        best = by_label[label]
        assert sum(p >= 0.5 for p in best) >= 0.8 * len(best), label
    assert all(p < 0.5 for p in by_label["stranger"])


def test_default_model_runs_without_sql_and_agrees_on_exact_copies(world):
    """The default settings' conditions and rules all take the numpy/index path (what
    makes a call sub-millisecond); and an exact copy of a linked record finds the weights
    links.parquet holds."""
    scorer = RunScorer(world["run"])
    assert all(c.compiled for c in scorer.comparisons)
    assert scorer.sql_rules == []
    settings = json.loads((world["run"] / "settings.json").read_text())
    assert len(scorer.indexes) == len(settings["splink"]["blocking_rules_to_generate_predictions"])
    links = pq.read_table(world["run"] / "links.parquet").to_pylist()
    records = {(r["source"], r["ref"]): r for r in pq.read_table(world["run"] / "records.parquet").to_pylist()}
    checked = 0
    for link in links[:200]:
        rec = records[(link["source_l"], link["ref_l"])]
        found = scorer.score({c: v for c, v in rec.items() if c not in NOT_ENCODINGS})
        other = [c for c in found if (c["source"], c["ref"]) == (link["source_r"], link["ref_r"])]
        assert other, link
        assert other[0]["match_weight"] == pytest.approx(link["match_weight"], abs=1e-6)
        checked += 1
    assert checked >= 100


def _copy_run(run: Path, dest: Path, edit_model=None, edit_settings=None) -> Path:
    shutil.copytree(run, dest)
    for name, edit in (("model.json", edit_model), ("settings.json", edit_settings)):
        if edit:
            doc = json.loads((dest / name).read_text())
            edit(doc)
            (dest / name).write_text(json.dumps(doc))
    return dest


def test_conditions_and_rules_outside_the_fast_path_fall_back_to_sql_exactly(world, probes, tmp_path):
    """A colleague's new comparison level or blocking rule in SQL the compiler does not
    know is still applied exactly (by DuckDB), not dropped."""
    def edit_model(doc):
        nino = next(c for c in doc["comparisons"] if c["output_column_name"] == "nino")
        exact = next(lv for lv in nino["comparison_levels"] if lv["sql_condition"] == "tk_nino_l = tk_nino_r")
        exact["sql_condition"] = "coalesce(tk_nino_l, 0) = coalesce(tk_nino_r, 1)"

    def edit_settings(doc):
        rules = doc["splink"]["blocking_rules_to_generate_predictions"]
        rules.remove("l.tk_nino = r.tk_nino")
        rules.append("least(l.tk_nino, l.tk_nino) = r.tk_nino")  # the same rule, in a new form

    run = _copy_run(world["run"], tmp_path / "edited", edit_model, edit_settings)
    scorer = RunScorer(run)
    assert [c.name for c in scorer.comparisons if not c.compiled] == ["nino"]
    assert scorer.sql_rules == ["least(l.tk_nino, l.tk_nino) = r.tk_nino"]
    chosen = probes[::6]
    reference, _levels = splink_reference(run, [p for _l, p in chosen])
    for i, (label, probe) in enumerate(chosen):
        assert_agrees(scorer.score(probe), reference[i], f"probe {i} ({label})")


def test_concurrent_calls_give_the_sequential_answers(world, probes):
    scorer = RunScorer(world["run"])
    expected = [scorer.score(p) for _l, p in probes]
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for _round in range(3):
                for i in range(offset, len(probes), 4):
                    results.setdefault(i, []).append(scorer.score(probes[i][1]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, got in results.items():
        assert all(g == expected[i] for g in got), i
    assert len(results) == len(probes)


def test_a_replaced_run_is_reloaded(world, probes, tmp_path):
    runs = tmp_path / "runs"
    live = _copy_run(world["run"], runs / "live")
    label, probe = probes[0]
    before = score_identity_against_run(live, probe)
    assert before, label
    # A new run renamed into place (as link_extracts does): a different prior.
    prior = json.loads((live / "model.json").read_text())["probability_two_random_records_match"]

    def edit(doc):
        doc["probability_two_random_records_match"] = prior / 8
    new = _copy_run(world["run"], runs / "new", edit_model=edit)
    # The weights move by the change of the prior's log2 odds (-3 bits for a small prior).
    shift = math.log2(prior / 8 / (1 - prior / 8)) - math.log2(prior / (1 - prior))
    os.replace(live, runs / "old")
    os.replace(new, live)
    after = score_identity_against_run(live, probe)
    assert [(c["source"], c["ref"]) for c in after] == [(c["source"], c["ref"]) for c in before]
    for b, a in zip(before, after, strict=True):
        if abs(b["match_weight"]) < 900:  # not clamped
            assert a["match_weight"] == pytest.approx(b["match_weight"] + shift, abs=0.01)


def test_bad_runs_and_probes_are_refused_with_a_reason(world, tmp_path):
    with pytest.raises(ScoringError, match="no model.json"):
        score_identity_against_run(tmp_path, {})
    run = _copy_run(world["run"], tmp_path / "run")
    with pytest.raises(ScoringError, match="unknown column"):
        score_identity_against_run(run, {"tk_shoe_size": 1})
    with pytest.raises(ScoringError, match="mk_name_dob: a token must be an integer"):
        score_identity_against_run(run, {"mk_name_dob": "1970-01-01"})
    assert score_identity_against_run(run, {}) == []  # nothing to block on: no candidate
    (run / "model.json").write_text(json.dumps({"comparisons": []}))
    with pytest.raises(ScoringError, match="not a trained Splink model"):
        score_identity_against_run(run, {})
    (run / "records.parquet").unlink()
    (run / "model.json").touch()
    with pytest.raises(ScoringError, match="no records.parquet"):
        score_identity_against_run(run, {})


def test_untrained_levels_score_as_splink_does():
    """EM can leave a level untrained (m None) or unobserved; Splink then scores it with the
    comparison's default m for that level's position, or 1e-6. The scorer must do the same
    (a surname-typo probe once landed on such a level and was 2.6 bits off)."""
    from splink.internals.comparison_level import _default_m_values, _default_u_values

    from linkage.score import _effective_levels

    raw = [
        {"sql_condition": "a_l IS NULL OR a_r IS NULL", "is_null_level": True},
        {"sql_condition": "a_l = a_r", "m_probability": 0.9, "u_probability": 0.01},
        {"sql_condition": "b_l = b_r", "m_probability": None, "u_probability": 0.02},
        {"sql_condition": "ELSE", "m_probability": "level not observed in training dataset",
         "u_probability": None},
    ]
    levels = _effective_levels(raw)
    assert levels[0] == raw[0]
    assert (levels[1]["m_probability"], levels[1]["u_probability"]) == (0.9, 0.01)
    assert levels[2]["m_probability"] == _default_m_values(3)[1]  # second of three: value 1
    assert levels[2]["u_probability"] == 0.02
    assert levels[3]["m_probability"] == 1e-6
    assert levels[3]["u_probability"] == _default_u_values(3)[0]
