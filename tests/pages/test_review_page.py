"""The data officer's clerical review pages in headless Chromium: the queue, a pair with its
waterfall, labelling with the keyboard alone and landing on the next pair, the label in the
ledger and in the home's review folder, refusals for every other role, CSRF, axe-core."""

from __future__ import annotations

import re

import pytest

from linkage import review as lr
from tests.pages.conftest import World, axe_violations, new_page, screenshot
from tests.pages.test_journeys import press_button, tab_to

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PAIR_URL = re.compile(r"/data/review/pair/(P[0-9a-f]{16})")


def _labels(world: World) -> dict:
    return lr.labels(world.home.root / "review")


def test_data_officer_labels_a_pair_with_the_keyboard_and_lands_on_the_next(browser, world):
    page = new_page(browser, world, "data_officer")
    response = page.goto("/data/review")
    assert response.status == 200
    assert page.locator("h1").inner_text() == "Review queue"
    assert page.locator("#queue tbody tr").count() > 0
    assert "Accuracy estimated from labels" in page.content()
    assert axe_violations(page) == []
    screenshot(page, "data_officer-review-queue")

    tab_to(page, "a[href='/data/review/next']")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    first = PAIR_URL.search(page.url).group(1)
    assert page.locator("h1").inner_text() == f"Review pair {first}"
    # The waterfall: a row per bar, the final score equal to the sum of the weights shown.
    weights = [float(t) for t in page.locator("#waterfall tbody tr td:nth-child(3)").all_inner_texts()[:-1]]
    final = float(page.locator("#waterfall tbody tr:last-child strong").inner_text())
    assert len(weights) >= 3 and sum(weights) == pytest.approx(final, abs=0.02 * len(weights))
    assert page.locator("#effects").inner_text().strip()
    assert axe_violations(page) == []
    screenshot(page, "data_officer-review-pair")

    # Keyboard only: Tab to the first radio, arrow to "Not a match", Tab to the button, Enter.
    tab_to(page, "input[name='label']")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.value") == "non-match"
    press_button(page, "Save label and go to the next pair")
    second = PAIR_URL.search(page.url).group(1)
    assert second != first
    assert f"Pair {first} labelled non-match" in page.locator(".govuk-notification-banner").inner_text()

    officer = world.user("data_officer")
    label = _labels(world)[first]
    assert label["label"] == "non-match" and label["by"] == officer.id
    events = [e for e in world.events() if e.get("type") == "linkage.review_label"
              and e.get("pair_id") == first]
    assert len(events) == 1 and events[0]["event_id"] == label["event_id"]
    page.context.close()


def test_no_choice_shows_an_error_summary(browser, world):
    page = new_page(browser, world, "data_officer")
    page.goto("/data/review/next")
    pair_id = PAIR_URL.search(page.url).group(1)
    with page.expect_navigation():
        page.click("button:has-text('Save label and go to the next pair')")
    assert PAIR_URL.search(page.url).group(1) == pair_id
    assert "There is a problem" in page.locator(".govuk-error-summary").inner_text()
    assert "Choose match, not a match or unsure" in page.content()
    assert pair_id not in _labels(world)
    assert axe_violations(page) == []
    screenshot(page, "data_officer-review-pair-error")
    page.context.close()


def test_a_label_without_the_form_token_is_refused(browser, world):
    page = new_page(browser, world, "data_officer")
    page.goto("/data/review/next")
    pair_id = PAIR_URL.search(page.url).group(1)
    response = page.request.post(f"/data/review/pair/{pair_id}", form={"label": "match"})
    assert response.status == 403
    assert "This form has expired" in response.text()
    assert pair_id not in _labels(world)
    page.context.close()


def test_why_a_record_is_in_its_entity(browser, world):
    page = new_page(browser, world, "data_officer")
    page.goto("/data/review/next")
    link = page.locator("#pair-facts a").first
    with page.expect_navigation():
        link.click()
    assert page.locator("h1").inner_text() == "Why this record is in its entity"
    assert page.locator("#holding tbody tr").count() >= 1
    assert axe_violations(page) == []
    screenshot(page, "data_officer-review-record")
    page.context.close()


@pytest.mark.parametrize("role", ["adviser", "provider", "governance", "citizen"])
def test_other_roles_are_refused(browser, world, role):
    page = new_page(browser, world, role)
    labels_before = _labels(world)
    for path in ("/data/review", "/data/review/next", "/data/review/pair/P0123456789abcdef"):
        before = world.ledger_size()
        response = page.goto(path)
        assert response.status == 403, (role, path)
        assert page.locator("h1").inner_text() == "You cannot do this"
        added = sum(1 for e in world.events(before) if e.get("type") == "policy.decision"
                    and e.get("action") == "linkage.review" and e.get("allow") is False)
        assert added == 1
        assert "Match-weight waterfall" not in page.content()
    assert "Review queue" not in page.locator("#navigation").inner_text()
    assert _labels(world) == labels_before
    page.context.close()


def _uncompared_pair(world: World) -> tuple[tuple[str, str], tuple[str, str]]:
    import random

    import pyarrow.parquet as pq

    from linkage.runs import current_run_name

    run = world.home.runs_dir / current_run_name(world.home.runs_dir)
    rows = pq.read_table(run / "entities.parquet", columns=["source", "ref", "entity_id"]).to_pylist()
    rng = random.Random(11)
    for _ in range(200):
        a, b = rng.sample(rows, 2)
        left, right = (a["source"], a["ref"]), (b["source"], b["ref"])
        if a["entity_id"] != b["entity_id"] and not lr.blocking_rules_of_pair(run, left, right):
            return left, right
    raise AssertionError("no uncompared pair among 200 random ones")


def test_data_officer_compares_two_records_and_confirms_a_missed_link(browser, world):
    page = new_page(browser, world, "data_officer")
    page.goto("/data/review")
    with page.expect_navigation():
        page.click("a[href='/data/review/compare']")
    assert page.locator("h1").inner_text() == "Compare two records"
    assert axe_violations(page) == []
    with page.expect_navigation():
        page.click("button:has-text('Compare')")  # nothing entered
    assert "There is a problem" in page.locator(".govuk-error-summary").inner_text()
    assert "Enter the first record's source" in page.content()
    assert axe_violations(page) == []
    screenshot(page, "data_officer-review-compare-error")

    left, right = _uncompared_pair(world)
    # A reference the run does not hold: said on the form, against its field.
    for name, value in zip(("left_source", "left_ref", "right_source", "right_ref"),
                           (*left, right[0], "f" * 24), strict=True):
        page.fill(f"#{name}", value)
    with page.expect_navigation():
        page.click("button:has-text('Compare')")
    assert "There is no record with this source and reference" in page.locator(".govuk-error-summary").inner_text()
    assert page.locator("#right_ref-error").count() == 1
    for name, value in zip(("left_source", "left_ref", "right_source", "right_ref"), (*left, *right), strict=True):
        page.fill(f"#{name}", value)
    with page.expect_navigation():
        page.click("button:has-text('Compare')")
    pair_id = lr.pair_id(left, right)
    assert page.locator("h1").inner_text() == f"Review pair {pair_id}"
    assert page.locator("#blocked-by").inner_text().startswith("Never compared")
    assert page.locator("#waterfall tbody tr").count() >= 3
    assert axe_violations(page) == []
    screenshot(page, "data_officer-review-compare")

    before = world.ledger_size()
    page.check("input[name='label'][value='match']")
    press_button(page, "Save label")
    assert page.url.endswith("/data/review")
    assert f"Pair {pair_id} labelled match" in page.locator(".govuk-notification-banner").inner_text()
    label = _labels(world)[pair_id]
    assert label["label"] == "match" and [label["source_l"], label["ref_l"]] in ([*left], [*right])
    events = [e for e in world.events(before) if e.get("type") == "linkage.review_label"]
    assert len(events) == 1 and (events[0]["left_ref"], events[0]["right_ref"]) == (left[1], right[1])
    page.context.close()
