"""Summary and area-count requests end to end: real home, real connectors' extracts, real
consent store, real Rego policies, real audit ledger, real CLI. The link run and the
resolution scorer are stand-ins (tests/collation/standins.py) for the linkage unit's."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from connectors import content
from connectors.synth_people import REF_DATE
from joinedup.cli import cli
from joinedup.errors import Refused, Withheld
from joinedup.home import init_home
from joinedup.service_context import ServiceContext
from linkage.collation import assess_barriers, load_taxonomy
from linkage.collation.resolve import MATCHED, NEEDS_REVIEW, NO_MATCH
from tests.collation import actions as collate
from tests.collation.standins import TokenScorer, build_linked_home

AS_OF = date.fromisoformat(str(REF_DATE))
ADVISER = {"id": "adv-1", "role": "adviser", "organisation": "csc-margate"}
GOVERNANCE = {"id": "gov-1", "role": "governance", "organisation": "governance-board"}
ALL_CATEGORIES = ["dwp", "council", "nhs", "housing", "MH", "PH", "DIS", "SUB", "HOU", "FIN",
                  "SKL", "CAR", "CLV", "FAM", "WRK"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = init_home(tmp_path_factory.mktemp("collate") / "home", project_id="collate-test")
    built = build_linked_home(home, people=600, seed=5)
    return home, built


@pytest.fixture()
def ctx(world, monkeypatch):
    home, _ = world
    scorer = TokenScorer(home)
    monkeypatch.setattr("linkage.collation.resolve.default_scorer", lambda: scorer)
    context = ServiceContext(home)
    yield context
    context.close()


def identifiers_of(built, person_id: str) -> dict:
    """The raw identifiers the adviser types in, taken from the person's DWP record."""
    src = built["src"]
    truth = pd.read_csv(src / "ground_truth.csv", dtype=str).fillna("")
    local = truth[(truth.person_id == person_id) & (truth.source == "dwp")].local_id.iloc[0]
    row = pd.read_csv(src / "dwp_claimants.csv", dtype=str).set_index("claimant_id").loc[local]
    d, m, y = row.date_of_birth.split("/")
    return {"given_name": row.forename, "family_name": row.surname.title(),
            "date_of_birth": f"{y}-{m}-{d}", "nino": row.nino, "postcode": row.postcode}


def pick_people(built, n: int = 3) -> list[str]:
    """Clean DWP records of people with barriers who are known to 2+ agencies."""
    src = built["src"]
    truth = pd.read_csv(src / "ground_truth.csv", dtype=str).fillna("")
    people = pd.read_csv(src / "people_truth.csv", dtype={"person_id": str}).set_index("person_id")
    dirty = set(truth[truth.errors != ""].person_id)
    counts = truth.groupby("person_id").source.nunique()
    dwp = set(truth[truth.source == "dwp"].person_id)
    chosen = [p for p in people.index if p in dwp and p not in dirty and counts.get(p, 0) >= 2
              and people.loc[p, "barrier_count"] >= 2]
    return chosen[:n]


def grant(ctx, identifiers, categories=ALL_CATEGORIES):
    key = ctx.person_key(identifiers)
    return ctx.consent.grant(key, ["employment_support"], categories, recorded_by="adv-1",
                             collection_method="in_person_signed")


def ledger_events(ctx) -> list[dict]:
    return list(ctx.ledger.events())


def test_consented_summary_is_that_persons_only(world, ctx):
    home, built = world
    taxonomy = load_taxonomy(home.config_file("taxonomy.toml"))
    entities = built["entities"]
    for person_id in pick_people(built, 3):
        ids = identifiers_of(built, person_id)
        receipt = grant(ctx, ids)
        before = content.decrypted_row_count()
        result = collate.request_summary(ctx, ADVISER, ids, as_of=AS_OF)
        decrypted = content.decrypted_row_count() - before
        mine = entities[entities.person_id == person_id]
        assert result["outcome"] == MATCHED
        # Nothing pooled: exactly this person's rows were decrypted, no other.
        assert decrypted == result["rows_decrypted"] == len(mine)
        # Barriers = the taxonomy over this person's true records (found independently).
        summary = result["summary"]
        expected = _expected(home, built, mine, taxonomy)
        assert {b["code"]: b["severity"] for b in summary["barriers"]} == expected
        assert summary["consent_receipt_id"] == receipt.receipt_id
        assert summary["policy_decision_id"] == result["decision_id"]
        assert summary["taxonomy_version"] == taxonomy.version
        assert summary["multiple_disadvantage"] == (len(expected) >= 3)
        # The ledger: the decision and the disclosure, pseudonymous ids only.
        events = ledger_events(ctx)
        disclosed = [e for e in events if e["type"] == "summary.disclosed"
                     and e.get("summary_id") == summary["summary_id"]]
        assert len(disclosed) == 1 and disclosed[0]["rows_decrypted"] == len(mine)
        assert disclosed[0]["entity_id"] == "E" + person_id[1:]
        blob = json.dumps(events)
        for value in ids.values():
            assert value not in blob


def _expected(home, built, mine, taxonomy) -> dict:
    key, docs = home.keyring().content_key(), []
    for kind, manifest in built["manifests"].items():
        refs = set(mine[mine.kind == kind].ref)
        table = pq.read_table(built["staged"] / kind / "content.parquet").to_pylist()
        docs += [d for d in content.decrypt_rows(key, manifest["extract_id"], table) if d["ref"] in refs]
    return {c: f.severity for c, f in assess_barriers(docs, taxonomy, AS_OF).items()}


def test_refused_without_consent_or_permission(world, ctx):
    _, built = world
    person = pick_people(built, 5)[3]
    ids = identifiers_of(built, person)
    before = content.decrypted_row_count()
    with pytest.raises(Refused) as no_consent:
        collate.request_summary(ctx, ADVISER, ids, as_of=AS_OF)
    assert any("consent" in r.lower() for r in no_consent.value.reasons)
    grant(ctx, ids)
    with pytest.raises(Withheld) as governance:  # a role that may not know: no reasons
        collate.request_summary(ctx, GOVERNANCE, ids, as_of=AS_OF)
    assert content.decrypted_row_count() == before
    decisions = [e for e in ledger_events(ctx) if e["type"] == "policy.decision"]
    refused_ids = {no_consent.value.decision_id, governance.value.decision_id}
    assert refused_ids <= {e.get("decision_id") for e in decisions}


def test_withdrawal_stops_the_next_summary(world, ctx):
    _, built = world
    person = pick_people(built, 6)[4]
    ids = identifiers_of(built, person)
    receipt = grant(ctx, ids)
    assert collate.request_summary(ctx, ADVISER, ids, as_of=AS_OF)["outcome"] == MATCHED
    ctx.consent.withdraw(receipt.receipt_id, by="adv-1")
    before = content.decrypted_row_count()
    with pytest.raises(Refused) as after:
        collate.request_summary(ctx, ADVISER, ids, as_of=AS_OF)
    assert any("withdrawn" in r.lower() for r in after.value.reasons)
    assert content.decrypted_row_count() == before


def test_consent_categories_minimise_the_summary(world, ctx):
    _, built = world
    person = pick_people(built, 8)[5]
    ids = identifiers_of(built, person)
    grant(ctx, ids, categories=["dwp", "council", "nhs", "housing", "FIN", "HOU"])
    result = collate.request_summary(ctx, ADVISER, ids, as_of=AS_OF)
    summary = result["summary"]
    assert set(summary["categories_in_scope"]) <= {"FIN", "HOU"}
    assert {b["code"] for b in summary["barriers"]} <= {"FIN", "HOU"}


def test_ambiguous_identity_gives_no_summary(world, ctx):
    _, built = world
    a, b = pick_people(built, 8)[6:8]
    ids_a, ids_b = identifiers_of(built, a), identifiers_of(built, b)
    mixed = {**ids_a, "nino": ids_b["nino"]}  # person A's name and birth date, B's NINO
    grant(ctx, mixed)
    before = content.decrypted_row_count()
    result = collate.request_summary(ctx, ADVISER, mixed, as_of=AS_OF)
    assert result["outcome"] == NEEDS_REVIEW and result["summary"] is None
    assert content.decrypted_row_count() == before  # nothing of either person decrypted
    stranger = {"given_name": "Zebedee", "family_name": "Quorncroft", "date_of_birth": "1950-02-03"}
    grant(ctx, stranger)
    assert collate.request_summary(ctx, ADVISER, stranger, as_of=AS_OF)["outcome"] == NO_MATCH
    assert not [e for e in ledger_events(ctx) if e["type"] == "summary.disclosed"
                and e["person_key"] == ctx.person_key(mixed)]


def test_area_counts_governance_only_and_suppressed(world, ctx, tmp_path):
    with pytest.raises(Refused):
        collate.request_area_counts(ctx, ADVISER, level="sector")
    result = collate.request_area_counts(ctx, GOVERNANCE, level="ward", out_dir=tmp_path, as_of=AS_OF)
    values = [v for row in result["rows"] for k, v in row.items() if k != "area" and v is not None]
    assert values and not any(1 <= v <= 7 for v in values)
    assert all(v % 5 == 0 for v in values)
    assert (tmp_path / "hotspots-ward.png").exists()
    wards = {row["area"] for row in result["rows"]}
    assert "Viking" in wards or "Margate Central" in wards or len(wards) > 2
    events = [e for e in ledger_events(ctx) if e["type"] == "area_counts.disclosed"]
    assert events and events[-1]["decision_id"] == result["decision_id"]


def test_cli_summary_and_hotspots(world, ctx, tmp_path):
    home, built = world
    person = pick_people(built, 10)[8]
    ids = identifiers_of(built, person)
    grant(ctx, ids)
    ctx.close()  # the CLI opens the store itself
    ident_file = tmp_path / "person.json"
    ident_file.write_text(json.dumps(ids))
    runner = CliRunner()
    ok = runner.invoke(cli, ["summary", "--home", str(home.root), "--identifiers", str(ident_file),
                             "--purpose", "employment_support", "--as", "adviser:csc-margate:adv-9",
                             "--json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.output)
    assert doc["barriers"] and doc["taxonomy_version"]
    text = runner.invoke(cli, ["summary", "--home", str(home.root), "--identifiers", str(ident_file),
                               "--purpose", "employment_support", "--as", "adviser:csc-margate:adv-9",
                               "--barriers", "MH,SUB,CLV,FAM"])
    assert text.exit_code == 0, text.output
    assert "No record" in text.output and "NOT that there is no need" in text.output
    assert not any(code in text.output for code in ("FIN ", "WRK ", "SKL "))
    refused = runner.invoke(cli, ["summary", "--home", str(home.root), "--identifiers", str(ident_file),
                                  "--purpose", "employment_support", "--as", "provider:provider-a:p1"])
    assert refused.exit_code == 3
    hot = runner.invoke(cli, ["hotspots", "--home", str(home.root), "--level", "sector",
                              "--as", "governance:governance-board:g1", "--out", str(tmp_path / "hs")])
    assert hot.exit_code == 0, hot.output
    rows = list(csv.reader(io.StringIO((tmp_path / "hs" / "hotspots-sector.csv").read_text())))
    cells = [c for r in rows[1:] for c in r[1:]]
    assert "[c]" in cells
    assert not any(c.isdigit() and 1 <= int(c) <= 7 for c in cells)


def test_provider_sees_only_the_referred_barriers_of_people_referred_to_it(world, ctx):
    from joinedup.users import User

    _, built = world
    people = pick_people(built, 12)
    ids = identifiers_of(built, people[9])
    grant(ctx, ids)
    adviser = User(**ADVISER)
    full = collate.request_summary(ctx, ADVISER, ids, as_of=AS_OF)["summary"]
    found = [b["code"] for b in full["barriers"]]
    asked = found[:1] + ["CLV"]
    referral = collate.create_referral(ctx, adviser, ids, "provider-a", asked, "employment_support")
    assert referral.entity_id == "E" + people[9][1:]
    provider = {"id": "p-1", "role": "provider", "organisation": "provider-a"}
    result = collate.request_referral_summary(ctx, provider, referral, as_of=AS_OF)
    summary = result["summary"]
    assert set(summary["categories_in_scope"]) <= set(asked)
    assert [b["code"] for b in summary["barriers"]] == found[:1]
    events = [e for e in ledger_events(ctx) if e["type"] == "referral.read"]
    assert events[-1]["referral_id"] == referral.referral_id
    other = {"id": "p-2", "role": "provider", "organisation": "provider-b"}
    with pytest.raises(Withheld):
        collate.request_referral_summary(ctx, other, _retarget(referral, "provider-a"), as_of=AS_OF)


def _retarget(referral, provider):
    """The same referral as a provider-b user would present it: still addressed to provider-a."""
    from dataclasses import replace

    return replace(referral, provider=provider)


def test_payment_adjustment_bounded_and_audited(world, ctx):
    _, built = world
    person = pick_people(built, 14)[12]
    ids = identifiers_of(built, person)
    grant(ctx, ids)
    before = len([e for e in ledger_events(ctx) if e["type"] == "summary.disclosed"])
    with pytest.raises(collate.CollationInputError, match="exceeds the approved bound"):
        collate.request_summary(ctx, ADVISER, ids, as_of=AS_OF, adjustment_gbp=10_000,
                                adjustment_reason="very complex case")
    assert len([e for e in ledger_events(ctx) if e["type"] == "summary.disclosed"]) == before
    result = collate.request_summary(ctx, ADVISER, ids, as_of=AS_OF, adjustment_gbp=-10,
                                     adjustment_reason="travel already funded")
    payment = result["summary"]["outcome_payment"]
    assert payment["total_gbp"] == payment["tariff_gbp"] - 10
    event = [e for e in ledger_events(ctx) if e["type"] == "summary.disclosed"][-1]
    assert event["payment_adjustment_gbp"] == -10
    assert "travel" not in json.dumps(event)  # free text stays out of the ledger


def test_cli_as_a_stored_user_and_bad_input(world, ctx, tmp_path):
    from joinedup.users import open_user_store

    home, built = world
    user, _token = open_user_store(home).add("governance", "governance-board", "Board member")
    ctx.close()
    runner = CliRunner()
    bad = tmp_path / "bad.json"
    bad.write_text('{"given_name": "A"')
    out = runner.invoke(cli, ["summary", "--home", str(home.root), "--identifiers", str(bad),
                              "--as", user.id])
    assert out.exit_code == 1 and "bad.json: not JSON" in out.output
    person = tmp_path / "p.json"
    person.write_text(json.dumps(identifiers_of(built, pick_people(built, 1)[0])))
    refused = runner.invoke(cli, ["summary", "--home", str(home.root), "--identifiers", str(person),
                                  "--as", user.id])
    # A governance member may not know about a person: refused, without the reasons.
    assert refused.exit_code == 3 and "Not allowed" in refused.output
    nobody = runner.invoke(cli, ["hotspots", "--home", str(home.root), "--as", "nobody",
                                 "--out", str(tmp_path / "x")])
    assert nobody.exit_code == 1 and "no such user" in nobody.output
    hot = runner.invoke(cli, ["hotspots", "--home", str(home.root), "--as", user.id, "--level", "lsoa",
                              "--out", str(tmp_path / "lsoa")])
    assert hot.exit_code == 0, hot.output
    assert "(synthetic)" in (tmp_path / "lsoa" / "hotspots-lsoa.csv").read_text()


def test_cli_provider_reads_its_referral_only(world, ctx, tmp_path):
    from joinedup.users import User

    home, built = world
    person = pick_people(built, 16)[14]
    ids = identifiers_of(built, person)
    grant(ctx, ids)
    full = collate.request_summary(ctx, ADVISER, ids, as_of=AS_OF)["summary"]
    first = full["barriers"][0]["code"]
    collate.create_referral(ctx, User(**ADVISER), ids, "provider-b", [first], "employment_support")
    ctx.close()
    ident_file = tmp_path / "p.json"
    ident_file.write_text(json.dumps(ids))
    runner = CliRunner()
    out = runner.invoke(cli, ["summary", "--home", str(home.root), "--identifiers", str(ident_file),
                              "--as", "provider:provider-b:pb1", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["categories_in_scope"] == [first]
    assert [b["code"] for b in doc["barriers"]] == [first]
    other = runner.invoke(cli, ["summary", "--home", str(home.root), "--identifiers", str(ident_file),
                                "--as", "provider:provider-a:pa1"])
    # "Not referred to you" and "no such person" are the same answer to a provider.
    assert other.exit_code == 3 and "Not allowed" in other.output


def test_area_counts_are_kept_per_run_and_a_new_run_changes_them_at_once(world, ctx, monkeypatch):
    """The counts are built once per run (and taxonomy, date, key) and then served from
    memory, each request still decided and recorded; a new run, or anything else they
    depend on, is counted again at once. A consent withdrawal does not change them: they
    count every linked person (the answer equals a fresh build's either way)."""
    from joinedup import collate as service_collate

    home, built = world
    # The run index itself is re-checked at most every REVALIDATE_SECONDS (1 s); here at
    # every request, so that what is tested is the counts' own cache.
    monkeypatch.setattr(service_collate, "REVALIDATE_SECONDS", 0.0)

    def fresh(**options) -> dict:
        service_collate._area_people.clear()
        service_collate._area_tables.clear()
        return collate.request_area_counts(ctx, GOVERNANCE, as_of=AS_OF, **options)

    first = fresh(level="sector")
    entries = len(ctx.ledger)
    before = content.decrypted_row_count()
    again = collate.request_area_counts(ctx, GOVERNANCE, level="sector", as_of=AS_OF)
    assert content.decrypted_row_count() == before  # nothing decrypted again
    assert again["rows"] == first["rows"] and again["csv"] == first["csv"]
    assert again["decision_id"] != first["decision_id"] and len(ctx.ledger) == entries + 1
    district = collate.request_area_counts(ctx, GOVERNANCE, level="district", as_of=AS_OF)
    assert district["rows"] == fresh(level="district")["rows"] != first["rows"]

    person = pick_people(built, 12)[11]
    record = grant(ctx, identifiers_of(built, person))
    ctx.consent.withdraw(record.receipt_id, by="adv-1")
    after = collate.request_area_counts(ctx, GOVERNANCE, level="sector", as_of=AS_OF)
    assert after["rows"] == fresh(level="sector")["rows"]

    # A new run that links only part of the records: new counts on the very next request.
    run_two = home.runs_dir / "run-half"
    run_two.mkdir()
    table = pq.read_table(home.runs_dir / "run-truth" / "entities.parquet")
    pq.write_table(table.slice(0, table.num_rows // 2), run_two / "entities.parquet")
    (home.runs_dir / "CURRENT").write_text("run-half\n")
    try:
        changed = collate.request_area_counts(ctx, GOVERNANCE, level="sector", as_of=AS_OF)
        assert changed["rows"] != first["rows"]
        assert changed["rows"] == fresh(level="sector")["rows"]
    finally:
        (home.runs_dir / "CURRENT").write_text("run-truth\n")
    back = collate.request_area_counts(ctx, GOVERNANCE, level="sector", as_of=AS_OF)
    assert back["rows"] == first["rows"]
