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


def free_loopback_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OpaServer:
    """`opa run --server` on a loopback port, with console decision logs written to `log_path`
    (one JSON object a line). Use as a context manager; `stop()` ends it."""

    def __init__(self, log_path: Path, port: int | None = None, opa: Path | None = None,
                 decision_logs: bool = True):
        self.port = port or free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        args = [str(opa or opa_binary()), "run", "--server", "--addr", f"127.0.0.1:{self.port}",
                "--log-format", "json", "--disable-telemetry"]
        if decision_logs:
            args += ["--set", "decision_logs.console=true"]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 20.0) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"opa exited with {self.process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"opa did not become healthy on {self.url} within {timeout}s")

    def decision_log(self) -> list[dict]:
        """The decision-log entries written so far (OPA's console logger, "Decision Log")."""
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("msg") == "Decision Log":
                entries.append(entry)
        return entries

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> OpaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
