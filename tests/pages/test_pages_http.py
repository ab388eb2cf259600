"""The pages over HTTP without a browser: the session cookie (encrypted, tamper-evident,
Secure over TLS), CSRF, one ledger entry per page request (as the API), the versioned
configuration the pages use, and the same refusal for the page as for the API."""

from __future__ import annotations

import json
import re
import time

import pytest
from fastapi.testclient import TestClient

from joinedup.pages.web.interim_operations import (
    ConfigurationError,
    load_outcome_schedule,
    load_trigger_questions,
)
from joinedup.pages.web.session import Session, SessionCodec
from tests.pages.conftest import World, identifiers, matched_person


def _csrf(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)


def signed_in(world: World, role: str, base_url: str = "http://testserver") -> TestClient:
    client = TestClient(world.live.app, base_url=base_url, follow_redirects=True)
    page = client.get("/sign-in")
    page = client.post("/sign-in", data={"csrf_token": _csrf(page.text),
                                         "token": world.tokens[role], "next": ""})
    assert "/sign-in" not in str(page.url)
    return client


def test_session_cookie_is_encrypted_and_tamper_evident():
    codec = SessionCodec(b"k" * 32)
    session = Session(token="ju_secret_token", person={"given_name": "Ann"})
    cookie = codec.dump(session)
    assert "ju_secret_token" not in cookie and "Ann" not in cookie
    assert codec.load(cookie).person == {"given_name": "Ann"}
    flipped = cookie[:20] + ("A" if cookie[20] != "A" else "B") + cookie[21:]
    assert codec.load(flipped) is None
    assert SessionCodec(b"x" * 32).load(cookie) is None  # another deployment's key
    old = Session(token="t", expires=time.time() - 1)
    assert codec.load(codec.dump(old)) is None


def test_cookie_is_secure_over_tls_and_httponly_strict(world: World):
    for base, secure in (("https://testserver", True), ("http://testserver", False)):
        client = TestClient(world.live.app, base_url=base)
        response = client.get("/sign-in")
        header = response.headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=strict" in header
        assert ("secure" in [part.strip() for part in header.split(";")]) is secure, header


def test_a_forged_cookie_signs_nobody_in(world: World):
    client = TestClient(world.live.app, follow_redirects=False)
    client.cookies.set("joinedup_session", "AAAA" * 30)
    response = client.get("/governance/ledger")
    assert response.status_code == 303 and response.headers["location"].startswith("/sign-in")


def test_csrf_token_of_another_session_is_refused(world: World):
    one, other = signed_in(world, "adviser"), signed_in(world, "adviser")
    token_of_other = _csrf(other.get("/adviser/find").text)
    before = world.ctx.ledger.size
    response = one.post("/adviser/finish", data={"csrf_token": token_of_other})
    assert response.status_code == 403 and "This form has expired" in response.text
    assert world.ctx.ledger.size == before


def test_each_page_request_is_one_ledger_entry(world: World):
    _, person, _ = matched_person(world, start=38)
    client = signed_in(world, "adviser")
    page = client.get("/adviser/find")
    before = world.ctx.ledger.size
    page = client.post("/adviser/find", data={"csrf_token": _csrf(page.text),
                                              **identifiers(person)})
    assert "Barrier summary" in page.text
    assert world.ctx.ledger.size == before + 1
    (last,) = world.ctx.ledger.events(before)
    assert last["type"] == "summary.disclosed" and last["decision"]["allow"] is True
    for path in ("/adviser/person", "/adviser/caseload", "/adviser/consent/history"):
        before = world.ctx.ledger.size
        assert client.get(path).status_code == 200
        assert world.ctx.ledger.size == before + 1, path
    governance = signed_in(world, "governance")
    for path in ("/governance/accesses", "/governance/outcomes", "/governance/register"):
        before = world.ctx.ledger.size
        assert governance.get(path).status_code == 200
        assert world.ctx.ledger.size == before + 1, path


def test_page_and_api_refuse_the_same_way(world: World):
    """A provider asking for a person's summary: the API's 403 and the page's refusal are
    the same decision kind, each one recorded."""
    provider_page = signed_in(world, "provider")
    before = world.ctx.ledger.size
    page = provider_page.get("/adviser/person")
    assert page.status_code == 403 and "You cannot do this" in page.text
    api = TestClient(world.live.app).post(
        "/v1/summaries", headers={"Authorization": f"Bearer {world.tokens['provider']}"},
        json={"identifiers": identifiers(world.people[0])})
    assert api.status_code == 403
    events = list(world.ctx.ledger.events(before))
    refusals = [e for e in events if e.get("type") == "policy.decision" and e["allow"] is False
                and e["action"] == "summary.request"]
    assert len(refusals) == 2 and len(events) == 2


def test_static_assets_are_served_by_the_service(world: World):
    client = TestClient(world.live.app)
    css = client.get("/static/govuk-frontend.min.css")
    assert css.status_code == 200 and ".govuk-" in css.text[:5000]
    assert client.get("/assets/images/favicon.ico").status_code == 200
    page = signed_in(world, "governance").get("/governance/ledger").text
    assert "https://" not in page and "http://" not in page.replace("http://testserver", "")


def test_trigger_questions_and_outcomes_are_validated_on_load(tmp_path):
    bad = tmp_path / "q.toml"
    bad.write_text('schema_version = 1\nversion = "x"\n[[questions]]\nid = "a"\n'
                   'text = "?"\nbarrier = "NOPE"\n')
    with pytest.raises(ConfigurationError, match=r"questions\[1\]\.barrier"):
        load_trigger_questions(bad, {"MH"})
    shares = tmp_path / "o.toml"
    shares.write_text('schema_version = 1\nversion = "x"\n[milestones.a]\ntitle = "A"\n'
                      'share = 0.5\nweeks_after_job_start = 0\n')
    with pytest.raises(ConfigurationError, match="add up to 0.5"):
        load_outcome_schedule(shares)


def test_sign_in_with_an_oidc_id_token_when_configured(world: World, tmp_path):
    import json

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from joinedup.users import OidcConfig, OidcVerifier

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    settings = {"auth": {"oidc": {"issuer": "https://idp.example", "audience": "joinedup",
                                  "jwks": str(tmp_path / "jwks.json")}}}
    claims = {"iss": "https://idp.example", "aud": "joinedup", "sub": "board-member-1",
              "exp": int(time.time()) + 300, "joinedup_role": "governance",
              "joinedup_org": "governance-board"}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    auth = world.ctx.auth
    saved = auth.oidc
    auth.oidc = OidcVerifier(OidcConfig.from_settings(settings, tmp_path))
    try:
        client = TestClient(world.live.app, follow_redirects=True)
        page = client.get("/sign-in")
        assert "ID token" in page.text
        page = client.post("/sign-in", data={"csrf_token": _csrf(page.text), "token": token})
        assert page.url.path == "/governance/ledger" and "Audit ledger" in page.text
        expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, key, algorithm="RS256",
                             headers={"kid": "k1"})
        again = TestClient(world.live.app, follow_redirects=True)
        page = again.get("/sign-in")
        page = again.post("/sign-in", data={"csrf_token": _csrf(page.text), "token": expired})
        assert page.status_code == 400 and "There is a problem" in page.text
    finally:
        auth.oidc = saved


def test_governance_downloads_csv_and_json(world: World):
    import csv
    import io
    import json

    board = signed_in(world, "governance")
    for name in ("accesses", "denials", "outcomes", "area-counts"):
        as_csv = board.get(f"/governance/download/{name}.csv")
        assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
        assert "attachment" in as_csv.headers["content-disposition"]
        assert list(csv.reader(io.StringIO(as_csv.text)))[0], name
        as_json = board.get(f"/governance/download/{name}.json")
        assert as_json.status_code == 200 and isinstance(json.loads(as_json.text), dict), name
    refused = signed_in(world, "adviser").get("/governance/download/accesses.csv")
    assert refused.status_code == 403 and "You cannot do this" in refused.text


def test_changes_between_runs_are_classified(world: World):
    import pyarrow as pa
    import pyarrow.parquet as pq

    def run(name: str, entities: dict[str, list[str]]) -> None:
        rows = [(e, "dwp", r) for e, refs in entities.items() for r in refs]
        (world.home.runs_dir / name).mkdir(exist_ok=True)
        pq.write_table(pa.table({"entity_id": [r[0] for r in rows],
                                 "source": [r[1] for r in rows], "ref": [r[2] for r in rows]}),
                       world.home.runs_dir / name / "entities.parquet")
        # a finished run has its summary too (runs without one are not listed)
        (world.home.runs_dir / name / "summary.json").write_text(json.dumps(
            {"created_at": f"2026-01-0{1 + (name == 't-after')}T00:00:00+00:00",
             "records": len(rows), "entities": len(entities)}))

    run("t-before", {"a": ["1", "2"], "b": ["3"], "c": ["4"], "d": ["5", "6"], "g": ["9"]})
    run("t-after", {"A": ["1", "2"], "BC": ["3", "4"], "D1": ["5"], "D2": ["6"], "N": ["7"]})
    officer = signed_in(world, "data_officer")
    page = officer.get("/data/changes?before=t-before&after=t-after")
    assert page.status_code == 200
    from joinedup.pages.web import adapter

    found = adapter.run_changes(world.ctx, world.user("data_officer"), "t-before", "t-after")
    assert (found["unchanged"], found["merged"], found["split"], found["new"], found["gone"]) \
        == (1, 1, 2, 1, 1)
    for word in ("Merged", "Split", "New", "Gone"):
        assert word in page.text


def test_the_ledger_page_catches_an_old_entry_edited_after_it_verified(world: World):
    """The page's verify keeps what it verified; an edit of an entry it has already
    verified is still caught by the next page view, and a repair is seen too."""
    import zlib

    client = signed_in(world, "governance")
    assert "The ledger verifies" in client.get("/governance/ledger").text
    log = world.home.ledger_dir / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    at = sum(len(line) for line in lines[:5])
    original = lines[5]
    body = original[:-10]  # the record's JSON, without TAB, CRC and LF
    edited = body.replace(b'"time":"20', b'"time":"19', 1)
    assert edited != body and len(edited) == len(body)
    forged = edited + b"\t" + b"%08x" % zlib.crc32(edited) + b"\n"  # a well-formed record
    with open(log, "r+b") as fh:
        fh.seek(at)
        fh.write(forged)
    try:
        page = client.get("/governance/ledger").text
        assert "The ledger does not verify" in page
        assert "entry #5" in page and "modified" in page
    finally:
        with open(log, "r+b") as fh:
            fh.seek(at)
            fh.write(original)
    assert "The ledger verifies" in client.get("/governance/ledger").text
