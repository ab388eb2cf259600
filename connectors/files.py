"""Crash-safe file output, used by every concern that writes results.

A reader sees either the old complete output or the new complete one, never a half-written
file: write to a temporary name beside the target, flush to disk, then rename over it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tomllib
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_file_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` all at once (temporary name, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_dir_atomically(tmp: Path, out: Path) -> None:
    """Move a finished directory into place; an existing one is replaced only now."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    dir_fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_document(path: Path, fmt: str, error: type[Exception], what: str = "") -> Any:
    """A configuration or manifest document (`fmt` "toml" or "json"), or `error` with a
    message naming the file and what is wrong: unreadable, or invalid where."""
    path = Path(path)
    label = f" {what}" if what else ""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read{label}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text: {exc}") from exc
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise error(f"{path}: invalid TOML: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
