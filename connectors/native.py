"""The native (Go) connector engine: finding the program and running one extract with it.

`native/` holds a Go port of the batch path (readers, standardisation, the v2 encoding,
refs, content encryption and the parquet files). It writes the same extract as the
Python path from the same source (tests/connectors/test_native_engine.py compares them
table by table), several times faster. Everything around the files stays here in Python:
settings, mapping, keys, the staging directory, hashes, the manifest and the atomic swap.

`scripts/native.sh` builds it into `.tools/bin/joinedup-connector` with the hash of its
sources compiled in; a program built from other sources than the ones beside it is not
used (it could write a different encoding), and `--engine native` says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from connectors.keys import ENCODING_PURPOSES, KeyRing
from connectors.mapping import Mapping
from connectors.pseudonymise import CLK_COLUMNS, EncodingSettings

REPO = Path(__file__).resolve().parents[1]
NATIVE_DIR = REPO / "native"
BUILT = REPO / ".tools" / "bin" / "joinedup-connector"
NICKNAMES = Path(__file__).parent / "data" / "nicknames.csv"
ENGINES = ("auto", "python", "native")
# Kinds the Go program reads. The council kind only from an SQLite file: a PostgreSQL DSN
# goes through the Python reader.
NATIVE_KINDS = ("csv", "dwp", "housing", "council", "nhs")


class NativeUnavailable(Exception):
    """The native engine cannot run this extract (not built, stale, or not supported)."""


class NativeFailed(RuntimeError):
    """The program itself failed (crashed, killed, or a bug): nothing it wrote is used."""


class NativeSourceError(Exception):
    """The program refused the input (message as the Python reader words it)."""

    def __init__(self, category: str, message: str):
        self.category = category
        super().__init__(message)


def source_hash(root: Path = NATIVE_DIR) -> str:
    """SHA-256 over the Go sources (path and bytes of each .go file, go.mod, go.sum), the
    same digest scripts/native.sh compiles into the program."""
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix == ".go" or p.name in ("go.mod", "go.sum"))
                   and "testdata" not in p.relative_to(root).parts and not p.name.endswith("_test.go"))
    for p in files:
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def program() -> Path:
    """The built program, checked against the sources beside it; NativeUnavailable why not."""
    configured = os.environ.get("JOINEDUP_CONNECTOR")
    path = Path(configured) if configured else BUILT
    if not path.is_file():
        found = None if configured else shutil.which("joinedup-connector")
        if found is None:
            raise NativeUnavailable(f"the native connector is not built ({path}); run scripts/native.sh")
        path = Path(found)
    try:
        out = subprocess.run([str(path), "version"], capture_output=True, text=True, timeout=30, check=True).stdout
        built_from = json.loads(out)["source_hash"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        raise NativeUnavailable(f"{path} does not run as the native connector: {exc}") from None
    if NATIVE_DIR.is_dir() and built_from != source_hash():
        raise NativeUnavailable(f"{path} was built from other sources than {NATIVE_DIR}; run scripts/native.sh")
    return path


def unsupported_reason(kind: str, input: str, settings: EncodingSettings) -> str | None:
    """Why the native engine cannot run this extract, or None when it can."""
    if settings.scheme != "v2":
        return f"scheme {settings.scheme} (the native engine writes v2 only)"
    if kind not in NATIVE_KINDS:
        return f"kind {kind}"
    if kind == "council" and not Path(input).is_file():
        return "a council source that is not an SQLite file"
    return None


@dataclass
class NativeResult:
    counts: dict[str, int]


def run_extract(
    *,
    kind: str,
    input: str,
    out_dir: Path,
    source_name: str,
    extract_id: str,
    mapping: Mapping,
    settings: EncodingSettings,
    keyring: KeyRing,
    batch_size: int,
    workers: int,
    size_classes: tuple[int, ...],
    today: date | None = None,
    progress: Callable[[int], None] | None = None,
) -> NativeResult:
    """Run the program on one source, writing linkage, content, keymap and rejects into
    `out_dir` (an empty staging directory). Raises NativeSourceError for an input the
    program refuses, NativeFailed for a failure of the program itself."""
    exe = program()
    job: dict[str, Any] = {
        "kind": kind,
        "input": str(input),
        "out_dir": str(out_dir),
        "source_name": source_name,
        "extract_id": extract_id,
        "batch_size": batch_size,
        "workers": workers,
        "mapping": {name: {"columns": list(spec.columns), "format": spec.format, "validate": spec.validate}
                    for name, spec in mapping.identity.items()},
        "settings": {
            "clk_bits": settings.clk_bits,
            "clk_k": settings.clk_k,
            "clk_k_fields": dict(settings.clk_k_fields),
            "hardening": settings.hardening,
            "blip_f": settings.blip_f,
            "extra_match_keys": settings.extra_match_keys,
            "filters": [c for c in CLK_COLUMNS if c in settings.filters],
            "name_postcode_salt": settings.name_postcode_salt,
        },
        "linkage_columns": list(settings.linkage_columns),
        "keys": {p: keyring.key(p).hex() for p in (*ENCODING_PURPOSES, "ref", "content")},
        "nicknames": str(NICKNAMES),
        "today": (today or date.today()).isoformat(),
        "size_classes": list(size_classes),
    }
    # The keys go through a pipe, never the command line or the environment. Stdout carries
    # a {"progress": rows read} line per batch, then the counts (or the error) line.
    last = ""
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen([str(exe), "extract"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=errors, text=True)
        try:
            proc.stdin.write(json.dumps(job))
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it stopped before reading the job: its status and stderr say why
        for line in proc.stdout:
            if line.startswith('{"progress"'):
                if progress is not None:
                    progress(json.loads(line)["progress"])
            elif line.strip():
                last = line.strip()
        status = proc.wait()
        errors.seek(0)
        stderr = errors.read()
    if status == 2:
        try:
            doc = json.loads(last)
        except ValueError:
            doc = {"error": "extract", "message": stderr.strip() or "the native connector failed"}
        raise NativeSourceError(doc.get("error", "extract"), doc.get("message", ""))
    if status != 0:
        raise NativeFailed(f"the native connector failed (exit {status}): {stderr.strip()[-2000:]}")
    return NativeResult(counts=json.loads(last)["counts"])
