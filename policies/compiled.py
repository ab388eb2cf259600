"""The policies compiled to WebAssembly by OPA, committed under policies/compiled/ so that the
compiled engine runs on a machine without Go or OPA.

`python -m policies.compiled` rebuilds them with the project's pinned OPA
(`opa build -t wasm -e joinedup/authz/decision`, policies only: the data documents are loaded
at run time, so a deployment's own agreements and roles need no rebuild). The manifest records
a digest of the .rego sources the module was built from: a module built from other sources is
refused (a stale build would silently run old rules), and a test rebuilds it with OPA and
compares decisions.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from policies.bundle import DECISION_PATH, POLICY_DIR, PolicyBundle, load_bundle

COMPILED_DIR = POLICY_DIR / "compiled"
WASM_FILE = "policy.wasm"
MANIFEST_FILE = "manifest.json"
# One decision document serves every action (data.joinedup.authz.decision); it is the
# module's one entrypoint.
ENTRYPOINTS = (DECISION_PATH,)


class CompiledPolicyError(Exception):
    """The compiled policy is missing, unreadable or built from other sources."""


@dataclass(frozen=True)
class CompiledPolicy:
    wasm: bytes
    sources_digest: str
    opa_version: str


def sources_digest(modules: dict[str, str]) -> str:
    """sha256 over the policy modules (names and text), the inputs of `opa build`."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(f"module {name}\n".encode())
        digest.update(modules[name].encode())
    return digest.hexdigest()


def load_compiled(bundle: PolicyBundle, directory: Path | None = None) -> CompiledPolicy:
    """The compiled policy in `directory` (default policies/compiled/), if it was built from
    exactly the bundle's modules."""
    directory = Path(directory) if directory else COMPILED_DIR
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        wasm = (directory / WASM_FILE).read_bytes()
    except (OSError, json.JSONDecodeError) as exc:
        raise CompiledPolicyError(f"{directory}: no readable compiled policy ({exc}); "
                                  "build it with `python -m policies.compiled`") from exc
    want = sources_digest(bundle.modules)
    if manifest.get("sources_sha256") != want:
        raise CompiledPolicyError(
            f"{directory / WASM_FILE} was built from other policy sources than "
            f"{POLICY_DIR}/*.rego; rebuild it with `python -m policies.compiled` (needs OPA)")
    if hashlib.sha256(wasm).hexdigest() != manifest.get("wasm_sha256"):
        raise CompiledPolicyError(f"{directory / WASM_FILE} does not match its manifest")
    return CompiledPolicy(wasm, want, str(manifest.get("opa_version", "")))


def build_wasm(bundle: PolicyBundle, opa: Path | None = None) -> bytes:
    """`opa build -t wasm` of the bundle's modules, one entrypoint per decision; the module."""
    from policies.opa_tool import run_opa, write_bundle_dir

    with tempfile.TemporaryDirectory(prefix="joinedup-wasm-") as tmp:
        source = write_bundle_dir(bundle, Path(tmp) / "src", include_data=False)
        out = Path(tmp) / "bundle.tar.gz"
        args = ["build", "-t", "wasm", "-o", str(out)]
        for entrypoint in ENTRYPOINTS:
            args += ["-e", entrypoint]
        done = run_opa(*args, str(source), opa=opa)
        if done.returncode != 0:
            raise CompiledPolicyError(f"opa build failed: {done.stderr.strip() or done.stdout.strip()}")
        with tarfile.open(out) as tar:
            member = next((m for m in tar.getmembers() if m.name.lstrip("/") == WASM_FILE), None)
            if member is None:
                raise CompiledPolicyError("opa build wrote no policy.wasm")
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()


def write_compiled(bundle: PolicyBundle, wasm: bytes, opa_version: str,
                   directory: Path | None = None) -> Path:
    """Write policy.wasm and its manifest (each replaced whole, never half written)."""
    directory = Path(directory) if directory else COMPILED_DIR
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "built_by": f"opa {opa_version}: opa build -t wasm "
                    + " ".join(f"-e {e}" for e in ENTRYPOINTS),
        "opa_version": opa_version,
        "entrypoints": list(ENTRYPOINTS),
        "sources_sha256": sources_digest(bundle.modules),
        "wasm_sha256": hashlib.sha256(wasm).hexdigest(),
    }
    for name, raw in ((WASM_FILE, wasm),
                      (MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())):
        tmp = directory / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, directory / name)
    return directory / WASM_FILE


def main() -> int:
    from policies.opa_tool import OpaNotFound, opa_binary, opa_version

    try:
        opa = opa_binary()
    except OpaNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    bundle = load_bundle()
    try:
        wasm = build_wasm(bundle, opa)
    except CompiledPolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    path = write_compiled(bundle, wasm, opa_version(opa))
    print(f"wrote {path} ({len(wasm):,} bytes) with {opa}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
