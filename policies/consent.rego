# Whether the person's consent lets this request go ahead, and what it covers.
#
# input.consent is what consent.ConsentStore.current(person_key, purpose, at) returned: its
# status is already derived from the append-only history; this policy checks it again against
# the request (purpose, person, expiry) so a stale or mismatched consent object cannot pass.
package joinedup.consent

import data.joinedup.request

# Consent is needed for any action that discloses something about one person.
needed if request.action.needs_consent

known_statuses := {"active", "withdrawn", "expired", "none"}

status := input.consent.status if {
	is_string(input.consent.status)
} else := "none"

problems contains "There is no record of this person's consent." if {
	needed
	status == "none"
}

problems contains "This person has withdrawn their consent." if {
	needed
	status == "withdrawn"
}

problems contains "This person's consent has expired." if {
	needed
	status == "expired"
}

problems contains "This person's consent has expired." if {
	needed
	status == "active"
	input.consent.expires_at <= input.time
}

problems contains "The consent record has no expiry date." if {
	needed
	status == "active"
	not has_expiry
}

# (`not <rule>` rather than `not is_string(...)`: see asker_named in authz.rego.)
has_expiry if is_string(input.consent.expires_at)

# The engine writes an expiry it cannot read as "invalid"; that must not pass for a time.
problems contains "The consent record's expiry date is not a valid time." if {
	needed
	status == "active"
	is_string(input.consent.expires_at)
	not expiry_well_formed
}

expiry_well_formed if {
	count(input.consent.expires_at) == 20
	endswith(input.consent.expires_at, "Z")
}

problems contains msg if {
	needed
	not status in known_statuses
	msg := concat("", ["The consent state '", status, "' is not one this service knows."])
}

problems contains msg if {
	needed
	status == "active"
	not purpose_consented
	msg := concat("", ["This person's consent does not cover the purpose '", request.purpose, "'."])
}

purpose_consented if request.purpose in input.consent.purposes

problems contains "The consent given is for a different person." if {
	needed
	other_person
}

other_person if {
	is_string(input.consent.person_key)
	input.consent.person_key != input.resource.person_key
}

# What the decision checks on its fast path: true exactly when `problems` is empty, for a
# request with a known purpose (which the decision checks first). Each line is the negation of
# one problem above; the equivalence tests hold the two together.
ok if not needed

ok if {
	needed
	input.consent.status == "active"
	is_string(input.consent.expires_at)
	expiry_well_formed
	not input.consent.expires_at <= input.time
	purpose_consented
	not other_person
}

# Barrier categories and agency kinds the consent covers (its categories list holds both).
categories := {c | some c in input.consent.categories; data.categories[c]}

sources := {s | some s in input.consent.categories; data.sources[s]}
