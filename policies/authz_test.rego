# Table-driven tests of the decision entry point (data.joinedup.authz.decision).
#
# Each row of `cases` is one request. The runner (policies/testing.py, `joinedup policy test`)
# sets input to the row's "input" plus its "expect" and evaluates every check_ rule. We do not
# use `with input as`: regopy 1.5.2 crashes on it once rules depend on other rules.
package joinedup.authz_test

import data.joinedup.authz

# Compare as sets: regopy 1.5.2 finds a computed array unequal to an input array with the same
# elements, so array results are checked as sets (sorting is checked by the Python tests).
as_set(a) := {x | some x in a}

now := "2026-11-22T10:00:00Z"

person := "5f1c0a9e7b3d4c2a8e6f0b1d3c5a7e9f"

active_consent := {
	"status": "active", "purposes": ["employment_support"],
	"categories": ["dwp", "council", "nhs", "housing", "MH", "HOU", "FIN"],
	"receipt_id": "r-1", "expires_at": "2027-11-22T10:00:00Z", "person_key": person,
}

adviser := {"id": "u-adv", "role": "adviser", "organisation": "csc-margate"}

provider_a := {"id": "u-prov", "role": "provider", "organisation": "provider-a"}

governance := {"id": "u-gov", "role": "governance", "organisation": "governance-board"}

officer := {"id": "u-do", "role": "data_officer", "organisation": "linkage-unit"}

admin := {"id": "u-adm", "role": "admin", "organisation": "joinedup-ops"}

citizen := {"id": "c-1", "role": "citizen", "organisation": "public", "person_key": person}

summary := {
	"subject": adviser, "action": "summary.request", "purpose": "employment_support",
	"resource": {"person_key": person, "categories": ["MH", "SUB", "HOU"]},
	"consent": active_consent, "time": now,
}

consent_is(changes) := object.union(summary, {"consent": object.union(active_consent, changes)})

asking(subject, action) := object.union(summary, {"subject": subject, "action": action})

referral_read(referred) := {
	"subject": provider_a, "action": "referral.read", "purpose": "employment_support",
	"resource": {"person_key": person, "categories": ["HOU", "FIN"], "referred_to": referred},
	"consent": active_consent, "time": now,
}

referral_create(provider) := object.union(summary, {
	"action": "referral.create",
	"resource": {"person_key": person, "provider": provider, "categories": ["HOU"]},
})

simple(subject, action) := {"subject": subject, "action": action, "time": now, "resource": {"sources": ["dwp"]}}

deny(reason) := {"allow": false, "reason": reason}

cases := [
	{"name": "adviser with active consent: SUB withheld by obligation", "input": summary, "expect": {
		"allow": true, "categories": ["HOU", "MH"], "withheld": ["SUB"],
		"sources": ["council", "dwp", "housing", "nhs"],
	}},
	{"name": "adviser, no consent", "input": consent_is({"status": "none"}),
	 "expect": deny("There is no record of this person's consent.")},
	{"name": "adviser, consent object missing", "input": object.remove(summary, ["consent"]),
	 "expect": deny("There is no record of this person's consent.")},
	{"name": "adviser, expired consent", "input": consent_is({"status": "expired"}),
	 "expect": deny("This person's consent has expired.")},
	{"name": "adviser, consent past its expiry time", "input": consent_is({"expires_at": "2026-11-01T00:00:00Z"}),
	 "expect": deny("This person's consent has expired.")},
	{"name": "adviser, consent for another purpose", "input": consent_is({"purposes": ["service_planning"]}),
	 "expect": deny("This person's consent does not cover the purpose 'employment_support'.")},
	{"name": "adviser, after withdrawal", "input": consent_is({"status": "withdrawn"}),
	 "expect": deny("This person has withdrawn their consent.")},
	{"name": "adviser, someone else's consent", "input": consent_is({"person_key": "ffff"}),
	 "expect": deny("The consent given is for a different person.")},
	{"name": "adviser, consent covers none of the categories", "input": consent_is({"categories": ["dwp", "SKL"]}),
	 "expect": deny("Nothing you asked for is covered by both the person's consent and a data-sharing agreement.")},
	{"name": "adviser, consent covers only DWP", "input": consent_is({"categories": ["dwp", "MH", "HOU"]}),
	 "expect": {"allow": true, "sources": ["dwp"], "categories": ["HOU", "MH"]}},
	{"name": "governance asks for a summary", "input": asking(governance, "summary.request"),
	 "expect": deny("The governance board sees area counts and audit reports, never an individual's summary.")},
	{"name": "provider asks for a summary", "input": asking(provider_a, "summary.request"),
	 "expect": deny("Providers see only the referral summaries of people referred to them.")},
	{"name": "data officer asks for a summary", "input": asking(officer, "summary.request"),
	 "expect": deny("Data officers work on encodings only and never see a person's barriers.")},
	{"name": "admin asks for a summary", "input": asking(admin, "summary.request"), "expect": {"allow": false}},
	{"name": "provider reads its referral", "input": referral_read(["provider-a"]),
	 "expect": {"allow": true, "categories": ["FIN", "HOU"]}},
	{"name": "provider reads someone not referred to it", "input": referral_read(["provider-b"]),
	 "expect": deny("Your organisation has not been referred this person.")},
	{"name": "provider reads with no referral list", "input": object.union(referral_read([]), {"resource": {"person_key": person}}),
	 "expect": deny("Your organisation has not been referred this person.")},
	{"name": "adviser refers to a known provider", "input": referral_create("provider-a"),
	 "expect": {"allow": true, "categories": ["HOU"]}},
	{"name": "adviser refers to an unknown provider", "input": referral_create("provider-z"),
	 "expect": deny("'provider-z' is not a provider this service knows.")},
	{"name": "adviser refers under an expired agreement", "input": referral_create("provider-c"),
	 "expect": deny("The data-sharing agreement 'dsa-thanet-pilot-2025' expired on 2025-12-31.")},
	{"name": "adviser after the agreement expired", "input": object.union(summary, {
		"time": "2028-01-02T09:00:00Z", "consent": object.union(active_consent, {"expires_at": "2029-01-01T00:00:00Z"}),
	}), "expect": deny("The data-sharing agreement 'dsa-thanet-employment-2026' expired on 2027-12-31.")},
	{"name": "unknown role", "input": asking({"id": "x", "role": "superuser", "organisation": "csc-margate"}, "summary.request"),
	 "expect": deny("The role 'superuser' is not known to this service.")},
	{"name": "unknown action", "input": object.union(summary, {"action": "summary.delete"}),
	 "expect": deny("The action 'summary.delete' is not one this service knows.")},
	{"name": "unknown organisation", "input": asking({"id": "x", "role": "adviser", "organisation": "acme"}, "summary.request"),
	 "expect": deny("The organisation 'acme' is not known to this service.")},
	{"name": "no subject", "input": object.remove(summary, ["subject"]),
	 "expect": deny("The request does not say who is asking.")},
	{"name": "empty request", "input": {}, "expect": {"allow": false}},
	{"name": "no time", "input": object.remove(summary, ["time"]),
	 "expect": deny("The request has no valid time (expected an ISO 8601 UTC time).")},
	{"name": "no purpose for a summary", "input": object.remove(summary, ["purpose"]),
	 "expect": deny("The request does not say what it is for (its purpose).")},
	{"name": "adviser from a provider organisation", "input": asking({"id": "u", "role": "adviser", "organisation": "provider-a"}, "summary.request"),
	 "expect": deny("Someone from Lead provider A (fictional) cannot act as a Citizen Support adviser.")},
	{"name": "data officer ingests", "input": simple(officer, "extract.ingest"), "expect": {"allow": true}},
	{"name": "data officer ingests an uncovered source", "input": object.union(simple(officer, "extract.ingest"), {"resource": {"sources": ["probation"]}}),
	 "expect": deny("No data-sharing agreement in force covers data from 'probation'.")},
	{"name": "data officer links", "input": simple(officer, "linkage.run"), "expect": {"allow": true}},
	{"name": "data officer rolls back to an earlier run", "input": simple(officer, "linkage.rollback"), "expect": {"allow": true}},
	{"name": "governance rolls back a run", "input": simple(governance, "linkage.rollback"),
	 "expect": deny("A governance board member may not make an earlier link run current again.")},
	{"name": "data officer reads a link report", "input": simple(officer, "linkage.report.read"), "expect": {"allow": true}},
	{"name": "data officer reviews a candidate pair", "input": simple(officer, "linkage.review"), "expect": {"allow": true}},
	{"name": "governance reviews a candidate pair", "input": simple(governance, "linkage.review"), "expect": {"allow": false}},
	{"name": "adviser reviews a candidate pair", "input": simple(adviser, "linkage.review"), "expect": {"allow": false}},
	{"name": "data officer reads area counts", "input": simple(officer, "area_counts.read"), "expect": {"allow": false}},
	{"name": "governance reads area counts", "input": simple(governance, "area_counts.read"),
	 "expect": {"allow": true, "suppression_threshold": 8, "rounding_base": 5}},
	{"name": "governance verifies the ledger", "input": simple(governance, "audit.verify"), "expect": {"allow": true}},
	{"name": "governance reads audit reports", "input": simple(governance, "audit.report.read"), "expect": {"allow": true}},
	{"name": "governance ingests", "input": simple(governance, "extract.ingest"), "expect": {"allow": false}},
	{"name": "admin manages users", "input": simple(admin, "users.manage"), "expect": {"allow": true}},
	{"name": "adviser manages users", "input": simple(adviser, "users.manage"), "expect": {"allow": false}},
	{"name": "citizen: own subject access", "input": object.union(simple(citizen, "audit.subject_access"), {"resource": {"person_key": person}}),
	 "expect": {"allow": true}},
	{"name": "citizen: someone else's subject access", "input": object.union(simple(citizen, "audit.subject_access"), {"resource": {"person_key": "0000"}}),
	 "expect": deny("You can only ask about, or give consent for, yourself.")},
	{"name": "an organisation that is not a name is refused with a reason", "input": simple({"id": "g", "role": "governance", "organisation": 5}, "audit.verify"),
	 "expect": deny("The organisation '' is not known to this service.")},
	{"name": "adviser refers to a provider that is not a name", "input": referral_create(9),
	 "expect": deny("'' is not a provider this service knows.")},
	# Under OPA these three were allowed before the policies stopped negating built-in calls on
	# input that may be missing (`not x in input.resource.referred_to` is undefined, not true,
	# in OPA when referred_to is missing); regopy refused them.
	{"name": "provider reads with no referral list at all", "input": {
		"subject": provider_a, "action": "referral.read", "purpose": "employment_support",
		"resource": {"person_key": person, "categories": ["HOU"]}, "consent": active_consent, "time": now,
	}, "expect": deny("Your organisation has not been referred this person.")},
	{"name": "adviser refers without naming a provider", "input": object.union(summary, {"action": "referral.create"}),
	 "expect": deny("'' is not a provider this service knows.")},
	{"name": "consent that lists no purposes", "input": object.union(object.remove(summary, ["consent"]), {"consent": object.remove(active_consent, ["purposes"])}),
	 "expect": deny("This person's consent does not cover the purpose 'employment_support'.")},
	{"name": "citizen records own consent", "input": object.union(simple(citizen, "consent.record"), {"purpose": "employment_support", "resource": {"person_key": person}}),
	 "expect": {"allow": true}},
]

check_allow_is_as_expected if authz.decision.allow == input.expect.allow

check_denial_says_why if authz.decision.allow

check_denial_says_why if count(authz.decision.reasons) > 0

check_expected_reason_given if not input.expect.reason

check_expected_reason_given if input.expect.reason in authz.decision.reasons

check_visible_categories if not input.expect.categories

check_visible_categories if as_set(authz.decision.obligations.categories) == as_set(input.expect.categories)

check_withheld_categories if not input.expect.withheld

check_withheld_categories if {
	every c in input.expect.withheld {
		not c in authz.decision.obligations.categories
		authz.decision.obligations.withheld_categories[c]
	}
}

check_visible_sources if not input.expect.sources

check_visible_sources if as_set(authz.decision.obligations.sources) == as_set(input.expect.sources)

check_suppression if not input.expect.suppression_threshold

check_suppression if {
	authz.decision.obligations.suppression_threshold == input.expect.suppression_threshold
	authz.decision.obligations.rounding_base == input.expect.rounding_base
}

check_denied_decisions_carry_no_obligations if authz.decision.allow

check_denied_decisions_carry_no_obligations if authz.decision.obligations == {}
