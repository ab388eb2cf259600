# Table-driven tests of the data-sharing agreement checks, against the shipped agreements
# (dsa-thanet-employment-2026 runs 2026-01-01..2027-12-31; dsa-thanet-pilot-2025 has ended).
package joinedup.agreements_test

import data.joinedup.agreements

# Compare as sets: regopy 1.5.2 finds a computed array unequal to an input array with the same
# elements, so array results are checked as sets (sorting is checked by the Python tests).
as_set(a) := {x | some x in a}

ask(org, time) := {
	"subject": {"id": "u", "role": "adviser", "organisation": org},
	"action": "summary.request", "purpose": "employment_support", "time": time,
	"resource": {"person_key": "p"},
}

refer(provider, time) := object.union(ask("csc-margate", time), {
	"action": "referral.create", "resource": {"person_key": "p", "provider": provider},
})

cases := [
	{"name": "in force", "input": ask("csc-margate", "2026-06-01T00:00:00Z"), "expect": {"in_force": ["dsa-thanet-employment-2026"], "problems": []}},
	{"name": "first day", "input": ask("csc-margate", "2026-01-01T00:00:00Z"), "expect": {"in_force": ["dsa-thanet-employment-2026"], "problems": []}},
	{"name": "last day", "input": ask("csc-margate", "2027-12-31T23:59:59Z"), "expect": {"in_force": ["dsa-thanet-employment-2026"], "problems": []}},
	{"name": "day after", "input": ask("csc-margate", "2028-01-01T00:00:00Z"), "expect": {"in_force": [], "problems": ["The data-sharing agreement 'dsa-thanet-employment-2026' expired on 2027-12-31.", "The data-sharing agreement 'dsa-thanet-pilot-2025' expired on 2025-12-31."]}},
	{"name": "pilot was in force in 2025", "input": refer("provider-c", "2025-06-01T00:00:00Z"), "expect": {"in_force": ["dsa-thanet-pilot-2025"], "problems": []}},
	{"name": "pilot has ended", "input": refer("provider-c", "2026-06-01T00:00:00Z"), "expect": {"in_force": [], "problems": ["The data-sharing agreement 'dsa-thanet-pilot-2025' expired on 2025-12-31."]}},
	{"name": "not a party", "input": ask("governance-board", "2026-06-01T00:00:00Z"), "expect": {"in_force": [], "problems": ["No data-sharing agreement covers governance-board for the purpose 'employment_support'."]}},
	{"name": "before any agreement", "input": ask("csc-margate", "2024-06-01T00:00:00Z"), "expect": {"in_force": [], "problems": ["The data-sharing agreement 'dsa-thanet-employment-2026' starts on 2026-01-01.", "The data-sharing agreement 'dsa-thanet-pilot-2025' starts on 2025-01-01."]}},
]

check_agreements_in_force if agreements.in_force == as_set(input.expect.in_force)

check_agreement_problems if agreements.problems == as_set(input.expect.problems)

check_shipped_agreements_state_their_lawful_basis if {
	every _, a in data.agreements {
		a.lawful_basis.uk_gdpr_article_6 != ""
		a.lawful_basis.uk_gdpr_article_9 != ""
		a.lawful_basis.digital_economy_act_2017 != ""
	}
}
