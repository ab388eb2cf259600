"""The clerical review actions (joinedup.operations.review) on a real demo home: the queue,
a pair's waterfall, labelling (recorded in the ledger before the label is stored, finished
by recovery after a crash between the two), refusals for every other role."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from joinedup.errors import InvalidInput, NotFound, Refused
from joinedup.operations import open_service
from joinedup.operations import review as ops_review
from joinedup.operations.recovery import recover
from linkage import review as lr

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(review_demo_home, tmp_path_factory) -> Iterator[tuple]:
    """A private copy of the shared demo home (labels change it), its context and users."""
    from joinedup.home import load_home
    from joinedup.users import open_user_store

    root = tmp_path_factory.mktemp("review") / "home"
    shutil.copytree(review_demo_home[0], root)
    home = load_home(root)
    store = open_user_store(home)
    users = {}
    for role, org in (("data_officer", "linkage-unit"), ("adviser", "csc-margate"),
                      ("governance", "governance-board"), ("provider", "provider-a")):
        _, token = store.add(role, org, f"a {role}")
        users[role] = token
    ctx = open_service(home)
    try:
        callers = {role: ctx.auth.authenticate(f"Bearer {t}") for role, t in users.items()}
        yield home, ctx, callers
    finally:
        ctx.close()


def _events(ctx, kind: str | None = None) -> list[dict]:
    return [e for e in ctx.ledger.events() if kind is None or e.get("type") == kind]


def test_queue_and_waterfall_for_the_data_officer(world):
    home, ctx, users = world
    found = ops_review.review_queue(ctx, users["data_officer"])
    assert found["items"], "the demo run has uncertain links to review"
    first = found["items"][0]
    priorities = [x["priority"] for x in found["items"]]
    assert priorities == sorted(priorities, reverse=True)
    shown = ops_review.show_pair(ctx, users["data_officer"], ops_review.PairRequest(first["pair_id"]))
    bars = [b for b in shown["waterfall"] if b["column_name"] != "Final score"]
    assert len(bars) >= 3  # the prior and at least two comparisons
    assert sum(b["log2_bayes_factor"] for b in bars) == pytest.approx(shown["match_weight"], abs=1e-6)
    # The run's own score of the pair is the waterfall's total.
    assert shown["match_probability"] == pytest.approx(first["match_probability"], abs=1e-6)
    assert set(shown["effects"]) >= {"match", "non-match", "unsure"}
    if shown["left"]["entity_id"] != shown["right"]["entity_id"]:
        assert "become one" in shown["effects"]["match"]
    else:
        assert "Splits" in shown["effects"]["non-match"]


def test_label_is_recorded_before_it_is_stored(world):
    home, ctx, users = world
    officer = users["data_officer"]
    pair_id = ops_review.next_pair(ctx, officer)
    before = len(_events(ctx, "linkage.review_label"))
    stored = ops_review.label_pair(ctx, officer, ops_review.LabelPair(pair_id, "non-match"))
    events = _events(ctx, "linkage.review_label")
    assert len(events) == before + 1
    event = events[-1]
    assert event["pair_id"] == pair_id and event["label"] == "non-match"
    assert event["actor"]["id"] == officer.id and event["decision"]["allow"] is True
    assert stored["event_id"] == event["event_id"] and stored["by"] == officer.id
    assert lr.labels(home.root / "review")[pair_id]["label"] == "non-match"
    # The labelled pair has left the queue.
    assert ops_review.next_pair(ctx, officer) != pair_id


def test_a_crash_between_record_and_apply_is_finished_by_recovery(world, monkeypatch):
    home, ctx, users = world
    officer = users["data_officer"]
    pair_id = ops_review.next_pair(ctx, officer)

    def crash(*args, **kwargs):
        raise SystemExit("killed after the ledger write")

    with monkeypatch.context() as m:
        m.setattr(lr, "add_label", crash)
        with pytest.raises(SystemExit):
            ops_review.label_pair(ctx, officer, ops_review.LabelPair(pair_id, "match"))
    event = _events(ctx, "linkage.review_label")[-1]
    assert event["pair_id"] == pair_id  # recorded ...
    assert pair_id not in lr.labels(home.root / "review")  # ... but not applied
    done = recover(ctx)
    assert done.reapplied.get("linkage.review_label") == 1
    label = lr.labels(home.root / "review")[pair_id]
    assert label["label"] == "match" and label["event_id"] == event["event_id"]
    assert recover(ctx).reapplied.get("linkage.review_label") is None  # idempotent


@pytest.mark.parametrize("role", ["adviser", "governance", "provider"])
def test_other_roles_are_refused_and_the_refusal_recorded(world, role):
    home, ctx, users = world
    officer_pair = ops_review.next_pair(ctx, users["data_officer"])
    labels_before = lr.labels(home.root / "review")
    n = len(_events(ctx))
    for call in (lambda c: ops_review.review_queue(ctx, c),
                 lambda c: ops_review.show_pair(ctx, c, ops_review.PairRequest(officer_pair)),
                 lambda c: ops_review.label_pair(ctx, c, ops_review.LabelPair(officer_pair, "match"))):
        with pytest.raises(Refused):
            call(users[role])
    new = _events(ctx)[n:]
    assert len(new) == 3  # one entry per request
    assert all(e["type"] == "policy.decision" and e["allow"] is False for e in new)
    assert all(e["action"] == "linkage.review" for e in new)
    assert not any(e.get("type") == "linkage.review_label" for e in new)
    assert lr.labels(home.root / "review") == labels_before


def test_bad_label_and_unknown_pair(world):
    home, ctx, users = world
    officer = users["data_officer"]
    pair_id = ops_review.next_pair(ctx, officer)
    n = len(_events(ctx))
    with pytest.raises(InvalidInput):
        ops_review.label_pair(ctx, officer, ops_review.LabelPair(pair_id, "maybe"))
    with pytest.raises(NotFound):
        ops_review.label_pair(ctx, officer, ops_review.LabelPair("P" + "0" * 16, "match"))
    with pytest.raises(InvalidInput):
        ops_review.show_pair(ctx, officer, ops_review.PairRequest("../../etc"))
    new = _events(ctx)[n:]
    assert [e["type"] for e in new].count("linkage.review_label") == 0
    assert pair_id not in lr.labels(home.root / "review")


def test_why_in_entity_and_accuracy(world):
    home, ctx, users = world
    officer = users["data_officer"]
    first = ops_review.review_queue(ctx, officer)["items"][0]
    why = ops_review.why_in_entity(ctx, officer, ops_review.WhyRequest(*first["left"]))
    assert first["left"] in why["records"]
    got = ops_review.sample(ctx, officer, ops_review.SampleRequest("links"))
    ops_review.label_pair(ctx, officer, ops_review.LabelPair(got["pair_id"], "match", got["purpose"]))
    acc = ops_review.accuracy(ctx, officer)
    assert acc["precision"]["labels"] == 1 and acc["precision"]["estimate"] == 1.0
    assert acc["precision"]["low"] < 1.0


def test_cli_label_goes_through_the_operation(world):
    from click.testing import CliRunner

    from joinedup.cli import cli

    home, ctx, users = world
    pair_id = ops_review.next_pair(ctx, users["data_officer"])
    result = CliRunner().invoke(cli, ["review", "label", pair_id, "--as", "unsure", "--by",
                                      "officer-7", "--home", str(home.root)])
    assert result.exit_code == 0, result.output
    label = lr.labels(home.root / "review")[pair_id]
    assert label["label"] == "unsure" and label["by"] == "officer-7"
    event = next(e for e in ctx.ledger.events() if e.get("event_id") == label["event_id"])
    assert event["type"] == "linkage.review_label" and event["decision"]["allow"] is True
    bad = CliRunner().invoke(cli, ["review", "label", "P" + "f" * 16, "--as", "match",
                                   "--home", str(home.root)])
    assert bad.exit_code != 0 and "no pair" in bad.output


def _run_records(home) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq

    from linkage.runs import current_run_name

    run = home.runs_dir / current_run_name(home.runs_dir)
    table = pq.read_table(run / "records.parquet", columns=["source", "ref"]).to_pylist()
    return [(r["source"], r["ref"]) for r in table]


def _unlinked_pair(home, ctx, officer) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two records of different entities that the run never compared (no blocking rule
    brings them together)."""
    import random

    records = _run_records(home)
    rng = random.Random(5)
    for _ in range(200):
        left, right = rng.sample(records, 2)
        shown = ops_review.show_pair(ctx, officer, ops_review.RecordsPairRequest(left, right))
        if not shown["blocked_by"] and shown["left"]["entity_id"] != shown["right"]["entity_id"]:
            return left, right
    raise AssertionError("no uncompared pair among 200 random ones")


def test_any_two_records_explained_with_the_rules_that_compared_them(world):
    """"Why did these two (not) link?": any two records of the run, linked or not, get
    their waterfall and the blocking rules that brought them together."""
    home, ctx, users = world
    officer = users["data_officer"]
    linked = ops_review.review_queue(ctx, officer)["items"][0]
    by_id = ops_review.show_pair(ctx, officer, ops_review.PairRequest(linked["pair_id"]))
    by_records = ops_review.show_pair(ctx, officer, ops_review.RecordsPairRequest(
        tuple(linked["left"]), tuple(linked["right"])))
    # The same pair either way; a pair the run scored was brought together by some rule.
    assert by_records["pair_id"] == linked["pair_id"]
    assert by_records["match_weight"] == pytest.approx(by_id["match_weight"])
    assert by_records["run_match_probability"] == pytest.approx(linked["match_probability"])
    assert by_records["blocked_by"] and by_records["blocked_by"] == by_id["blocked_by"]

    left, right = _unlinked_pair(home, ctx, officer)
    shown = ops_review.show_pair(ctx, officer, ops_review.RecordsPairRequest(left, right))
    assert shown["run_match_probability"] is None and shown["blocked_by"] == []
    bars = [b for b in shown["waterfall"] if b["column_name"] != "Final score"]
    assert sum(b["log2_bayes_factor"] for b in bars) == pytest.approx(shown["match_weight"], abs=1e-6)

    n = len(_events(ctx))
    with pytest.raises(NotFound):
        ops_review.show_pair(ctx, officer, ops_review.RecordsPairRequest(left, ("dwp", "0" * 24)))
    with pytest.raises(InvalidInput):
        ops_review.show_pair(ctx, officer, ops_review.RecordsPairRequest(left, ("dwp",)))
    with pytest.raises(Refused):
        ops_review.show_pair(ctx, users["adviser"], ops_review.RecordsPairRequest(left, right))
    assert len(_events(ctx)) == n + 3  # each request recorded, the refusal as a refusal


def test_every_scored_pair_has_a_rule_that_compared_it(world):
    """blocking_rules_of_pair against the run itself: each pair links.parquet holds was
    blocked by at least one of the run's rules, and a pair sharing a match key names it."""
    import pyarrow.parquet as pq

    from linkage.runs import current_run_name

    home, ctx, users = world
    run = home.runs_dir / current_run_name(home.runs_dir)
    links = pq.read_table(run / "links.parquet").to_pylist()[:40]
    records = {(r["source"], r["ref"]): r for r in pq.read_table(run / "records.parquet").to_pylist()}
    for link in links:
        left, right = (link["source_l"], link["ref_l"]), (link["source_r"], link["ref_r"])
        rules = lr.blocking_rules_of_pair(run, left, right)
        assert rules, f"{left} {right} was scored but no rule brings it together"
        for rule in rules:
            column = rule.split(" = ")[0].removeprefix("l.")
            if column.startswith("mk_"):
                assert records[left][column] is not None and records[left][column] == records[right][column]


def test_a_missed_pair_labelled_by_its_records_and_recovered_after_a_crash(world, monkeypatch):
    home, ctx, users = world
    officer = users["data_officer"]
    left, right = _unlinked_pair(home, ctx, officer)
    stored = ops_review.label_pair(ctx, officer, ops_review.LabelPair("", "unsure", left=left, right=right))
    event = _events(ctx, "linkage.review_label")[-1]
    assert (event["left_source"], event["left_ref"], event["right_source"], event["right_ref"]) == (*left, *right)
    assert event["pair_id"] == stored["pair_id"]
    assert lr.labels(home.root / "review")[stored["pair_id"]]["label"] == "unsure"
    with pytest.raises(InvalidInput):  # an id that is not these records' pair
        ops_review.label_pair(ctx, officer, ops_review.LabelPair("P" + "0" * 16, "match", left=left, right=right))

    def crash(*args, **kwargs):
        raise SystemExit("killed after the ledger write")

    with monkeypatch.context() as m:
        m.setattr(lr, "add_label", crash)
        with pytest.raises(SystemExit):
            ops_review.label_pair(ctx, officer, ops_review.LabelPair("", "match", left=left, right=right))
    assert lr.labels(home.root / "review")[stored["pair_id"]]["label"] == "unsure"  # not applied
    assert recover(ctx).reapplied.get("linkage.review_label") == 1
    assert lr.labels(home.root / "review")[stored["pair_id"]]["label"] == "match"


def test_cli_explains_and_labels_two_records(world):
    from click.testing import CliRunner

    from joinedup.cli import cli

    home, ctx, users = world
    left, right = _unlinked_pair(home, ctx, users["data_officer"])
    args = ["/".join(left), "/".join(right), "--home", str(home.root)]
    shown = CliRunner().invoke(cli, ["review", "explain", *args])
    assert shown.exit_code == 0, shown.output
    assert "never compared" in shown.output and "match probability" in shown.output
    labelled = CliRunner().invoke(cli, ["review", "label", *args, "--as", "non-match"])
    assert labelled.exit_code == 0, labelled.output
    assert lr.labels(home.root / "review")[lr.pair_id(left, right)]["label"] == "non-match"
    bad = CliRunner().invoke(cli, ["review", "explain", "/".join(left), "dwp-no-slash", "--home", str(home.root)])
    assert bad.exit_code == 2 and "SOURCE/REF" in bad.output  # a usage error
    unknown = CliRunner().invoke(cli, ["review", "explain", "/".join(left), f"{right[0]}/{'f' * 24}",
                                       "--home", str(home.root)])
    assert unknown.exit_code == 1 and "no record" in unknown.output
    twice = CliRunner().invoke(cli, ["review", "label", "/".join(left), "/".join(left), "--as", "match",
                                     "--home", str(home.root)])
    assert twice.exit_code == 1 and "two different records" in twice.output
