# OPA's own test runner (`opa test`) for agreements_test.rego.
#
# Each test_ rule holds when its check_ rule in agreements_test.rego holds for every row of `cases`
# (input = the row's "input" plus {"expect": row.expect}); a failure prints the names of the
# rows that failed. The check_ rules are also what policies/testing.py runs row by row through
# regopy, which aborts on `with input as` once rules depend on other rules: this file lives
# outside policies/*.rego so that regopy never loads it.
package joinedup.agreements_test

import data.joinedup.testing

test_agreements_in_force if testing.all_passed({row.name | some row in cases; not check_agreements_in_force with input as testing.row_input(row)})

test_agreement_problems if testing.all_passed({row.name | some row in cases; not check_agreement_problems with input as testing.row_input(row)})

test_shipped_agreements_state_their_lawful_basis if testing.all_passed({row.name | some row in cases; not check_shipped_agreements_state_their_lawful_basis with input as testing.row_input(row)})
