# OPA's own test runner (`opa test`) for request_test.rego.
#
# Each test_ rule holds when its check_ rule in request_test.rego holds for every row of `cases`
# (input = the row's "input" plus {"expect": row.expect}); a failure prints the names of the
# rows that failed. The check_ rules are also what policies/testing.py runs row by row through
# regopy, which aborts on `with input as` once rules depend on other rules: this file lives
# outside policies/*.rego so that regopy never loads it.
package joinedup.request_test

import data.joinedup.testing

test_purpose if testing.all_passed({row.name | some row in cases; not check_purpose with input as testing.row_input(row)})

test_date if testing.all_passed({row.name | some row in cases; not check_date with input as testing.row_input(row)})

test_requested_categories if testing.all_passed({row.name | some row in cases; not check_requested_categories with input as testing.row_input(row)})
