# REFERENCE COPY (tests only): the policies as they were before the indexed fast path, kept
# as the specification the shipped policies are checked against in test_equivalence.py. One
# change from that version: names quoted back in refusals go through as_text (and, in
# agreements.rego, named_parties), so a refusal still has its reason when a name is not a
# string (before, concat failed and a governance member with a numeric organisation could
# verify the audit ledger: fail-open).
#
# The one decision entry point for every action in joinedup: data.joinedup.authz.decision.
#
# Default deny: a request is allowed only when the asker's role grants the action and no rule
# below finds a reason to refuse. Every refusal is a sentence the asker can understand.
package joinedup.authz

import data.joinedup.agreements
import data.joinedup.consent
import data.joinedup.request

default allow := false

allow if {
	role_grants_action
	count(reasons) == 0
}

role_grants_action if input.action in request.role.actions

# --- who is asking -----------------------------------------------------------------------

reasons contains "The request does not say who is asking." if not is_string(input.subject.id)

reasons contains msg if {
	not request.role
	msg := concat("", ["The role '", as_text(object.get(input, ["subject", "role"], "")), "' is not known to this service."])
}

reasons contains msg if {
	not request.organisation
	msg := concat("", ["The organisation '", as_text(object.get(input, ["subject", "organisation"], "")), "' is not known to this service."])
}

reasons contains msg if {
	not request.organisation.kind in request.role.organisation_kinds
	request.organisation
	msg := concat("", ["Someone from ", request.organisation.name, " cannot act as a ", request.role.title, "."])
}

as_text(x) := x if is_string(x)

as_text(x) := "" if not is_string(x)

# --- what they ask to do -----------------------------------------------------------------

reasons contains msg if {
	not request.action
	msg := concat("", ["The action '", as_text(object.get(input, "action", "")), "' is not one this service knows."])
}

reasons contains msg if {
	request.action
	not role_grants_action
	msg := object.get(request.role.explanations, input.action, generic_refusal)
}

generic_refusal := concat("", ["A ", request.role.title, " may not ", request.action.description, "."])

reasons contains "The request has no valid time (expected an ISO 8601 UTC time)." if not request.time_valid

# --- why ---------------------------------------------------------------------------------

reasons contains "The request does not say what it is for (its purpose)." if {
	request.action
	not request.purpose
}

reasons contains msg if {
	not data.purposes[request.purpose]
	msg := concat("", ["The purpose '", request.purpose, "' is not one this service knows."])
}

reasons contains msg if {
	not input.action in data.purposes[request.purpose].actions
	request.action
	msg := concat("", ["The purpose '", request.purpose, "' does not allow anyone to ", request.action.description, "."])
}

# --- about whom --------------------------------------------------------------------------

reasons contains "The request does not name the person it is about." if {
	request.action.person_level
	not is_string(input.resource.person_key)
}

# A citizen acts only for themselves.
reasons contains "You can only ask about, or give consent for, yourself." if {
	input.subject.role == "citizen"
	request.action.person_level
	not same_person
}

same_person if {
	is_string(input.subject.person_key)
	input.subject.person_key == input.resource.person_key
}

# A provider sees only the people referred to it.
reasons contains "Your organisation has not been referred this person." if {
	request.action.needs_referral
	not input.subject.organisation in input.resource.referred_to
}

reasons contains msg if {
	request.action.names_provider
	not data.organisations[input.resource.provider].kind == "provider"
	msg := concat("", ["'", as_text(object.get(input, ["resource", "provider"], "")), "' is not a provider this service knows."])
}

# --- consent and agreements ----------------------------------------------------------------

reasons contains msg if some msg in consent.problems

reasons contains msg if some msg in agreements.problems

reasons contains "Nothing you asked for is covered by both the person's consent and a data-sharing agreement." if {
	request.action.discloses_content
	count(consent.problems) == 0
	count(agreements.problems) == 0
	count(visible_categories) == 0
}

reasons contains "None of the agencies is covered by both the person's consent and a data-sharing agreement." if {
	request.action.discloses_content
	count(consent.problems) == 0
	count(agreements.problems) == 0
	count(visible_sources) == 0
}

# --- obligations: what the recipient may see -----------------------------------------------

visible_categories := {c |
	some c in request.requested_categories
	data.categories[c]
	c in consent.categories
	c in agreements.categories
}

visible_sources := {s |
	some s in request.requested_sources
	data.sources[s]
	s in consent.sources
	s in agreements.sources
}

withheld_reason(c) := "not a category this service knows" if {
	not data.categories[c]
} else := "not covered by the person's consent" if {
	not c in consent.categories
} else := "not covered by a data-sharing agreement in force"

withheld := {c: withheld_reason(c) |
	some c in request.requested_categories
	not c in visible_categories
}

aggregate_categories := {c |
	some c in request.requested_categories
	data.categories[c]
	c in agreements.categories
}

obligations := {
	"categories": sort(visible_categories),
	"sources": sort(visible_sources),
	"withheld_categories": withheld,
} if request.action.discloses_content

obligations := {
	"categories": sort(aggregate_categories),
	"suppression_threshold": data.disclosure.suppression_threshold,
	"rounding_base": data.disclosure.rounding_base,
} if request.action.aggregate

obligations := {} if {
	not request.action.discloses_content
	not request.action.aggregate
}

obligations := {} if not request.action

# --- the decision --------------------------------------------------------------------------

decision := {"allow": true, "reasons": [], "obligations": obligations} if allow

decision := {"allow": false, "reasons": sort(reasons), "obligations": {}} if not allow
