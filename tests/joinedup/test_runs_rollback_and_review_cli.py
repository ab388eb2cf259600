"""`joinedup runs rollback` and `joinedup review next | explain | stats` are actions of
joinedup.operations, through the real CLI: the policy decides (default deny: a role or a
deployment's policy without the grant is refused), the ledger records (a rollback's event
names both runs and is written before runs/CURRENT moves; a crash in between is finished
when the service opens), then the effect. The API's rollback is the same operation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from joinedup.cli import cli
from joinedup.home import load_home
from joinedup.operations import open_service
from linkage.runs import history

pytestmark = pytest.mark.slow

OFFICER = "data_officer:linkage-unit:officer-1"


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _ok(*args: str) -> str:
    res = _run(*args)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def home(review_demo_home, tmp_path_factory):
    """A private copy of the demo home with a second run (run2, current) after demo-run."""
    root = tmp_path_factory.mktemp("rollback") / "home"
    shutil.copytree(review_demo_home[0], root)
    _ok("link", "--home", str(root), "--out", "run2")
    h = load_home(root)
    assert _current(h) == "run2"
    return h


def _current(h) -> str:
    return (h.runs_dir / "CURRENT").read_text().strip()


def _ledger(h) -> list[dict]:
    with h.open_ledger() as ledger:
        return list(ledger.events())


def _new(h, before: int) -> list[dict]:
    return _ledger(h)[before:]


def _without_grant(h, action: str) -> Path:
    """The deployment's own policy data (HOME/config/policy), without `action` for the data
    officer: the policy then has no rule that allows it."""
    from policies import bundle

    target = h.config_dir / "policy"
    shutil.copytree(Path(bundle.__file__).parent / "data", target)
    roles = json.loads((target / "roles.json").read_text())
    roles["roles"]["data_officer"]["actions"].remove(action)
    (target / "roles.json").write_text(json.dumps(roles))
    return target


def test_rollback_is_decided_then_recorded_then_applied(home):
    before = len(_ledger(home))
    out = _ok("runs", "rollback", "--home", str(home.root), "--as", OFFICER)
    assert "current run is now demo-run (was run2)" in out
    assert _current(home) == "demo-run"
    (event,) = _new(home, before)  # one entry: the effect event, with its decision inside
    assert event["type"] == "linkage.rollback"
    assert event["run"] == "demo-run" and event["previous_run"] == "run2"
    assert event["run_id"] == json.loads(
        (home.runs_dir / "demo-run" / "summary.json").read_text())["run_id"]
    assert event["actor"]["id"] == "officer-1"
    assert event["decision"]["allow"] is True and event["decision"]["action"] == "linkage.rollback"
    assert history(home.runs_dir)[-1]["action"] == "rollback"
    # and forward again, to a named run
    _ok("runs", "rollback", "--home", str(home.root), "--to", "run2")
    assert _current(home) == "run2"
    assert _ledger(home)[-1]["run"] == "run2"


def test_rollback_errors_are_recorded_and_change_nothing(home):
    before = len(_ledger(home))
    for to, says in (("nope", "no finished link run"), ("run2", "already the current run"),
                     ("../demo-run", "not a run name")):
        res = _run("runs", "rollback", "--home", str(home.root), "--to", to)
        assert res.exit_code != 0 and says in res.output, (to, res.output)
    assert _current(home) == "run2"
    new = _new(home, before)
    assert [e["type"] for e in new] == ["policy.decision", "policy.decision", "request.invalid"]
    assert [e.get("outcome") for e in new[:2]] == ["not_found", "conflict"]
    assert not any(e["type"] == "linkage.rollback" for e in new)


def test_other_roles_are_refused_and_told_nothing_about_the_runs(home):
    before = len(_ledger(home))
    answers = []
    for to in ("demo-run", "no-such-run"):
        res = _run("runs", "rollback", "--home", str(home.root), "--to", to,
                   "--as", "governance:governance-board:g1")
        assert res.exit_code != 0
        answers.append(res.output)
    assert answers[0] == answers[1]  # a run that exists and one that does not: the same answer
    assert "refused" in answers[0] and "demo-run" not in answers[0]
    assert _current(home) == "run2"
    new = _new(home, before)
    assert len(new) == 2
    assert all(e["type"] == "policy.decision" and e["allow"] is False
               and e["action"] == "linkage.rollback" for e in new)


def test_rollback_without_a_grant_is_refused_by_default(home):
    """No rule allows it, so the policy refuses: nothing is recorded as done, nothing moves."""
    policy = _without_grant(home, "linkage.rollback")
    try:
        before = len(_ledger(home))
        res = _run("runs", "rollback", "--home", str(home.root))
        assert res.exit_code != 0 and "refused" in res.output, res.output
        assert _current(home) == "run2"
        (entry,) = _new(home, before)
        assert entry["type"] == "policy.decision" and entry["allow"] is False
    finally:
        shutil.rmtree(policy)


def test_a_crash_after_the_event_is_finished_when_the_service_opens(home, monkeypatch):
    import linkage.runs

    def crash(*args, **kwargs):
        raise SystemExit("killed after the ledger write")

    before = len(_ledger(home))
    with monkeypatch.context() as m:
        m.setattr(linkage.runs, "set_current", crash)
        res = _run("runs", "rollback", "--home", str(home.root))
    assert res.exit_code != 0
    (event,) = _new(home, before)
    assert event["type"] == "linkage.rollback" and event["run"] == "demo-run"  # recorded ...
    assert _current(home) == "run2"  # ... not applied
    ctx = open_service(home)  # what the service does when it starts: finish recorded actions
    ctx.close()
    assert _current(home) == "demo-run"
    assert history(home.runs_dir)[-1]["action"] == "rollback"
    _ok("runs", "rollback", "--home", str(home.root), "--to", "run2")


def test_no_switch_when_the_event_cannot_be_recorded(home, monkeypatch):
    """The ledger write fails: the run is not switched (never an effect without its event)."""
    from audit.ledger import Ledger

    def full_disk(self, event):
        raise OSError(28, "No space left on device")

    before = len(_ledger(home))
    with monkeypatch.context() as m:
        m.setattr(Ledger, "append", full_disk)
        res = _run("runs", "rollback", "--home", str(home.root))
    assert res.exit_code != 0
    assert _current(home) == "run2"
    assert not any(e["type"] == "linkage.rollback" for e in _new(home, before))


def test_the_api_rolls_back_through_the_same_operation(home):
    from fastapi.testclient import TestClient

    from joinedup.api import create_app
    from joinedup.users import open_user_store

    store = open_user_store(home)
    officer = {"Authorization": f"Bearer {store.add('data_officer', 'linkage-unit')[1]}"}
    adviser = {"Authorization": f"Bearer {store.add('adviser', 'csc-margate')[1]}"}
    with TestClient(create_app(home.root)) as client:
        refused = client.post("/v1/linkage/runs/rollback", headers=adviser, json={})
        assert refused.status_code == 403
        assert _current(home) == "run2"
        done = client.post("/v1/linkage/runs/rollback", headers=officer, json={"to": "demo-run"})
        assert done.status_code == 200, done.text
        assert done.json()["run"] == "demo-run" and _current(home) == "demo-run"
        event = client.app.state.ctx.ledger.events(client.app.state.ctx.ledger.size - 1)
        assert next(event)["type"] == "linkage.rollback"
        bad = client.post("/v1/linkage/runs/rollback", headers=officer, json={"to": "../x"})
        assert bad.status_code == 422
    _ok("runs", "rollback", "--home", str(home.root), "--to", "run2")


def test_review_next_explain_and_stats_are_the_review_operations(home):
    before = len(_ledger(home))
    items = json.loads(_ok("review", "next", "--home", str(home.root), "--count", "2", "--json"))
    assert items
    pair = items[0]["pair_id"]
    explained = json.loads(_ok("review", "explain", "--home", str(home.root), pair, "--json"))
    assert explained["pair_id"] == pair and explained["waterfall"][0]["column_name"] == "Prior"
    assert explained["waterfall"] == items[0]["explanation"]["waterfall"]
    record = "/".join(items[0]["left"])
    why = json.loads(_ok("review", "explain", "--home", str(home.root), "--run", "demo-run", record))
    assert items[0]["left"] in why["records"]
    stats = json.loads(_ok("review", "stats", "--home", str(home.root)))
    assert stats["links"] > 0 and 0 < stats["cluster_threshold"] < 1  # no sampled labels yet
    new = _new(home, before)
    # one decided entry per operation: the queue, each pair shown, the pair, the record, stats
    assert len(new) == 1 + len(items) + 3
    assert all(e["type"] == "policy.decision" and e["action"] == "linkage.review"
               and e["allow"] is True and e["actor"]["id"] == "cli" for e in new)
    bad = _run("review", "explain", "--home", str(home.root), "--run", "nope", pair)
    assert bad.exit_code != 0 and "no finished link run named nope" in bad.output


def test_review_commands_without_the_grant_are_refused_and_show_nothing(home):
    items = json.loads(_ok("review", "next", "--home", str(home.root), "--json"))
    pair = items[0]["pair_id"]
    policy = _without_grant(home, "linkage.review")
    try:
        before = len(_ledger(home))
        for args in (("review", "next"), ("review", "explain", pair), ("review", "stats"),
                     ("review", "next", "--sample", "links")):
            res = _run(*args, "--home", str(home.root))
            assert res.exit_code != 0 and "refused" in res.output, (args, res.output)
            assert pair not in res.output and "Prior" not in res.output
        new = _new(home, before)
        assert len(new) == 4
        assert all(e["type"] == "policy.decision" and e["allow"] is False for e in new)
    finally:
        shutil.rmtree(policy)


def test_runs_list_and_show_are_decided_reads_shared_by_the_cli_and_the_api(home):
    from fastapi.testclient import TestClient

    from joinedup.api import create_app
    from joinedup.users import open_user_store

    before = len(_ledger(home))
    listed = json.loads(_ok("runs", "list", "--home", str(home.root), "--json"))
    assert [r["run"] for r in listed] == ["demo-run", "run2"]
    assert [r["current"] for r in listed] == [False, True]
    shown = json.loads(_ok("runs", "show", "--home", str(home.root), "demo-run", "--json"))
    assert shown["run"] == "demo-run" and shown["current"] is False
    assert shown["summary"]["entities"] == listed[0]["entities"]
    new = _new(home, before)
    assert [(e["type"], e["action"], e["allow"]) for e in new] == [
        ("policy.decision", "linkage.report.read", True)] * 2
    bad = _run("runs", "show", "--home", str(home.root), "nope")
    assert bad.exit_code != 0 and "no finished link run named nope" in bad.output

    store = open_user_store(home)
    officer = {"Authorization": f"Bearer {store.add('data_officer', 'linkage-unit')[1]}"}
    adviser = {"Authorization": f"Bearer {store.add('adviser', 'csc-margate')[1]}"}
    with TestClient(create_app(home.root)) as client:
        assert client.get("/v1/linkage/runs", headers=officer).json()["runs"] == listed
        assert client.get("/v1/linkage/runs/demo-run", headers=officer).json() == shown
        assert client.get("/v1/linkage/runs/nope", headers=officer).status_code == 404
        # another role: refused, the same answer for a run that exists and one that does not
        answers = [client.get(f"/v1/linkage/runs/{r}", headers=adviser) for r in ("demo-run", "nope")]
        assert [a.status_code for a in answers] == [403, 403]
        bodies = [{k: v for k, v in a.json().items() if k != "decision_id"} for a in answers]
        assert bodies[0] == bodies[1] and answers[0].json().get("decision_id")
        assert "demo-run" not in answers[0].text
        assert client.get("/v1/linkage/runs", headers=adviser).status_code == 403


def test_runs_list_without_the_grant_is_refused(home):
    policy = _without_grant(home, "linkage.report.read")
    try:
        for args in (("runs", "list"), ("runs", "show", "demo-run")):
            res = _run(*args, "--home", str(home.root))
            assert res.exit_code != 0 and "refused" in res.output, (args, res.output)
            assert "demo-run" not in res.output
    finally:
        shutil.rmtree(policy)
