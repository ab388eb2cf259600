"""Run every `test_` rule of every `*_test.rego` through the embedded engine (regopy).

regopy has no `opa test`, and regopy 1.5.2 crashes (a C++ abort) on `with input as ...` once
the rule under test depends on other rules, so tests here are table-driven by input instead:
a test package defines `cases` (rows of {"name", "input", "expect"}); the runner sets input to
each row's "input" plus {"expect": row.expect} and evaluates every `test_` rule of the package,
which must be exactly `true` for every row. Test rules read `input.expect`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from policies.bundle import PolicyBundle, load_bundle

_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.M)
_TEST_RULE = re.compile(r"^(check_\w+)\s+if\b", re.M)


@dataclass(frozen=True)
class RegoTestResult:
    file: str
    package: str
    name: str
    passed: bool
    detail: str = ""
    rows: int = 1


def discover(bundle: PolicyBundle) -> list[tuple[str, str, str, list[str]]]:
    """(file, package, test rule, diagnostic rules) for every test rule, in file order."""
    found = []
    for file, source in sorted(bundle.test_modules.items()):
        package = _PACKAGE.search(source)
        if package is None:
            raise ValueError(f"{file}: no package line")
        diagnostics: list[str] = []
        for name in dict.fromkeys(_TEST_RULE.findall(source)):
            found.append((file, package.group(1), name, diagnostics))
    return found


def run_rego_tests(policy_dir: Path | None = None, data_dir: Path | None = None) -> list[RegoTestResult]:
    """Evaluate every test rule; in a package with `cases`, once per row (input = the row's
    "input" plus its "expect"), else once with an empty input."""
    import regopy
    from regopy.rego_shared import rego_bundle_query_entrypoint, rego_output_string

    bundle = load_bundle(policy_dir, data_dir)
    tests = discover(bundle)
    if not tests:
        return []
    packages = sorted({package.replace(".", "/") for _, package, _, _ in tests})
    entrypoints = {f"{p}/cases" for p in packages}
    entrypoints.update(f"{package.replace('.', '/')}/{name}" for _, package, name, _ in tests)
    compiled = bundle.compile(sorted(entrypoints), include_tests=True)
    interpreter = regopy.Interpreter()

    def evaluate(entrypoint: str, rego_input: dict) -> object:
        interpreter.set_input(rego_input)
        out = rego_bundle_query_entrypoint(interpreter._impl, compiled._impl, entrypoint)
        return _value(rego_output_string(out).strip())

    results = []
    for path in packages:
        cases = evaluate(f"{path}/cases", {})
        rows = cases if isinstance(cases, list) and cases else [{"name": "", "input": {}, "expect": {}}]
        for file, package, name, _ in tests:
            if package.replace(".", "/") != path:
                continue
            failed = []
            for i, row in enumerate(rows):
                rego_input = dict(row.get("input") or {})
                rego_input["expect"] = row.get("expect") or {}
                if evaluate(f"{path}/{name}", rego_input) is not True:
                    failed.append(row.get("name") or f"row {i}")
            detail = ("failed for: " + "; ".join(failed)) if failed else ""
            results.append(RegoTestResult(file, package, name, not failed, detail, len(rows)))
    return results


def _value(text: str) -> object:
    if text == "undefined":
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text
    expressions = parsed.get("expressions") if isinstance(parsed, dict) else None
    return expressions[0] if expressions else None
