"""Runs every test_ rule of every *_test.rego through the embedded engine (regopy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from policies.bundle import POLICY_DIR
from policies.testing import run_rego_tests

RESULTS = run_rego_tests()


def test_the_rego_suite_is_not_empty():
    files = {r.file for r in RESULTS}
    assert {"authz_test.rego", "consent_test.rego", "agreements_test.rego", "request_test.rego"} <= files
    assert sum(r.rows for r in RESULTS if r.file == "authz_test.rego") > 100


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: f"{r.file}::{r.name}")
def test_rego(result):
    assert result.passed, result.detail


def test_runner_reports_a_broken_policy(tmp_path: Path):
    """The runner must fail when the policy is wrong: flip default deny into allow."""
    for path in POLICY_DIR.glob("*.rego"):
        shutil.copy(path, tmp_path / path.name)
    authz = tmp_path / "authz.rego"
    authz.write_text(authz.read_text().replace("default allow := false", "default allow := true"))
    broken = run_rego_tests(tmp_path, POLICY_DIR / "data")
    failed = {r.name: r.detail for r in broken if not r.passed}
    assert "check_allow_is_as_expected" in failed
    assert "empty request" in failed["check_allow_is_as_expected"]
