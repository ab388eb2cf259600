# Which data-sharing agreements cover a request, and what they let the parties share.
#
# An agreement covers a request when every organisation involved is a party, the purpose is
# one of its purposes, and the request's date falls within valid_from..valid_to (inclusive).
package joinedup.agreements

import data.joinedup.request

needed if request.action.needs_agreement

# The organisations that must all be parties: the asker, and the provider a referral names.
parties contains input.subject.organisation

parties contains input.resource.provider if request.action.names_provider

applicable contains id if {
	purpose := request.purpose
	some id, agreement in data.agreements
	every party in parties {
		party in agreement.parties
	}
	purpose in agreement.purposes
}

in_force contains id if {
	date := request.date
	some id in applicable
	agreement := data.agreements[id]
	agreement.valid_from <= date
	date <= agreement.valid_to
}

# The parties named in a refusal (a party that is not a name cannot be shown).
named_parties := {p | some p in parties; is_string(p)}

problems contains msg if {
	needed
	count(applicable) == 0
	msg := concat("", ["No data-sharing agreement covers ", concat(" and ", sort(named_parties)), " for the purpose '", request.purpose, "'."])
}

problems contains msg if {
	needed
	count(in_force) == 0
	some id in applicable
	data.agreements[id].valid_to < request.date
	msg := concat("", ["The data-sharing agreement '", id, "' expired on ", data.agreements[id].valid_to, "."])
}

problems contains msg if {
	needed
	count(in_force) == 0
	some id in applicable
	request.date < data.agreements[id].valid_from
	msg := concat("", ["The data-sharing agreement '", id, "' starts on ", data.agreements[id].valid_from, "."])
}

# Actions that move data but disclose no one's barriers (ingest, linkage) must have every
# named source covered; disclosing actions instead have uncovered sources withheld.
problems contains msg if {
	needed
	not request.action.discloses_content
	count(in_force) > 0
	some source in request.stated_sources
	not source in sources
	msg := concat("", ["No data-sharing agreement in force covers data from '", source, "'."])
}

categories := {c | some id in in_force; some c in data.agreements[id].categories}

sources := {s | some id in in_force; some s in data.agreements[id].sources}
