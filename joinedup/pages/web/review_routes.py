"""The data officer's clerical review pages: the queue with the accuracy estimate, one pair
with its match-weight waterfall and a label form (match / non-match / unsure, CSRF-protected,
no JavaScript needed) that goes on to the next pair, a random sample for the accuracy
estimate, why a record is in its entity, and any two records compared ("why did these two
not link?", with a label form that can confirm a link the run missed). Each calls one `adapter` function (the
`linkage.review` operations); only a role granted `linkage.review` (the data officer) gets
them, anyone else a recorded refusal."""

from __future__ import annotations

from fastapi import APIRouter

import joinedup.pages.web.adapter as adapter
from joinedup.errors import InvalidInput
from joinedup.pages.web.framework import Page, input_errors, page

ROLES = ("data_officer",)
ACTION = "linkage.review"
LABEL_OPTIONS = [("match", "Match: the same person"),
                 ("non-match", "Not a match: different people"),
                 ("unsure", "Unsure")]
PURPOSES = ("queue", "sample-links", "sample-band", "request")
COMPARE_FIELDS = [("left_source", "First record's source"), ("left_ref", "First record's reference"),
                  ("right_source", "Second record's source"), ("right_ref", "Second record's reference")]


def waterfall_rows(waterfall: list[dict]) -> list[dict]:
    """The waterfall's bars with their running total and bar geometry (percent of the
    widest absolute weight, so the largest bar fills its half of the cell)."""
    bars = [b for b in waterfall if b["column_name"] != "Final score"]
    top = max((abs(b["log2_bayes_factor"]) for b in bars), default=1.0) or 1.0
    rows, running = [], 0.0
    for b in bars:
        w = float(b["log2_bayes_factor"])
        running += w
        rows.append({"comparison": b["column_name"], "level": b["label_for_charts"] or "–",
                     "gamma": b["comparison_vector_value"], "weight": w, "running": running,
                     "width": round(50 * abs(w) / top, 1), "positive": w >= 0})
    return rows


def register(router: APIRouter) -> None:
    @page(router, "/data/review", ACTION, ROLES)
    def queue(p: Page):
        found = p.call(adapter.review_queue, 25)
        return p.render("data_review_queue.html", title="Review queue", found=found)

    @page(router, "/data/review/next", ACTION, ROLES)
    def next_pair(p: Page):
        pair_id = p.call(adapter.next_review_pair)
        if pair_id is None:
            return p.redirect("/data/review", "Nothing left to review in the queue.")
        return p.redirect(f"/data/review/pair/{pair_id}")

    @page(router, "/data/review/sample", ACTION, ROLES)
    def sample(p: Page):
        stratum = p.query("stratum") or "links"
        if stratum not in ("links", "band"):
            return p.render("not_found.html", 404, title="Not found", message="No such sample")
        got = p.call(adapter.sample_review_pair, stratum)
        if got is None:
            return p.redirect("/data/review", "Every pair of that sample is labelled.")
        return p.redirect(f"/data/review/pair/{got['pair_id']}?purpose={got['purpose']}")

    def show(p: Page, pair_id: str, purpose: str, status: int = 200, errors=None):
        pair = p.call(adapter.review_pair, pair_id)
        return p.render("data_review_pair.html", status, title=f"Review pair {pair_id}",
                        pair=pair, rows=waterfall_rows(pair["waterfall"]), purpose=purpose,
                        options=LABEL_OPTIONS, errors=errors,
                        form_action=f"/data/review/pair/{pair_id}", hidden={"purpose": purpose})

    @page(router, "/data/review/pair/{pair_id}", ACTION, ROLES, methods=("GET", "POST"))
    def pair(p: Page):
        pair_id = p.request.path_params["pair_id"]
        purpose = (p.value("purpose") if p.request.method == "POST" else p.query("purpose"))
        purpose = purpose if purpose in PURPOSES else "queue"
        if p.request.method == "GET":
            return show(p, pair_id, purpose)
        label = p.value("label")
        if label not in dict(LABEL_OPTIONS):
            return show(p, pair_id, purpose, 400,
                        [("label", "Choose match, not a match or unsure")])
        try:
            p.call(adapter.label_pair, pair_id, label, purpose)
        except InvalidInput as exc:
            return show(p, pair_id, purpose, 400, input_errors(exc, {"label": "label"}))
        done = f"Pair {pair_id} labelled {label}. It applies from the next link run."
        if purpose.startswith("sample-"):
            return p.redirect(f"/data/review/sample?stratum={purpose.removeprefix('sample-')}",
                              done)
        following = p.call(adapter.next_review_pair)
        if following is None:
            return p.redirect("/data/review", done + " The queue is empty.")
        return p.redirect(f"/data/review/pair/{following}", done)

    @page(router, "/data/review/record", ACTION, ROLES)
    def record(p: Page):
        source, ref = p.query("source"), p.query("ref")
        if not source or not ref:
            return p.render("not_found.html", 404, title="Not found", message="No such record")
        why = p.call(adapter.why_in_entity, source, ref)
        return p.render("data_review_record.html", title="Why this record is in its entity",
                        source=source, ref=ref, why=why)

    @page(router, "/data/review/compare", ACTION, ROLES, methods=("GET", "POST"))
    def compare(p: Page):
        read = p.value if p.request.method == "POST" else p.query
        values = {name: (read(name) or "").strip() for name, _ in COMPARE_FIELDS}
        # First arrival (no field and not the form's own submit): the empty form.
        if p.request.method == "GET" and not any(values.values()) and not p.query("compare"):
            return p.render("data_review_compare.html", title="Compare two records",
                            fields=COMPARE_FIELDS, values=values, errors=None)
        errors = [(name, f"Enter the {text.lower()}") for name, text in COMPARE_FIELDS if not values[name]]
        if errors:
            return p.render("data_review_compare.html", 400, title="Compare two records",
                            fields=COMPARE_FIELDS, values=values, errors=errors)
        left = (values["left_source"], values["left_ref"])
        right = (values["right_source"], values["right_ref"])
        if p.request.method == "POST":
            label = p.value("label")
            if label in dict(LABEL_OPTIONS):
                try:
                    stored = p.call(adapter.label_records, left, right, label)
                    return p.redirect("/data/review", f"Pair {stored['pair_id']} labelled {label}. "
                                      "It applies from the next link run.")
                except InvalidInput as exc:
                    errors = input_errors(exc, {"label": "label"})
            else:
                errors = [("label", "Choose match, not a match or unsure")]
        try:
            pair = p.call(adapter.compare_records, left, right)
        except InvalidInput as exc:
            return p.render("data_review_compare.html", 400, title="Compare two records",
                            fields=COMPARE_FIELDS, values=values,
                            errors=input_errors(exc, {name: name for name, _ in COMPARE_FIELDS}))
        return p.render("data_review_pair.html", 400 if errors else 200,
                        title=f"Review pair {pair['pair_id']}", pair=pair,
                        rows=waterfall_rows(pair["waterfall"]), purpose="queue",
                        options=LABEL_OPTIONS, errors=errors or None,
                        form_action="/data/review/compare", hidden=values, submit_text="Save label")
