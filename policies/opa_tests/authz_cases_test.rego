# OPA's own test runner (`opa test`) for authz_test.rego.
#
# Each test_ rule holds when its check_ rule in authz_test.rego holds for every row of `cases`
# (input = the row's "input" plus {"expect": row.expect}); a failure prints the names of the
# rows that failed. The check_ rules are also what policies/testing.py runs row by row through
# regopy, which aborts on `with input as` once rules depend on other rules: this file lives
# outside policies/*.rego so that regopy never loads it.
package joinedup.authz_test

import data.joinedup.testing

test_allow_is_as_expected if testing.all_passed({row.name | some row in cases; not check_allow_is_as_expected with input as testing.row_input(row)})

test_denial_says_why if testing.all_passed({row.name | some row in cases; not check_denial_says_why with input as testing.row_input(row)})

test_expected_reason_given if testing.all_passed({row.name | some row in cases; not check_expected_reason_given with input as testing.row_input(row)})

test_visible_categories if testing.all_passed({row.name | some row in cases; not check_visible_categories with input as testing.row_input(row)})

test_withheld_categories if testing.all_passed({row.name | some row in cases; not check_withheld_categories with input as testing.row_input(row)})

test_visible_sources if testing.all_passed({row.name | some row in cases; not check_visible_sources with input as testing.row_input(row)})

test_suppression if testing.all_passed({row.name | some row in cases; not check_suppression with input as testing.row_input(row)})

test_denied_decisions_carry_no_obligations if testing.all_passed({row.name | some row in cases; not check_denied_decisions_carry_no_obligations with input as testing.row_input(row)})
