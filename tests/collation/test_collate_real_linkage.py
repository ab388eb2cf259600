"""The same summary flow with the linkage unit's real link run and real scorer (no
stand-ins at all): synth -> extracts -> ingest -> link -> consent -> summary."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from connectors import content
from joinedup.home import init_home
from joinedup.service_context import ServiceContext
from linkage import active_extracts, link_extracts
from linkage.collation.resolve import MATCHED, NEEDS_REVIEW, NO_MATCH
from tests.collation import actions as collate
from tests.collation.standins import build_linked_home
from tests.collation.test_collate import ADVISER, AS_OF, grant, identifiers_of, pick_people

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    home = init_home(tmp_path_factory.mktemp("real") / "home", project_id="collate-real")
    built = build_linked_home(home, people=800, seed=9)
    link_extracts(active_extracts(home.store_path, home.extracts_dir), home.runs_dir / "run-1")
    (home.runs_dir / "CURRENT").write_text("run-1\n")
    entities = pq.read_table(home.runs_dir / "run-1" / "entities.parquet").to_pandas()
    ctx = ServiceContext(home)
    yield home, built, entities, ctx
    ctx.close()


def test_real_resolution_gives_that_persons_rows_only(real):
    home, built, entities, ctx = real
    truth = built["entities"][["source", "ref", "person_id"]]
    matched = 0
    for person in pick_people(built, 6):
        ids = identifiers_of(built, person)
        grant(ctx, ids)
        before = content.decrypted_row_count()
        result = collate.request_summary(ctx, ADVISER, ids, as_of=AS_OF)
        if result["outcome"] != MATCHED:
            assert result["summary"] is None and content.decrypted_row_count() == before
            continue
        matched += 1
        decrypted = content.decrypted_row_count() - before
        event = [e for e in ctx.ledger.events() if e["type"] == "summary.disclosed"][-1]
        rows = entities[entities.entity_id == event["entity_id"]]
        assert decrypted == len(rows) == result["rows_decrypted"]
        # Every decrypted row belongs to the person asked about (no other person pooled).
        owners = set(rows.merge(truth, on=["source", "ref"]).person_id)
        assert owners == {person}
    assert matched >= 5


def test_real_resolution_no_match_and_ambiguity(real):
    home, built, entities, ctx = real
    stranger = {"given_name": "Zebedee", "family_name": "Quorncroft", "date_of_birth": "1950-02-03",
                "postcode": "CT9 1AA"}
    grant(ctx, stranger)
    assert collate.request_summary(ctx, ADVISER, stranger, as_of=AS_OF)["outcome"] == NO_MATCH
    a, b = pick_people(built, 8)[6:8]
    ids_a, ids_b = identifiers_of(built, a), identifiers_of(built, b)
    mixed = {**ids_b, "nino": ids_a["nino"], "postcode": ids_a["postcode"]}
    grant(ctx, mixed)
    before = content.decrypted_row_count()
    result = collate.request_summary(ctx, ADVISER, mixed, as_of=AS_OF)
    assert result["outcome"] == NEEDS_REVIEW, result
    assert content.decrypted_row_count() == before


def test_needs_review_between_two_people_goes_to_the_review_queue(real, monkeypatch):
    """An adviser told "needs review" no longer has to pass it on by hand: the two linked
    people go to the data officers' queue as a request, recorded in the outcome's ledger
    event first, and recovery stores a request a crash left recorded only."""
    from joinedup.operations import review as review_ops
    from joinedup.operations.recovery import recover
    from joinedup.users import User
    from linkage import review as lr

    home, built, entities, ctx = real
    a, b = pick_people(built, 10)[8:10]
    ids_a, ids_b = identifiers_of(built, a), identifiers_of(built, b)
    mixed = {**ids_b, "nino": ids_a["nino"], "postcode": ids_a["postcode"]}
    grant(ctx, mixed)
    result = collate.request_summary(ctx, ADVISER, mixed, as_of=AS_OF)
    assert result["outcome"] == NEEDS_REVIEW
    # The NI number belongs to another linked person: queued, and the adviser is told only
    # what the reason says for every such case (some have no second person to queue).
    assert "NI or NHS" in result["reason"] and "review queue" not in result["reason"]
    event = [e for e in ctx.ledger.events() if e.get("review_request")][-1]
    request = event["review_request"]
    entity_of = {(r.source, r.ref): r.entity_id for r in entities.itertuples()}
    person_of = {(r.source, r.ref): r.person_id for r in built["entities"].itertuples()}
    left = (request["left_source"], request["left_ref"])
    right = (request["right_source"], request["right_ref"])
    assert entity_of[left] != entity_of[right]  # two linked people ...
    assert {person_of[left], person_of[right]} == {a, b}  # ... the two the identifiers mixed
    stored = [d for d in lr._read(home.root / "review" / "requests.jsonl") if d.get("event_id") == event["event_id"]]
    assert len(stored) == 1 and stored[0]["pair_id"] == request["pair_id"]

    officer = User(id="officer-1", role="data_officer", organisation="linkage-unit")
    items = review_ops.review_queue(ctx, officer, review_ops.QueueRequest(limit=500))["items"]
    queued = next(x for x in items if x["pair_id"] == request["pair_id"])
    assert all(x["match_probability"] is None for x in items[:items.index(queued)])  # requests come first
    assert "NI or NHS" in queued["reason"]
    shown = review_ops.show_pair(ctx, officer, review_ops.PairRequest(request["pair_id"]))
    assert shown["waterfall"]

    def crash(*args, **kwargs):
        raise SystemExit("killed after the ledger write")

    c, d = pick_people(built, 12)[10:12]
    ids_c, ids_d = identifiers_of(built, c), identifiers_of(built, d)
    other = {**ids_d, "nino": ids_c["nino"], "postcode": ids_c["postcode"]}
    grant(ctx, other)
    with monkeypatch.context() as m:
        m.setattr(lr, "add_request", crash)
        with pytest.raises(SystemExit):
            collate.request_summary(ctx, ADVISER, other, as_of=AS_OF)
    crashed = [e for e in ctx.ledger.events() if e.get("review_request")][-1]
    assert crashed["event_id"] != event["event_id"]
    assert recover(ctx).reapplied.get("review_request") == 1
    assert any(doc.get("event_id") == crashed["event_id"]
               for doc in lr._read(home.root / "review" / "requests.jsonl"))
    assert recover(ctx).reapplied.get("review_request") is None  # once only

    # A request that cannot be stored now (a full disk, say) still gives the adviser the
    # answer; the ledger holds it, and recovery stores it later.
    def full(*args, **kwargs):
        raise OSError("no space left on device")

    e, f = pick_people(built, 14)[12:14]
    ids_e, ids_f = identifiers_of(built, e), identifiers_of(built, f)
    third = {**ids_f, "nino": ids_e["nino"], "postcode": ids_e["postcode"]}
    grant(ctx, third)
    with monkeypatch.context() as m:
        m.setattr(lr, "add_request", full)
        assert collate.request_summary(ctx, ADVISER, third, as_of=AS_OF)["outcome"] == NEEDS_REVIEW
    assert recover(ctx).reapplied.get("review_request") == 1
