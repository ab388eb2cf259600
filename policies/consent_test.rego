# Table-driven tests of the consent checks (check_ rules run per row by policies/testing.py; test_ rules by `opa test`, in policies/opa_tests/; see authz_test).
package joinedup.consent_test

import data.joinedup.consent

# Compare as sets: regopy 1.5.2 finds a computed array unequal to an input array with the same
# elements, so array results are checked as sets (sorting is checked by the Python tests).
as_set(a) := {x | some x in a}

good := {
	"status": "active", "purposes": ["employment_support"], "categories": ["dwp", "MH", "SUB", "XYZ"],
	"expires_at": "2027-01-01T00:00:00Z", "person_key": "abc",
}

ask(c) := {
	"action": "summary.request", "purpose": "employment_support", "time": "2026-11-22T10:00:00Z",
	"resource": {"person_key": "abc"}, "consent": c,
}

cases := [
	{"name": "active consent", "input": ask(good), "expect": {"problems": [], "categories": ["MH", "SUB"], "sources": ["dwp"]}},
	{"name": "none", "input": ask(object.union(good, {"status": "none"})), "expect": {"problems": ["There is no record of this person's consent."]}},
	{"name": "no consent object", "input": object.remove(ask(good), ["consent"]), "expect": {"problems": ["There is no record of this person's consent."]}},
	{"name": "withdrawn", "input": ask(object.union(good, {"status": "withdrawn"})), "expect": {"problems": ["This person has withdrawn their consent."]}},
	{"name": "expired", "input": ask(object.union(good, {"status": "expired"})), "expect": {"problems": ["This person's consent has expired."]}},
	{"name": "expires at the request time", "input": ask(object.union(good, {"expires_at": "2026-11-22T10:00:00Z"})), "expect": {"problems": ["This person's consent has expired."]}},
	{"name": "no expiry", "input": ask(object.remove(good, ["expires_at"])), "expect": {"problems": ["The consent record has no expiry date."]}},
	{"name": "expiry that is not a time", "input": ask(object.union(good, {"expires_at": "invalid"})), "expect": {"problems": ["The consent record's expiry date is not a valid time."]}},
	{"name": "unknown status", "input": ask(object.union(good, {"status": "maybe"})), "expect": {"problems": ["The consent state 'maybe' is not one this service knows."]}},
	{"name": "other purpose", "input": ask(object.union(good, {"purposes": ["service_planning"]})), "expect": {"problems": ["This person's consent does not cover the purpose 'employment_support'."]}},
	{"name": "other person", "input": ask(object.union(good, {"person_key": "zzz"})), "expect": {"problems": ["The consent given is for a different person."]}},
	{"name": "ingest needs no consent", "input": {"action": "extract.ingest", "time": "2026-11-22T10:00:00Z"}, "expect": {"problems": []}},
]

check_problems_are_as_expected if consent.problems == as_set(input.expect.problems)

check_categories_split_from_sources if not input.expect.categories

check_categories_split_from_sources if {
	consent.categories == as_set(input.expect.categories)
	consent.sources == as_set(input.expect.sources)
}
