# Table-driven tests of request normalisation (check_ rules run per row by policies/testing.py; test_ rules by `opa test`, in policies/opa_tests/).
package joinedup.request_test

import data.joinedup.request

# Compare as sets: regopy 1.5.2 finds a computed array unequal to an input array with the same
# elements, so array results are checked as sets (sorting is checked by the Python tests).
as_set(a) := {x | some x in a}

cases := [
	{"name": "stated purpose", "input": {"action": "summary.request", "purpose": "employment_support", "time": "2026-11-22T10:00:00Z"}, "expect": {"purpose": "employment_support", "date": "2026-11-22"}},
	{"name": "ingest default purpose", "input": {"action": "extract.ingest", "time": "2026-11-22T10:00:00Z"}, "expect": {"purpose": "linkage_operations", "date": "2026-11-22"}},
	{"name": "area counts default purpose", "input": {"action": "area_counts.read"}, "expect": {"purpose": "service_planning", "date": null}},
	{"name": "summary has no default purpose", "input": {"action": "summary.request", "time": "yesterday"}, "expect": {"purpose": null, "date": null}},
	{"name": "named categories", "input": {"resource": {"categories": ["MH"]}}, "expect": {"categories": ["MH"]}},
	{"name": "all categories by default", "input": {"resource": {}}, "expect": {"categories": ["CAR", "CLV", "DIS", "FAM", "FIN", "HOU", "MH", "OFF", "PH", "SKL", "SUB", "WRK"]}},
]


check_purpose if not "purpose" in object.keys(input.expect)

check_purpose if request.purpose == input.expect.purpose

check_purpose if {
	input.expect.purpose == null
	not request.purpose
}

check_date if not "date" in object.keys(input.expect)

check_date if request.date == input.expect.date

check_date if {
	input.expect.date == null
	not request.date
}

check_requested_categories if not input.expect.categories

check_requested_categories if request.requested_categories == as_set(input.expect.categories)
