"""OPA itself, as a command-line tool: find the project's pinned `opa`, lay out the bundle the
engines run (policies + data documents + derived indexes) as a directory OPA can read, and
run `opa check`, `opa test` and `opa build -t wasm` on it.

scripts/opa.sh builds the pinned OPA into ./.tools/bin; `JOINEDUP_OPA` names another binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from policies.bundle import POLICY_DIR, PolicyBundle

OPA_VERSION = "1.22.3"
PROJECT_DIR = POLICY_DIR.parent
# The OPA-only test files (`with input as`, which regopy cannot evaluate); see their header.
OPA_TESTS_DIR = POLICY_DIR / "opa_tests"


class OpaNotFound(RuntimeError):
    """The `opa` binary is not installed where the project looks for it."""


def opa_binary() -> Path:
    """The `opa` to run: $JOINEDUP_OPA, else ./.tools/bin/opa (scripts/opa.sh), else PATH."""
    candidates = [os.environ.get("JOINEDUP_OPA"), str(PROJECT_DIR / ".tools" / "bin" / "opa"),
                  shutil.which("opa")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise OpaNotFound(f"OPA {OPA_VERSION} is not installed: run `bash scripts/opa.sh` (it builds "
                      "OPA into .tools/bin with Go), or set JOINEDUP_OPA to an opa binary")


def opa_version(opa: Path | None = None) -> str:
    out = subprocess.run([str(opa or opa_binary()), "version"], capture_output=True, text=True,
                         check=True).stdout
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("Version:").strip()


def run_opa(*args: str, opa: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `opa ARGS...`; the caller reads returncode, stdout and stderr."""
    return subprocess.run([str(opa or opa_binary()), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def write_bundle_dir(bundle: PolicyBundle, dest: Path, include_tests: bool = False,
                     include_data: bool = True) -> Path:
    """Write the bundle as OPA reads a directory: the .rego modules at the top, the merged data
    documents (with the derived `indexes`) as data.json. With include_tests, also the
    *_test.rego files and policies/opa_tests/."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    modules = dict(bundle.modules)
    if include_tests:
        modules.update(bundle.test_modules)
    for name, source in modules.items():
        (dest / name).write_text(source, encoding="utf-8")
    if include_tests and OPA_TESTS_DIR.is_dir():
        target = dest / OPA_TESTS_DIR.name
        target.mkdir(exist_ok=True)
        for path in sorted(OPA_TESTS_DIR.glob("*.rego")):
            shutil.copy(path, target / path.name)
    if include_data:
        (dest / "data.json").write_text(json.dumps(bundle.data, sort_keys=True), encoding="utf-8")
    return dest
