# What a request asks for, normalised once for the other policies.
#
# The engine (policies/engine.py) normalises input.time to UTC "YYYY-MM-DDTHH:MM:SSZ" before
# evaluation, so times and ISO dates compare correctly as strings in every Rego engine.
package joinedup.request

# The action's definition in data.actions; undefined for an unknown action.
action := data.actions[input.action]

# The role's definition in data.roles; undefined for an unknown role.
role := data.roles[input.subject.role]

# The organisation the subject acts for; undefined if unknown.
organisation := data.organisations[input.subject.organisation]

# The stated purpose, else the action's default. Only actions that never disclose a person's
# barriers have a default; the others must state their purpose.
purpose := input.purpose if {
	is_string(input.purpose)
} else := action.default_purpose

# The engine has already normalised the time; this only guards against a missing one.
time_valid if {
	count(input.time) == 20
	endswith(input.time, "Z")
}

# The calendar date of the request (agreements run from/to whole days).
date := substring(input.time, 0, 10) if time_valid

# Barrier categories asked for: those named, else every category the service knows.
stated_categories := {c | some c in input.resource.categories}

requested_categories := stated_categories if {
	count(stated_categories) > 0
} else := object.keys(data.categories)

# Agency kinds asked for: those named, else every kind the service knows.
stated_sources := {s | some s in input.resource.sources}

requested_sources := stated_sources if {
	count(stated_sources) > 0
} else := object.keys(data.sources)

# Whether the categories or sources asked for came as a non-empty list (the usual form).
categories_listed if {
	is_array(input.resource.categories)
	count(input.resource.categories) > 0
}

sources_listed if {
	is_array(input.resource.sources)
	count(input.resource.sources) > 0
}
