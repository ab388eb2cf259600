# OPA's own test runner (`opa test`) for consent_test.rego.
#
# Each test_ rule holds when its check_ rule in consent_test.rego holds for every row of `cases`
# (input = the row's "input" plus {"expect": row.expect}); a failure prints the names of the
# rows that failed. The check_ rules are also what policies/testing.py runs row by row through
# regopy, which aborts on `with input as` once rules depend on other rules: this file lives
# outside policies/*.rego so that regopy never loads it.
package joinedup.consent_test

import data.joinedup.testing

test_problems_are_as_expected if testing.all_passed({row.name | some row in cases; not check_problems_are_as_expected with input as testing.row_input(row)})

test_categories_split_from_sources if testing.all_passed({row.name | some row in cases; not check_categories_split_from_sources with input as testing.row_input(row)})
