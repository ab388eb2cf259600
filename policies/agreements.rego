# Which data-sharing agreements cover a request, and what they let the parties share.
#
# An agreement covers a request when every organisation involved is a party, the purpose is
# one of its purposes, and the request's date falls within valid_from..valid_to (inclusive).
# data.indexes (built from data.agreements when the bundle loads) lists the agreements by
# party and purpose, so the common request finds its agreements by key instead of scanning.
package joinedup.agreements

import data.joinedup.request

needed if request.action.needs_agreement

# The organisations that must all be parties: the asker, and the provider a referral names.
parties contains input.subject.organisation

parties contains input.resource.provider if provider_party

provider_party if {
	request.action.names_provider
	_ := input.resource.provider
}

# The agreements that apply (every party named, the purpose listed): id -> [valid_from, valid_to].
default covering := {}

covering := data.indexes.agreements_for[input.subject.organisation][request.purpose] if {
	is_string(input.subject.organisation)
	not provider_party
} else := object.filter(
	data.indexes.agreements_for[input.subject.organisation][request.purpose],
	object.keys(data.indexes.agreements_for[input.resource.provider][request.purpose]),
) if {
	is_string(input.subject.organisation)
	provider_party
} else := {id: [a.valid_from, a.valid_to] | some id in scanned; a := data.agreements[id]} if {
	not asker_named
}

# (`not <rule>` rather than `not is_string(...)`: see asker_named in authz.rego.)
asker_named if is_string(input.subject.organisation)

# Without a named asker, every agreement for the purpose naming the other parties applies.
scanned contains id if {
	purpose := request.purpose
	some id, agreement in data.agreements
	every party in parties {
		party in agreement.parties
	}
	purpose in agreement.purposes
}

applicable := object.keys(covering)

in_force contains id if {
	date := request.date
	some id, span in covering
	span[0] <= date
	date <= span[1]
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
	uncovered_source
	some source in request.stated_sources
	not sources[source]
	msg := concat("", ["No data-sharing agreement in force covers data from '", source, "'."])
}

uncovered_source if {
	needed
	not request.action.discloses_content
	count(in_force) > 0
	some source in request.stated_sources
	not sources[source]
}

# What the decision checks on its fast path: true exactly when `problems` is empty, for a
# request with a known purpose and a valid time (which the decision checks first).
ok if not needed

ok if {
	needed
	count(in_force) > 0
	not uncovered_source
}

# Barrier categories and agency kinds the agreements in force cover, as objects keyed by name.
# Usually one agreement is in force: its own objects are used as they are.
default categories := {}

categories := data.indexes.agreements[id].categories if {
	count(in_force) == 1
	some id in in_force
} else := object.union_n([data.indexes.agreements[id].categories | some id in in_force]) if {
	count(in_force) > 1
}

default sources := {}

sources := data.indexes.agreements[id].sources if {
	count(in_force) == 1
	some id in in_force
} else := object.union_n([data.indexes.agreements[id].sources | some id in in_force]) if {
	count(in_force) > 1
}
