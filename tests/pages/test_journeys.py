"""Whole journeys in headless Chromium: an adviser from finding a person to a referral with
the keyboard alone; a provider from its inbox to outcomes; a withdrawal in one browser that
stops the summary in another at once; CSRF; and a GOV.UK error summary on every form."""

from __future__ import annotations

import re

import pytest

from tests.pages.conftest import (
    World,
    axe_violations,
    fill_identifiers,
    identifiers,
    matched_person,
    new_page,
    refer,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def tab_to(page, selector: str, limit: int = 120, text: str | None = None) -> None:
    """Press Tab until the element matching `selector` (and with this text) has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("([s, t]) => { const e = document.activeElement; return !!e && "
                         "e.matches(s) && (t === null || e.textContent.trim() === t); }",
                         [selector, text]):
            return
    raise AssertionError(f"could not reach {selector} with the Tab key")


def type_into(page, selector: str, text: str) -> None:
    tab_to(page, selector)
    page.keyboard.type(text)


def press_button(page, label: str) -> None:
    tab_to(page, "button", text=label)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def follow_link(page, href: str) -> None:
    tab_to(page, f"a[href='{href}']")
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_adviser_journey_with_the_keyboard_alone(browser, world: World):
    # A linked person with barriers and no consent yet (index past the ones other tests use).
    n, person, _ = matched_person(world, start=10)
    from joinedup import operations as ops

    for record in world.ctx.consent.records(world.ctx.person_key(identifiers(person))):
        ops.withdraw_consent(world.ctx, world.user("adviser"),
                             ops.WithdrawConsent(record.receipt_id))
    page = new_page(browser, world)
    page.goto("/sign-in")
    type_into(page, "#token", world.tokens["adviser"])
    press_button(page, "Sign in")
    assert page.url.endswith("/adviser/find")
    for name, value in identifiers(person).items():
        type_into(page, f"#{name}", value)
    press_button(page, "Find")
    assert page.locator("h1").inner_text() == "No summary for this person"  # consent withdrawn
    follow_link(page, "/adviser/consent")
    tab_to(page, "#purposes")
    page.keyboard.press("Space")
    for box in page.locator("input[name=categories]").all():
        box_id = box.get_attribute("id")
        tab_to(page, f"#{box_id}")
        page.keyboard.press("Space")
    tab_to(page, "#notice")
    page.keyboard.press("Space")
    press_button(page, "Record consent")
    assert page.locator("h1").inner_text() == "Consent receipt"
    screenshot(page, "journey-adviser-receipt")
    follow_link(page, "/adviser/consent/history")
    follow_link(page, "/adviser/find")
    for name, value in identifiers(person).items():
        type_into(page, f"#{name}", value)
    press_button(page, "Find")
    assert page.locator("h1").inner_text() == "Barrier summary"
    assert "No record is not the same as no need" in page.content()
    follow_link(page, "/adviser/self-report")
    tab_to(page, "#answers")
    page.keyboard.press("Space")
    press_button(page, "Record answers")
    assert page.locator("#self-reported").is_visible()
    assert "Self-reported" in page.locator("#self-reported").inner_text()
    type_into(page, "#adjustment", "30")
    type_into(page, "#reason", "travel costs to the provider")
    press_button(page, "Adjust the payment")
    assert "travel costs to the provider" in page.content()
    follow_link(page, "/adviser/refer")
    tab_to(page, "#provider")
    page.keyboard.press("Space")
    tab_to(page, "#barriers")
    page.keyboard.press("Space")
    press_button(page, "Send the referral")
    assert page.locator("h1").inner_text() == "Referral sent"
    referral_id = page.locator(".govuk-panel__body strong").inner_text()
    screenshot(page, "journey-adviser-referred")
    follow_link(page, "/adviser/caseload")
    assert referral_id in page.content() and "New" in page.content()
    # The ledger has the referral, decided, by this adviser.
    created = [e for e in world.events() if e.get("type") == "referral.created"
               and e.get("referral_id") == referral_id]
    assert len(created) == 1 and created[0]["decision"]["allow"] is True
    page.context.close()


def test_provider_journey_from_inbox_to_outcome(browser, world: World):
    n, person, result = matched_person(world, start=20)
    codes = [b["code"] for b in result["summary"]["barriers"]]
    referral = refer(world, person, "provider-a", codes)
    page = new_page(browser, world, "provider")
    page.goto("/provider/referrals")
    row = page.locator("tr", has=page.locator(f"a:text-is('{referral.referral_id}')"))
    assert "New" in row.inner_text()
    page.click(f"a:text-is('{referral.referral_id}')")
    assert page.locator("h1").inner_text() == "Referral summary"
    shown = {c.strip("()") for c in re.findall(r"\(([A-Z]{2,3})\)",
                                               page.locator("#barriers").inner_text())}
    assert shown <= set(codes) and shown
    page.check("#answer")  # accept
    page.click("button:has-text('Send answer')")
    assert "Referral accepted." in page.content()
    for milestone, day in (("job_start", "2026-01-05"), ("sustained_13", "2026-04-06"),
                           ("sustained_26", "2026-07-06")):
        page.check(f"input[name=milestone][value={milestone}]")
        page.fill("#date", day)
        page.click("button:has-text('Record outcome')")
        assert "Outcome recorded." in page.content(), page.locator("main").inner_text()[:400]
    total = result["summary"]["outcome_payment"]["tariff_gbp"]
    due = page.locator("#due-total").inner_text()
    provider_view_total = float(page.locator("#payments caption").inner_text()
                                .split("£")[1].split()[0])
    assert due == f"£{provider_view_total:.2f}"  # all three milestones: the whole payment
    assert provider_view_total <= total
    screenshot(page, "journey-provider-outcomes")
    page.goto("/provider/referrals")
    assert "Accepted" in page.locator("tr", has=page.locator(
        f"a:text-is('{referral.referral_id}')")).inner_text()
    recorded = [e for e in world.events() if e.get("type") == "outcome.recorded"
                and e.get("referral_id") == referral.referral_id]
    assert [e["milestone"] for e in recorded] == ["job_start", "sustained_13", "sustained_26"]
    page.context.close()


def test_withdrawal_in_one_browser_stops_the_summary_in_another(browser, world: World):
    n, person, result = matched_person(world, start=25)
    referral = refer(world, person, "provider-a", [result["summary"]["barriers"][0]["code"]])
    provider = new_page(browser, world, "provider")
    provider.goto(f"/provider/referrals/{referral.referral_id}")
    assert provider.locator("h1").inner_text() == "Referral summary"
    seer = new_page(browser, world, "adviser")
    seer.goto("/adviser/find")
    fill_identifiers(seer, person)
    seer.click("button:has-text('Find')")
    seer.goto("/adviser/person")
    assert seer.locator("h1").inner_text() == "Barrier summary"
    other = new_page(browser, world, "adviser2")
    other.goto("/adviser/find")
    fill_identifiers(other, person)
    other.click("button:has-text('Find')")
    other.goto("/adviser/consent/history")
    while other.locator("button:has-text('Withdraw')").count():
        other.locator("button:has-text('Withdraw')").first.click()
        # The click posts a form; wait for the page it leads to (fails after the timeout),
        # rather than reading whichever page is there when the click returns.
        other.get_by_text("Consent withdrawn").first.wait_for()
    response = seer.reload()
    assert response.status == 403
    assert "Current barriers" not in seer.content()
    assert seer.locator("h1").inner_text() == "You cannot do this"
    response = provider.reload()  # the provider's open referral stops too, at once
    assert response.status == 403 and "Current barriers" not in provider.content()
    provider.goto("/provider/referrals")
    assert referral.referral_id not in provider.content()
    provider.context.close()
    seer.context.close()
    other.context.close()


def test_csrf_is_refused_without_a_token(browser, world: World):
    n, person, _ = matched_person(world, start=30)
    page = new_page(browser, world, "adviser")
    page.goto("/adviser/find")
    fill_identifiers(page, person)
    page.click("button:has-text('Find')")
    receipt = world.ctx.consent.current(world.ctx.person_key(identifiers(person)),
                                        "employment_support")["receipt_id"]
    before = len(world.events())
    for form in ({"receipt_id": receipt}, {"receipt_id": receipt, "csrf_token": "forged"}):
        response = page.request.post("/adviser/consent/withdraw", form=form,
                                     max_redirects=0)
        assert response.status == 403
        assert "This form has expired" in response.text()
    assert len(world.events()) == before  # nothing decided, nothing done
    status = world.ctx.consent.current(world.ctx.person_key(identifiers(person)),
                                       "employment_support")["status"]
    assert status == "active"
    page.context.close()


def test_session_cookie_is_httponly_and_samesite_strict(browser, world: World):
    page = new_page(browser, world, "governance")
    cookie = next(c for c in page.context.cookies() if c["name"] == "joinedup_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie") == ""
    page.context.close()


# Each form, what to send to make it fail, and the error-summary message expected.
def test_every_form_shows_a_govuk_error_summary(browser, world: World):
    n, person, result = matched_person(world, start=33)
    first = [result["summary"]["barriers"][0]["code"]]
    referral = refer(world, person, "provider-a", first)
    accepted = refer(world, person, "provider-a", first)
    from joinedup.pages.web import adapter

    adapter.respond_to_referral(world.ctx, world.user("provider"), accepted.referral_id, True, "")

    def check(page, name: str, fragment: str) -> None:
        summary = page.locator(".govuk-error-summary")
        assert summary.is_visible(), (name, page.locator("main").inner_text()[:300])
        text = summary.inner_text()
        assert "There is a problem" in text and fragment in text, (name, text)
        link = summary.locator("a").first.get_attribute("href")
        assert page.locator(link).count() == 1, (name, link)  # it points at the field
        assert page.title().startswith("Error: "), name
        assert axe_violations(page) == [], name
        screenshot(page, f"error-{name}")

    anon = new_page(browser, world)
    anon.goto("/sign-in")
    anon.click("button:has-text('Sign in')")
    check(anon, "sign-in-empty", "Enter your access token")
    anon.fill("#token", "ju_not_a_token")
    anon.click("button:has-text('Sign in')")
    check(anon, "sign-in-wrong", "Enter a valid access token")

    adv = new_page(browser, world, "adviser")
    adv.goto("/adviser/find")
    adv.click("button:has-text('Find')")
    check(adv, "find-empty", "Enter the person's first name")
    fill_identifiers(adv, {**identifiers(person), "date_of_birth": "31/02/1990"})
    adv.click("button:has-text('Find')")
    check(adv, "find-bad-date", "Date of birth")
    adv.goto("/adviser/find")
    fill_identifiers(adv, person)
    adv.click("button:has-text('Find')")
    adv.goto("/adviser/consent")
    adv.click("button:has-text('Record consent')")
    check(adv, "consent-empty", "Select what the person consents to")
    adv.goto("/adviser/person")
    adv.fill("#adjustment", "lots")
    adv.click("button:has-text('Adjust the payment')")
    check(adv, "payment-not-a-number", "Enter the adjustment in pounds")
    adv.fill("#adjustment", "100000")
    adv.fill("#reason", "because")
    adv.click("button:has-text('Adjust the payment')")
    check(adv, "payment-out-of-bounds", "exceeds the approved bound")
    adv.goto("/adviser/self-report")
    adv.click("button:has-text('Record answers')")
    check(adv, "self-report-empty", "Choose at least one answer")
    adv.goto("/adviser/refer")
    adv.click("button:has-text('Send the referral')")
    check(adv, "refer-empty", "Select the provider")

    prov = new_page(browser, world, "provider")
    prov.goto(f"/provider/referrals/{referral.referral_id}")
    prov.click("button:has-text('Send answer')")
    check(prov, "respond-empty", "Select whether you accept or decline")
    prov.check("input[name=answer][value=decline]")
    prov.click("button:has-text('Send answer')")
    check(prov, "decline-without-reason", "Say why the referral is declined")
    prov.goto(f"/provider/referrals/{accepted.referral_id}")
    prov.click("button:has-text('Record outcome')")
    check(prov, "outcome-empty", "Select the outcome")
    prov.check("input[name=milestone][value=sustained_13]")
    prov.fill("#date", "2026-01-01")
    prov.click("button:has-text('Record outcome')")
    check(prov, "outcome-out-of-order", "Record job_start first")
    prov.check("input[name=milestone][value=job_start]")
    prov.fill("#date", "2999-01-01")
    prov.click("button:has-text('Record outcome')")
    check(prov, "outcome-in-future", "Must be today or in the past")

    gov = new_page(browser, world, "governance")
    gov.goto("/governance/decisions")
    gov.click("button:has-text('Look up')")
    check(gov, "decision-empty", "Enter a decision id")
    gov.fill("#decision_id", "dec-nothing-like-it")
    gov.click("button:has-text('Look up')")
    check(gov, "decision-unknown", "No decision with this id")
    gov.goto("/governance/area-counts?level=galaxy")
    check(gov, "area-level", "Choose an area level")

    officer = new_page(browser, world, "data_officer")
    officer.goto("/data/changes?before=&after=")
    check(officer, "changes-empty", "Choose the earlier run")

    citizen = new_page(browser, world, "citizen")
    citizen.goto("/citizen/access")
    citizen.click("button:has-text('Show me')")
    check(citizen, "citizen-empty", "Enter the person's first name")
    for p in (anon, adv, prov, gov, officer, citizen):
        p.context.close()


def test_decision_lookup_shows_a_recorded_refusal(browser, world: World):
    page = new_page(browser, world, "governance")
    page.goto("/governance/denials")
    link = page.locator("#denials a").first
    decision_id = link.inner_text()
    link.click()
    text = page.locator("main").inner_text()
    assert decision_id in text and "denied" in text
    assert "Input hash" in text and "Policy bundle revision" in text
    assert world.ctx.policy.bundle_revision in text
    page.context.close()


def test_citizen_sees_what_was_shared_about_them(browser, world: World):
    n, person, _ = matched_person(world, start=36)
    receipt = world.ctx.consent.current(world.ctx.person_key(identifiers(person)),
                                        "employment_support")["receipt_id"]
    page = new_page(browser, world, "citizen")
    page.goto("/citizen/access")
    fill_identifiers(page, person)
    page.fill("#receipt", "0" * 32)  # somebody else's, or nobody's, receipt: refused
    page.click("button:has-text('Show me')")
    assert "do not match" in page.locator(".govuk-error-summary").inner_text()
    assert page.locator("#shared").count() == 0
    page.fill("#receipt", receipt)
    page.click("button:has-text('Show me')")
    text = page.locator("#shared").inner_text()
    assert "csc-margate" in text and "summary of your barriers" in text
    screenshot(page, "citizen-report")
    assert axe_violations(page) == []
    page.context.close()
