"""Every page in headless Chromium (Playwright driving Debian's /usr/bin/chromium): each page
for every role it allows (rendered, axe-core: 0 serious or critical violations, screenshot),
and a refusal, recorded in the ledger, for every role it does not."""

from __future__ import annotations

import pytest

from tests.pages.conftest import (
    ROLES,
    World,
    axe_violations,
    fill_identifiers,
    matched_person,
    new_page,
    refer,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# (name, path, the one role it is for). "{ref}" is a referral to provider-a; "{receipt}" a
# consent receipt of the adviser's current person.
PAGES = [
    ("home", "/pages", None),
    ("adviser-find", "/adviser/find", "adviser"),
    ("adviser-person", "/adviser/person", "adviser"),
    ("adviser-person-print", "/adviser/person/print", "adviser"),
    ("adviser-consent", "/adviser/consent", "adviser"),
    ("adviser-receipt", "/adviser/consent/receipt/{receipt}", "adviser"),
    ("adviser-history", "/adviser/consent/history", "adviser"),
    ("adviser-self-report", "/adviser/self-report", "adviser"),
    ("adviser-refer", "/adviser/refer", "adviser"),
    ("adviser-caseload", "/adviser/caseload", "adviser"),
    ("adviser-caseload-print", "/adviser/caseload/print", "adviser"),
    ("provider-inbox", "/provider/referrals", "provider"),
    ("provider-referral", "/provider/referrals/{ref}", "provider"),
    ("governance-ledger", "/governance/ledger", "governance"),
    ("governance-accesses", "/governance/accesses", "governance"),
    ("governance-denials", "/governance/denials", "governance"),
    ("governance-withdrawals", "/governance/withdrawals", "governance"),
    ("governance-decisions", "/governance/decisions", "governance"),
    ("governance-area-counts", "/governance/area-counts", "governance"),
    ("governance-outcomes", "/governance/outcomes", "governance"),
    ("governance-register", "/governance/register", "governance"),
    ("data-runs", "/data/runs", "data_officer"),
    ("data-quality", "/data/quality", "data_officer"),
    ("data-changes", "/data/changes", "data_officer"),
    ("citizen-access", "/citizen/access", "citizen"),
]


@pytest.fixture(scope="module")
def setting(world: World) -> dict:
    """A consented, linked person with barriers, and a referral of them to provider-a."""
    n, person, result = matched_person(world)
    barriers = [b["code"] for b in result["summary"]["barriers"]]
    referral = refer(world, person, "provider-a", barriers[:1])
    receipt = result["summary"]["consent_receipt_id"]
    return {"n": n, "person": person, "ref": referral.referral_id, "receipt": receipt}


def _refusals(world: World, role: str, since: int) -> int:
    """Refusals of `role` recorded from ledger position `since` on."""
    return sum(1 for e in world.events(since) if e.get("type") == "policy.decision"
               and e.get("allow") is False and (e.get("actor") or {}).get("role") == role)


@pytest.mark.parametrize("role", ROLES)
def test_every_page_for_every_role(browser, world: World, setting: dict, role: str):
    page = new_page(browser, world, role)
    if role == "adviser":  # the adviser's pages are about the person in front of them
        page.goto("/adviser/find")
        fill_identifiers(page, setting["person"])
        page.click("button:has-text('Find')")
        assert page.locator("h1").inner_text() == "Barrier summary"
    problems: dict[str, list] = {}
    for name, template, for_role in PAGES:
        path = template.format(ref=setting["ref"], receipt=setting["receipt"])
        before = world.ledger_size()
        response = page.goto(path)
        heading = page.locator("h1").first.inner_text()
        if for_role in (None, role):
            assert response.status == 200, (role, path, response.status, heading)
            assert heading and heading != "You cannot do this", (role, path)
            found = axe_violations(page)
            if found:
                problems[path] = found
            screenshot(page, f"{role}-{name}")
        else:
            assert response.status == 403, (role, path, response.status)
            assert heading == "You cannot do this", (role, path, heading)
            assert "recorded in the audit ledger" in page.content()
            assert _refusals(world, role, since=before) == 1, (role, path)
            assert "Current barriers" not in page.content(), (role, path)
    assert not problems, problems
    page.context.close()


def test_signed_out_pages_send_to_sign_in(browser, world: World):
    page = new_page(browser, world)
    for _, template, role in PAGES:
        if role:
            page.goto(template.format(ref="ref-x", receipt="r"))
            assert "/sign-in" in page.url
    assert axe_violations(page) == []
    screenshot(page, "sign-in")
    page.context.close()


def test_provider_never_sees_a_referral_to_another_provider(browser, world: World, setting):
    page = new_page(browser, world, "provider_b")
    response = page.goto(f"/provider/referrals/{setting['ref']}")
    assert response.status in (403, 404)
    assert "Referral summary" not in page.content() and "Current barriers" not in page.content()
    other = page.content()
    absent = page.goto("/provider/referrals/ref-doesnotexist")
    assert absent.status == response.status  # "not yours" and "absent" look the same
    assert "Referral summary" not in other
    page.goto("/provider/referrals")
    assert setting["ref"] not in page.content()
    page.context.close()
