# Helpers of the table-driven tests under `opa test` (see the *_cases_test.rego files here).
package joinedup.testing

# A row of a `cases` table as the policy input: the row's input plus its expectations.
row_input(row) := object.union(row.input, {"expect": row.expect})

# True when no row failed; otherwise false, printing the failed rows' names (`opa test` shows
# what a failing test printed).
all_passed(failed) if count(failed) == 0

all_passed(failed) := false if {
	count(failed) > 0
	print("failed for:", failed)
}
