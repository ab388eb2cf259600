# The one decision entry point for every action in joinedup: data.joinedup.authz.decision.
#
# Default deny: a request is allowed only when the asker's role grants the action and no rule
# below finds a reason to refuse. Every refusal is a sentence the asker can understand.
#
# `allow` is checked first, with indexed lookups (data.indexes, built from the data documents
# when the bundle loads): each of its lines is the negation of one group of reasons below, so
# an allowed request never works through the list of reasons, and a refused one lists them
# all. tests/policies/test_equivalence.py holds `allow` to "the role grants the action and
# there is no reason to refuse" (as the reference policies decide) over 1,800 generated requests.
package joinedup.authz

import data.joinedup.agreements
import data.joinedup.consent
import data.joinedup.request

default allow := false

allow if {
	request_ok
	not missing_person
	not not_self
	not not_referred
	not unknown_provider
	consent.ok
	agreements.ok
	content_ok
}

# Who asks, for what, why and when are all in order: none of the reasons under those four
# headings below can apply (each line rules out one or more of them).
request_ok if {
	is_string(input.subject.id)
	# The role grants the action, the organisation is of a kind the role acts for, and the
	# purpose is known and allows the action.
	data.indexes.grants[input.subject.role][input.action][input.subject.organisation][request.purpose]
	request.time_valid
}

# A refused request lists every reason that applies. Each group of reasons is only worked
# through when the quick check that rules the whole group out has failed.
reasons contains msg if {
	not request_ok
	some msg in request_reasons
}

reasons contains msg if {
	not consent.ok
	some msg in consent.problems
}

reasons contains msg if {
	not agreements.ok
	some msg in agreements.problems
}

role_grants_action if input.action in request.role.actions

# --- who is asking -----------------------------------------------------------------------

request_reasons contains "The request does not say who is asking." if not asker_named

# OPA evaluates a built-in's arguments before `not`: `not is_string(input.subject.id)` is
# undefined, not true, when input.subject is missing. So every negated test of the input is
# written as `not <rule>`, which is true whenever the rule is undefined, in every engine.
asker_named if is_string(input.subject.id)

request_reasons contains msg if {
	not request.role
	msg := concat("", ["The role '", as_text(object.get(input, ["subject", "role"], "")), "' is not known to this service."])
}

request_reasons contains msg if {
	not request.organisation
	msg := concat("", ["The organisation '", as_text(object.get(input, ["subject", "organisation"], "")), "' is not known to this service."])
}

request_reasons contains msg if {
	not organisation_fits_role
	request.organisation
	msg := concat("", ["Someone from ", request.organisation.name, " cannot act as a ", request.role.title, "."])
}

organisation_fits_role if request.organisation.kind in request.role.organisation_kinds

# A name quoted back in a refusal; anything but a string is shown as empty.
as_text(x) := x if is_string(x)

as_text(x) := "" if not is_string(x)

# --- what they ask to do -----------------------------------------------------------------

request_reasons contains msg if {
	not request.action
	msg := concat("", ["The action '", as_text(object.get(input, "action", "")), "' is not one this service knows."])
}

request_reasons contains msg if {
	request.action
	not role_grants_action
	msg := object.get(request.role.explanations, input.action, generic_refusal)
}

generic_refusal := concat("", ["A ", request.role.title, " may not ", request.action.description, "."])

request_reasons contains "The request has no valid time (expected an ISO 8601 UTC time)." if not request.time_valid

# --- why ---------------------------------------------------------------------------------

request_reasons contains "The request does not say what it is for (its purpose)." if {
	request.action
	not request.purpose
}

request_reasons contains msg if {
	not data.purposes[request.purpose]
	msg := concat("", ["The purpose '", request.purpose, "' is not one this service knows."])
}

request_reasons contains msg if {
	not purpose_allows_action
	request.action
	msg := concat("", ["The purpose '", request.purpose, "' does not allow anyone to ", request.action.description, "."])
}

purpose_allows_action if input.action in data.purposes[request.purpose].actions

# --- about whom --------------------------------------------------------------------------

reasons contains "The request does not name the person it is about." if missing_person

missing_person if {
	request.action.person_level
	not person_named
}

person_named if is_string(input.resource.person_key)

# A citizen acts only for themselves.
reasons contains "You can only ask about, or give consent for, yourself." if not_self

not_self if {
	input.subject.role == "citizen"
	request.action.person_level
	not same_person
}

same_person if {
	is_string(input.subject.person_key)
	input.subject.person_key == input.resource.person_key
}

# A provider sees only the people referred to it.
reasons contains "Your organisation has not been referred this person." if not_referred

not_referred if {
	request.action.needs_referral
	not referred
}

referred if input.subject.organisation in input.resource.referred_to

reasons contains msg if {
	unknown_provider
	msg := concat("", ["'", as_text(object.get(input, ["resource", "provider"], "")), "' is not a provider this service knows."])
}

unknown_provider if {
	request.action.names_provider
	not known_provider
}

known_provider if data.organisations[input.resource.provider].kind == "provider"

# --- consent and agreements ----------------------------------------------------------------

reasons contains "Nothing you asked for is covered by both the person's consent and a data-sharing agreement." if {
	request.action.discloses_content
	consent_and_agreements_in_order
	count(visible_categories) == 0
}

reasons contains "None of the agencies is covered by both the person's consent and a data-sharing agreement." if {
	request.action.discloses_content
	consent_and_agreements_in_order
	count(visible_sources) == 0
}

# Neither consent nor the agreements give a reason to refuse. The quick checks say so exactly
# once the request itself is in order; otherwise count the reasons.
consent_and_agreements_in_order if {
	request_ok
	consent.ok
	agreements.ok
}

consent_and_agreements_in_order if {
	not request_ok
	count(consent.problems) == 0
	count(agreements.problems) == 0
}

# On the fast path consent and agreements are already known to be in order.
content_ok if not request.action.discloses_content

content_ok if {
	request.action.discloses_content
	count(visible_categories) > 0
	count(visible_sources) > 0
}

# --- obligations: what the recipient may see -----------------------------------------------

# Sets here are objects keyed by their members, narrowed with object.filter (one built-in call
# instead of a Rego loop). The agreements' categories and sources are all known to the service
# (the data is validated on load), so they need no separate check against data.categories.
visible_categories := object.filter(asked_categories, input.consent.categories) if {
	is_array(input.consent.categories)
} else := object.filter(asked_categories, consent_set)

visible_sources := object.filter(asked_sources, input.consent.categories) if {
	is_array(input.consent.categories)
} else := object.filter(asked_sources, consent_set)

# The consent's list when it is not an array: its members as a set (empty if it has none).
consent_set := {c | some c in input.consent.categories}

# What the agreements cover of what was asked for. Nothing asked means everything; the
# agreements name only categories and sources the service knows (the data is validated).
asked_categories := object.filter(agreements.categories, input.resource.categories) if {
	request.categories_listed
} else := object.filter(agreements.categories, request.requested_categories) if {
	count(request.stated_categories) > 0
} else := agreements.categories

asked_sources := object.filter(agreements.sources, input.resource.sources) if {
	request.sources_listed
} else := object.filter(agreements.sources, request.requested_sources) if {
	count(request.stated_sources) > 0
} else := agreements.sources

withheld_reason(c) := "not a category this service knows" if {
	not data.categories[c]
} else := "not covered by the person's consent" if {
	not consented(c)
} else := "not covered by a data-sharing agreement in force"

consented(c) if c in input.consent.categories

withheld := {c: withheld_reason(c) | some c in request.requested_categories - object.keys(visible_categories)}

obligations := {
	"categories": sort(object.keys(visible_categories)),
	"sources": sort(object.keys(visible_sources)),
	"withheld_categories": withheld,
} if {
	request.action.discloses_content
} else := {
	"categories": sort(object.keys(asked_categories)),
	"suppression_threshold": data.disclosure.suppression_threshold,
	"rounding_base": data.disclosure.rounding_base,
} if {
	request.action.aggregate
} else := {}

# --- the decision --------------------------------------------------------------------------

decision := {"allow": true, "reasons": [], "obligations": obligations} if {
	allow
} else := {"allow": false, "reasons": sort(reasons), "obligations": {}}
