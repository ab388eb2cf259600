"""Runs (list, show, rollback, no silent overwrite), clerical review end to end (labels
change the next run; accuracy from sampled labels), and explanations (the waterfall is
Splink's) on real extracts of the synthetic sources, through the real CLI."""

from __future__ import annotations

import json
import random

import duckdb
import pytest
from click.testing import CliRunner
from splink.internals.waterfall_chart import records_to_waterfall_data

from joinedup.cli import cli
from joinedup.home import init_home
from linkage import model
from linkage.clk import create_dice_macro, words_for_bits
from linkage.ingest import clk_bits_of, extract_from_dir, stack_sql
from linkage.review import (
    accuracy_estimate,
    add_label,
    pair_id,
    review_queue,
    sample_pair,
    why_in_entity,
    wilson,
)
from linkage.runs import list_runs
from linkage.score import explain_pair
from tests.linkage.quality import INPUTS, build_extracts

PEOPLE = 1200


def _cli(*args: str) -> str:
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    home = init_home(root / "home")
    extracts = build_extracts(root / "src", root / "staged", home.keyring(), PEOPLE, seed=21)
    _cli("ingest", "--home", str(home.root), *map(str, extracts.values()))
    _cli("link", "--home", str(home.root), "--out", "run1")
    # the truth: (source, ref) -> person
    con = duckdb.connect()
    keymaps = " UNION ALL ".join(
        f"SELECT '{kind}' AS kind, '{kind}-thanet' AS source, local_id, ref "
        f"FROM read_parquet('{root / 'staged' / kind / 'keymap.parquet'}')" for kind in INPUTS)
    person = {(s, r): p for s, r, p in con.execute(
        f"""SELECT k.source, k.ref, t.person_id FROM ({keymaps}) k
            JOIN read_csv('{root / 'src' / 'ground_truth.csv'}', all_varchar=true) t
              ON t.source = k.kind AND t.local_id = k.local_id""").fetchall()}
    return {"root": root, "home": home, "person": person}


def _entity_of(run_dir):
    return {(s, r): e for e, s, r in duckdb.connect().execute(
        f"SELECT entity_id, source, ref FROM read_parquet('{run_dir / 'entities.parquet'}')").fetchall()}


def _links(run_dir):
    return duckdb.connect().execute(
        f"SELECT source_l, ref_l, source_r, ref_r, match_probability "
        f"FROM read_parquet('{run_dir / 'links.parquet'}') ORDER BY ALL").fetchall()


def test_link_refuses_to_overwrite_a_run_unless_told(world):
    home = world["home"]
    before = (home.runs_dir / "run1" / "summary.json").read_text()
    res = CliRunner().invoke(cli, ["link", "--home", str(home.root), "--out", "run1"])
    assert res.exit_code != 0 and "--replace" in res.output
    assert (home.runs_dir / "run1" / "summary.json").read_text() == before


def test_review_end_to_end_and_runs(world):
    """A false link labelled non-match is gone next run; a missed pair labelled match is
    joined (one no blocking rule found, if there is one); runs list/show/rollback."""
    home, person = world["home"], world["person"]
    run1 = home.runs_dir / "run1"
    entity = _entity_of(run1)
    t = json.loads((run1 / "summary.json").read_text())["thresholds"]["cluster_match_probability"]
    linked = [((a, b), (c, d)) for a, b, c, d, p in _links(run1) if p >= t and entity[(a, b)] == entity[(c, d)]]
    false_links = [(x, y) for x, y in linked if person[x] != person[y]]
    # a false link if the run made one, else any link (the mechanism is the same)
    cut = (false_links or linked)[0]
    by_person: dict = {}
    for rec, p in person.items():
        by_person.setdefault(p, []).append(rec)
    missed = [(x, y) for recs in by_person.values() for i, x in enumerate(recs) for y in recs[i + 1:]
              if entity[x] != entity[y]]
    rng = random.Random(3)
    if missed:
        join = missed[0]
    else:  # two unrelated records of different entities
        recs = sorted(entity)
        join = next((x, y) for x, y in ((rng.choice(recs), rng.choice(recs)) for _ in range(100))
                    if entity[x] != entity[y] and x not in cut and y not in cut)
    assert entity[cut[0]] == entity[cut[1]] and entity[join[0]] != entity[join[1]]

    # the queue holds unlabelled pairs, most consequential first
    queue = review_queue(run1, home.root / "review", limit=50)
    assert queue and all(queue[i]["priority"] >= queue[i + 1]["priority"] for i in range(len(queue) - 1))

    review = home.root / "review"
    add_label(review, *join, "match", "officer-a", run="run1")  # a pair possibly in no link
    pid = pair_id(*cut)
    if any(pair_id((a, b), (c, d)) == pid for a, b, c, d, _p in _links(run1)):
        _cli("review", "label", "--home", str(home.root), "--as", "non-match", "--by", "officer-b", pid)
    else:
        add_label(review, *cut, "non-match", "officer-b", run="run1")
    labels = [json.loads(x) for x in (review / "labels.jsonl").read_text().splitlines()]
    assert {x["by"] for x in labels} == {"officer-a", "officer-b"} and all(x["at"] for x in labels)
    assert not any(k in json.dumps(labels) for k in ("given", "family", "postcode", "dob"))

    _cli("link", "--home", str(home.root), "--out", "run2")
    run2 = home.runs_dir / "run2"
    after = _entity_of(run2)
    assert after[cut[0]] != after[cut[1]]
    assert after[join[0]] == after[join[1]]
    summary = json.loads((run2 / "summary.json").read_text())
    assert summary["labels"]["must_link"] == 1 and summary["labels"]["cannot_link"] == 1
    # labelled pairs leave the queue
    assert pid not in {x["pair_id"] for x in review_queue(run2, review, limit=10_000)}

    # entity changes between the runs, with ids
    changes = json.loads((run2 / "entity_changes.json").read_text())
    old = entity[cut[0]]
    assert any(s["entity_id"] == old for s in changes["split"]) or old in changes["retired"] \
        or after[cut[0]] == old or after[cut[1]] == old
    merged_into = after[join[0]]
    assert any(m["entity_id"] == merged_into and set(m["from"]) >= {entity[join[0]], entity[join[1]]}
               for m in changes["merged"])
    shown = _cli("runs", "show", "--home", str(home.root), "run2")
    assert "merged: " in shown and merged_into in shown

    runs = list_runs(home.runs_dir)
    assert [r["run"] for r in runs] == ["run1", "run2"] and runs[1]["current"]
    out = _cli("runs", "rollback", "--home", str(home.root))
    assert "run1" in out
    assert (home.runs_dir / "CURRENT").read_text().strip() == "run1"
    listed = _cli("runs", "list", "--home", str(home.root))
    assert "* run1" in listed
    bad = CliRunner().invoke(cli, ["runs", "rollback", "--home", str(home.root), "--to", "nope"])
    assert bad.exit_code != 0 and "no finished link run" in bad.output
    _cli("runs", "rollback", "--home", str(home.root), "--to", "run2")


def test_accuracy_from_200_sampled_labels_contains_the_true_precision(world, tmp_path):
    """200 labels drawn by `sample_pair` give the Wilson interval of their own counts, and
    that interval contains the true precision. One draw misses it by chance (near a precision
    of 1, one false link among 200 puts Wilson's upper bound below the truth), so coverage is
    measured over 40 independent draws of 200 links, the first one through the review path."""
    import random

    home, person = world["home"], world["person"]
    run = home.runs_dir / "run1"
    review = tmp_path / "review"
    t = json.loads((run / "summary.json").read_text())["thresholds"]["cluster_match_probability"]
    links = [((a, b), (c, d)) for a, b, c, d, p in _links(run) if p >= t]
    true_precision = sum(person[x] == person[y] for x, y in links) / len(links)
    for i in range(200):
        got = sample_pair(run, review, "links", seed=i)
        x, y = tuple(got["left"]), tuple(got["right"])
        add_label(review, x, y, "match" if person[x] == person[y] else "non-match", "clerk",
                  purpose="sample-links")
    for i in range(60):
        got = sample_pair(run, review, "band", seed=i)
        if got is None:
            break
        x, y = tuple(got["left"]), tuple(got["right"])
        add_label(review, x, y, "match" if person[x] == person[y] else "non-match", "clerk",
                  purpose="sample-band")
    est = accuracy_estimate(run, review)
    assert est["precision"]["labels"] == 200
    assert est["precision"]["low"] < est["precision"]["estimate"] <= est["precision"]["high"]
    k = round(est["precision"]["estimate"] * 200)
    assert (est["precision"]["low"], est["precision"]["high"]) == pytest.approx(wilson(k, 200))
    if "recall" in est:
        assert est["recall"]["low"] <= est["recall"]["estimate"] <= est["recall"]["high"]
    covered = est["precision"]["low"] <= true_precision <= est["precision"]["high"]
    for draw in range(1, 40):  # the same draw as sample_pair's: uniform, without replacement
        sample = random.Random(draw).sample(links, 200)
        lo, hi = wilson(sum(person[x] == person[y] for x, y in sample), 200)
        covered += lo <= true_precision <= hi
    # Nominal 95%; near a precision of 1 Wilson covers ~89%. Under 30 of 40 by chance: < 0.2%.
    assert covered >= 30, (covered, true_precision)
    # Wilson: known values
    assert wilson(0, 10)[0] == 0 and wilson(10, 10)[1] == 1
    assert wilson(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_waterfall_equals_splinks_for_the_same_model_and_pairs(world):
    """Each bar (prior, each comparison's level and weight, term-frequency adjustments,
    final score) equals Splink's waterfall chart data for the run's model and pairs."""
    home = world["home"]
    run = home.runs_dir / "run1"
    extracts = [extract_from_dir(home.extracts_dir / p.parent.name / p.name)
                for p in (home.extracts_dir).glob("*/*") if p.is_dir()]
    con = duckdb.connect()
    words = words_for_bits(clk_bits_of(extracts))
    create_dice_macro(con, words)
    con.execute(f"CREATE TABLE records AS {stack_sql(sorted(extracts, key=lambda e: e.source), words)}")
    trained = json.loads((run / "model.json").read_text())
    trained["retain_intermediate_calculation_columns"] = True
    trained["retain_matching_columns"] = True
    linker = model.make_linker(con, {"splink": trained})
    pred = linker.inference.predict(threshold_match_probability=0.01, warning_mode="never")
    frame = pred.as_pandas_dataframe().sort_values("match_weight")
    picks = frame.iloc[[int(i * (len(frame) - 1) / 24) for i in range(25)]]
    splinks = records_to_waterfall_data(picks.to_dict("records"), linker._settings_obj, True)
    compared = tf_bars = 0
    for i, rec in enumerate(picks.to_dict("records")):
        theirs = [w for w in splinks if w["record_number"] == i]
        ours = explain_pair(run, (rec["source_l"], rec["ref_l"]), (rec["source_r"], rec["ref_r"]))
        mine = ours["waterfall"]
        assert [b["column_name"] for b in mine] == [b["column_name"] for b in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert a["label_for_charts"] == b["label_for_charts"], (a, b)
            if not a["column_name"].startswith("tf_"):
                assert a["comparison_vector_value"] == b["comparison_vector_value"], (a, b)
            assert a["log2_bayes_factor"] == pytest.approx(b["log2_bayes_factor"], abs=1e-9), (a, b)
            tf_bars += a["column_name"].startswith("tf_") and a["log2_bayes_factor"] != 0
            compared += 1
        assert ours["match_probability"] == pytest.approx(rec["match_probability"], abs=1e-12)
    assert compared > 100


def test_why_a_record_is_in_its_entity(world):
    home = world["home"]
    run = home.runs_dir / "run1"
    entity = _entity_of(run)
    sizes: dict = {}
    for rec, e in entity.items():
        sizes.setdefault(e, []).append(rec)
    rec = next(recs[0] for recs in sizes.values() if len(recs) >= 3)
    why = why_in_entity(run, *rec)
    assert why["entity_id"] == entity[rec]
    assert sorted(map(tuple, why["records"])) == sorted(sizes[entity[rec]])
    # the links holding it: each at or above the threshold, touching the record, in the entity
    assert why["holding"]
    for link in why["holding"]:
        assert link["match_probability"] >= why["cluster_threshold"]
        assert list(rec) in (link["left"], link["right"])
    out = _cli("review", "explain", "--home", str(home.root), "--run", "run1", f"{rec[0]}/{rec[1]}")
    assert why["entity_id"] in out


def test_review_api_gives_the_queue_and_a_pairs_waterfall_to_a_data_officer_only(world):
    from fastapi.testclient import TestClient

    from joinedup.api import create_app

    home = world["home"]
    tokens = {}
    for role, org in (("data_officer", "linkage-unit"), ("adviser", "csc-margate")):
        out = _cli("users", "add", "--home", str(home.root), "--role", role, "--org", org)
        tokens[role] = out.strip().split()[-1]
    with TestClient(create_app(home.root)) as client:
        officer = {"Authorization": f"Bearer {tokens['data_officer']}"}
        got = client.get("/v1/linkage/review/next?count=3", headers=officer)
        assert got.status_code == 200, got.text
        items = got.json()["items"]
        assert items
        pid = items[0]["pair_id"]
        one = client.get(f"/v1/linkage/review/pairs/{pid}", headers=officer)
        assert one.status_code == 200 and one.json()["waterfall"][0]["column_name"] == "Prior"
        assert client.get("/v1/linkage/review/pairs/P0000000000000000", headers=officer).status_code == 404
        adviser = {"Authorization": f"Bearer {tokens['adviser']}"}
        assert client.get("/v1/linkage/review/next", headers=adviser).status_code == 403
        labelled = client.post(f"/v1/linkage/review/pairs/{pid}/label", headers=officer,
                               json={"label": "unsure"})
        assert labelled.status_code == 200, labelled.text
        refused = client.post(f"/v1/linkage/review/pairs/{pid}/label", headers=adviser,
                              json={"label": "match"})
        assert refused.status_code == 403
        # Any two records, linked or not: the pair's waterfall and the rules that compared it.
        two = {"left": dict(zip(("source", "ref"), items[1]["left"], strict=True)),
               "right": dict(zip(("source", "ref"), items[1]["right"], strict=True))}
        compared = client.post("/v1/linkage/review/compare", headers=officer, json=two)
        assert compared.status_code == 200, compared.text
        assert compared.json()["pair_id"] == items[1]["pair_id"] and compared.json()["blocked_by"]
        unknown = {**two, "right": {"source": two["right"]["source"], "ref": "f" * 24}}
        assert client.post("/v1/linkage/review/compare", headers=officer, json=unknown).status_code == 404
        assert client.post("/v1/linkage/review/compare", headers=adviser, json=two).status_code == 403
        twice = {"left": two["left"], "right": two["left"]}
        same = client.post("/v1/linkage/review/compare", headers=officer, json=twice)
        assert same.status_code == 422 and "two different records" in same.text
        assert client.post("/v1/linkage/review/compare/label", headers=adviser,
                           json={**two, "label": "match"}).status_code == 403
        by_records = client.post("/v1/linkage/review/compare/label", headers=officer,
                                 json={**two, "label": "match"})
        assert by_records.status_code == 200, by_records.text
    from linkage.review import labels

    assert labels(home.root / "review")[pid]["label"] == "unsure"
    assert labels(home.root / "review")[items[1]["pair_id"]]["label"] == "match"
