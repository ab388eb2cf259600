"""The API's who-are-you, input and size checks, over real HTTP on loopback."""

from __future__ import annotations

import json

from joinedup.users import open_user_store

PERSON = {"given_name": "Ann", "family_name": "Smith", "date_of_birth": "1990-02-03"}


def test_health_status_page_and_openapi(live):
    with live.client() as c:
        assert c.get("/v1/health").json()["status"] == "ok"
        page = c.get("/")
        assert page.status_code == 200 and "joinedup service" in page.text
        assert "test-project" in page.text
        paths = c.get("/openapi.json").json()["paths"]
        for path in ("/v1/consent", "/v1/summaries", "/v1/referrals", "/v1/area-counts",
                     "/v1/linkage/status", "/v1/audit/verify", "/v1/audit/subject-access"):
            assert path in paths


def test_401_without_or_with_a_bad_or_revoked_token(live, home):
    store = open_user_store(home)
    user, token = store.add("adviser", "csc-margate")
    with live.client() as c:
        r = c.get("/v1/me")
        assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
        assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/v1/me", headers={"Authorization": "Basic abc"}).status_code == 401
        assert c.get("/v1/me", headers={"Authorization": "Bearer ju_nope"}).status_code == 401
        ok = c.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json() == user.subject()
        store.revoke(user.id)
        assert c.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_identifiers_accept_what_the_standardiser_accepts(live, home):
    """One standardiser: the connectors' forms of a date are accepted (the request then gets
    as far as the policy, which refuses: no consent), what it refuses is a 422 naming the
    field, never the value."""
    _, token = open_user_store(home).add("adviser", "csc-margate")
    with live.client(token) as c:
        for dob in ("3/2/1990", "03-02-1990", "1990-02-03", "3 Feb 1990", "19900203"):
            r = c.post("/v1/summaries", json={"identifiers": {**PERSON, "date_of_birth": dob}})
            assert r.status_code == 403 and "consent" in r.json()["message"], (dob, r.text)
        for field, value, why in (("date_of_birth", "31/02/1990", "impossible date"),
                                  ("date_of_birth", "3/2/2990", "future"),
                                  ("date_of_birth", "yesterday", "unrecognised"),
                                  ("nhs_number", "943 476 5871", "check digit"),
                                  ("given_name", "123", "no letters")):
            r = c.post("/v1/summaries", json={"identifiers": {**PERSON, field: value}})
            assert r.status_code == 422, (field, value, r.text)
            problems = r.json()["problems"]
            assert [p["field"] for p in problems] == [f"body.identifiers.{field}"]
            assert why in problems[0]["reason"] and value not in r.text
        # The same check guards consent and referrals (one way to do it).
        bad = {**PERSON, "date_of_birth": "31/02/1990"}
        r = c.post("/v1/consent", json={"identifiers": bad, "purposes": ["employment_support"],
                                        "categories": ["dwp"]})
        assert r.status_code == 422 and "date_of_birth" in r.json()["problems"][0]["field"]
    # Each request named a person: one entry each, whatever its outcome; the invalid ones
    # are `request.invalid` entries with the field and reason, never the value.
    events = list(live.app.state.ctx.ledger.events())
    assert [e["type"] for e in events] == ["policy.decision"] * 5 + ["request.invalid"] * 6
    assert all("31/02/1990" not in str(e) and "yesterday" not in str(e) for e in events)


def test_422_names_the_field(live, home):
    _, token = open_user_store(home).add("adviser", "csc-margate")
    with live.client(token) as c:
        r = c.post("/v1/summaries", json={"identifiers": {"given_name": "Ann",
                                                          "family_name": "Smith"}})
        assert r.status_code == 422
        fields = [p["field"] for p in r.json()["problems"]]
        assert "body.identifiers.date_of_birth" in fields
        r = c.post("/v1/summaries", json={"identifiers": PERSON, "colour": "blue"})
        assert r.status_code == 422 and "body.colour" in [p["field"] for p in r.json()["problems"]]
        r = c.post("/v1/summaries", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        r = c.get("/v1/area-counts", params={"level": "galaxy"})
        assert r.status_code == 422 and "query.level" in [p["field"] for p in r.json()["problems"]]


def test_413_for_a_large_body_declared_or_streamed(live, home):
    _, token = open_user_store(home).add("adviser", "csc-margate")
    big = json.dumps({"identifiers": PERSON, "pad": "x" * 70_000}).encode()
    with live.client(token) as c:
        r = c.post("/v1/summaries", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "request_too_large"

        def chunks():  # no Content-Length: chunked transfer
            for i in range(0, len(big), 8192):
                yield big[i : i + 8192]

        r = c.post("/v1/summaries", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_unexpected_errors_are_a_generic_500_without_details(live, home, monkeypatch):
    _, token = open_user_store(home).add("adviser", "csc-margate")
    ctx = live.app.state.ctx

    def boom(identifiers):
        raise RuntimeError("secret detail Ann Smith")

    monkeypatch.setattr(ctx, "person_key", boom)
    with live.client(token) as c:
        r = c.post("/v1/audit/subject-access", json={"identifiers": PERSON})
    assert r.status_code == 500
    assert r.json() == {"error": "internal_error",
                        "message": "internal error; the operator's log has details"}
    assert "Ann" not in r.text and "Traceback" not in r.text


def test_home_store_and_directories_are_private(home):
    import stat

    from joinedup.operations import open_service

    open_service(home).close()
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o700
    for sub in (home.extracts_dir, home.runs_dir, home.ledger_dir):
        assert stat.S_IMODE(sub.stat().st_mode) == 0o700, sub
    assert stat.S_IMODE(home.store_path.stat().st_mode) == 0o600
