"""Fixtures of the page tests: one real demo home served by the real app (uvicorn on a
loopback port), users of every role, and Debian's Chromium driven by Playwright (no browser
download). Screenshots go to test-artefacts/screenshots/ (ignored by git)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.joinedup.conftest import LiveServer, claimants, serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artefacts" / "screenshots"
AXE = ROOT / "joinedup" / "pages" / "assets" / "node_modules" / "axe-core" / "axe.min.js"
ROLES = ("adviser", "provider", "governance", "data_officer", "citizen")
ALL_CATEGORIES = ["dwp", "council", "nhs", "housing", "MH", "PH", "DIS", "SUB", "HOU", "FIN",
                  "SKL", "CAR", "CLV", "FAM", "OFF", "WRK"]


@dataclass
class World:
    live: LiveServer
    home: object
    tokens: dict[str, str]
    people: list[dict]          # raw identifiers of linked people (first DWP claimants)

    @property
    def url(self) -> str:
        return self.live.url

    @property
    def ctx(self):
        return self.live.app.state.ctx

    def user(self, role: str):
        return self.ctx.auth.authenticate(f"Bearer {self.tokens[role]}")

    def events(self, start: int = 0) -> list[dict]:
        """The ledger's events from position `start` (the ledger is append-only, so a test
        that wants what one request added reads from the size before it, not all of it)."""
        return list(self.ctx.ledger.events(start))

    def ledger_size(self) -> int:
        return self.ctx.ledger.size


@pytest.fixture(scope="session")
def world(review_demo_home, tmp_path_factory) -> Iterator[World]:
    import shutil

    from joinedup.api import create_app
    from joinedup.home import load_home
    from joinedup.users import open_user_store

    # A private copy of the session's one demo home (tests/conftest.py: `joinedup demo` run
    # in its own process, as a user would run it): nothing the pages do reaches other tests.
    root = tmp_path_factory.mktemp("pages") / "home"
    shutil.copytree(review_demo_home[0], root)
    home = load_home(root)
    doc = json.loads((root / "secrets" / "demo-tokens.json").read_text())
    tokens = {role: v["token"] for role, v in doc.items()}
    store = open_user_store(home)
    _, tokens["citizen"] = store.add("citizen", "public", "a citizen")
    _, tokens["adviser2"] = store.add("adviser", "csc-margate", "a second adviser")
    _, tokens["provider_b"] = store.add("provider", "provider-b", "provider B caseworker")
    live = serve(create_app(home))
    try:
        yield World(live, home, tokens, claimants(home, 40))
    finally:
        live.stop()
        live.app.state.ctx.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser, world: World, role: str | None = None):
    """A fresh browser context (its own cookies), signed in as `role` when given. CSP is
    bypassed only so the tests can inject axe-core."""
    context = browser.new_context(viewport={"width": 1000, "height": 760}, bypass_csp=True,
                                  base_url=world.url)
    page = context.new_page()
    if role:
        sign_in(page, world.tokens[role])
    return page


def sign_in(page, token: str) -> None:
    page.goto("/sign-in")
    page.fill("#token", token)
    page.click("button:has-text('Sign in')")
    page.wait_for_load_state()
    assert "/sign-in" not in page.url, page.content()[:500]


def identifiers(person: dict) -> dict:
    return {k: person[k] for k in ("given_name", "family_name", "date_of_birth", "postcode",
                                   "nino", "nhs_number") if person.get(k)}


def fill_identifiers(page, person: dict) -> None:
    for name, value in identifiers(person).items():
        page.fill(f"#{name}", value)


def axe_violations(page) -> list[dict]:
    """Serious and critical axe-core violations of the page as it is."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:3]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def screenshot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


def consent_for(world: World, person: dict, categories: list[str] | None = None) -> str:
    """Record consent as the adviser would (through the same operation)."""
    from joinedup import operations as ops

    done = ops.grant_consent(world.ctx, world.user("adviser"), ops.GrantConsent(
        identifiers(person), ["employment_support"], categories or ALL_CATEGORIES,
        privacy_notice_version="csc-notice-2026-01"))
    return done.receipt_id


def refer(world: World, person: dict, provider: str, barriers: list[str]):
    from joinedup import operations as ops

    return ops.create_referral(world.ctx, world.user("adviser"),
                               ops.CreateReferral(identifiers(person), provider, barriers))


def matched_person(world: World, start: int = 0) -> tuple[int, dict, dict]:
    """(index, identifiers, summary) of the next linked person with a consented, matched
    summary that has at least one barrier."""
    from joinedup import operations as ops
    from joinedup.errors import InvalidIdentifiers

    for n in range(start, len(world.people)):
        person = world.people[n]
        try:
            consent_for(world, person)
        except InvalidIdentifiers:  # a malformed row the synthetic sources plant
            continue
        result = ops.request_summary(world.ctx, world.user("adviser"),
                                     ops.SummaryRequest(identifiers(person))).to_dict()
        if result.get("outcome") == "matched" and result["summary"]["barriers"]:
            return n, person, result
    raise AssertionError("no linked person with barriers among the claimants")
