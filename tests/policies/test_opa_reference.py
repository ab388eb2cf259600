"""OPA itself judges the policies: `opa check --strict` on policies/, `opa test` on the bundle
the engines run (the .rego files, the data documents and the indexes derived from them).

OPA is built by scripts/opa.sh (run by `scripts/setup.sh --test`); without it these tests
fail, saying how to install it, rather than being skipped.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from policies.bundle import DATA_DIR, POLICY_DIR, load_bundle
from policies.opa_tool import (
    OPA_TESTS_DIR,
    OPA_VERSION,
    opa_binary,
    opa_version,
    run_opa,
    write_bundle_dir,
)


@pytest.fixture(scope="module")
def opa() -> Path:
    return opa_binary()


def test_the_pinned_opa_is_installed(opa):
    assert opa_version(opa) == OPA_VERSION


def test_opa_check_strict_accepts_the_policies(opa):
    done = run_opa("check", "--strict", str(POLICY_DIR), opa=opa)
    assert done.returncode == 0, done.stdout + done.stderr


def _opa_test(opa: Path, directory: Path) -> tuple[int, str]:
    done = run_opa("test", "-v", str(directory), opa=opa)
    return done.returncode, done.stdout + done.stderr


def test_opa_test_passes_on_the_bundle(opa, tmp_path):
    code, out = _opa_test(opa, write_bundle_dir(load_bundle(), tmp_path / "bundle", include_tests=True))
    assert code == 0, out
    passed = re.search(r"PASS: (\d+)/(\d+)", out)
    assert passed and passed.group(1) == passed.group(2), out
    # Every table-driven check runs under OPA: 8 authz, 3 agreements, 2 consent, 3 request.
    assert int(passed.group(2)) >= 16, out


def test_every_check_rule_has_an_opa_test(tmp_path):
    """A check_ rule without its test_ wrapper would run only under regopy."""
    for test_file in sorted(POLICY_DIR.glob("*_test.rego")):
        checks = set(re.findall(r"^check_(\w+)\s+if\b", test_file.read_text(), re.M))
        wrapper = OPA_TESTS_DIR / test_file.name.replace("_test.rego", "_cases_test.rego")
        tests = set(re.findall(r"^test_(\w+)\s+if\b", wrapper.read_text(), re.M))
        assert checks and checks == tests, test_file.name


def test_opa_test_fails_on_a_fail_open_policy(opa, tmp_path):
    """Break the policy the way OPA differs from regopy (a negated built-in call on input
    that may be missing): OPA's own tests must catch it."""
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies, ignore=shutil.ignore_patterns("compiled", "__pycache__", "*.py"))
    authz = policies / "authz.rego"
    text = authz.read_text()
    assert "\tnot referred\n" in text
    authz.write_text(text.replace("\tnot referred\n", "\tnot input.subject.organisation in input.resource.referred_to\n"))
    code, out = _opa_test(opa, write_bundle_dir(load_bundle(policies, DATA_DIR), tmp_path / "bundle",
                                                include_tests=True))
    assert code != 0
    assert "provider reads with no referral list at all" in out
