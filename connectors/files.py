"""Crash-safe file output, used by every concern that writes results.

A reader sees either the old complete output or the new complete one, never a half-written
file: write to a temporary name beside the target, flush to disk, then rename over it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


# --- sharing one embedded store file between processes ------------------------------------


# How long an opener waits for another process to release the store before giving up.
WAIT_FOR_STORE_SECONDS = 30.0


class StoreBusy(RuntimeError):
    """Another process has held the store for longer than we wait."""


def _lock_within(fd: int, wait: float, path: str) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise StoreBusy(
                    f"the store is in use by another process (waited {wait:g} s for {path}): "
                    "a `joinedup serve` with one worker, or a long job, holds it; stop it, or "
                    "serve with --workers 2 or more so the store is shared"
                ) from None
            time.sleep(0.005)


class StoreGate:
    """Lets several processes share one embedded DuckDB store file, and tells each process
    when another has written to it.

    DuckDB lets one process open a database file at a time; a second process's connect fails
    at once. Every opener of the store enters this gate (`fcntl.flock` on STORE.lock) for as
    long as its connection is open, so processes queue instead of failing. Inside a process
    the gate is shared by all threads: the first to enter takes the file lock, the last to
    leave gives it back (DuckDB itself serves several connections of one process).

    Every write bumps a counter in STORE.generation (8 bytes). A process may keep what it
    read from the store in memory (the consent index, the active extracts) and check with one
    8-byte read per use whether anyone, in any process, has written since.
    """

    def __init__(self, store_path: Path) -> None:
        base = str(store_path)
        self._lock_path = base + ".lock"
        self._generation_path = base + ".generation"
        self._mutex = threading.Lock()
        self._depth = 0
        self._lock_fd: int | None = None
        self._generation_fd: int | None = None

    def enter(self, wait: float = WAIT_FOR_STORE_SECONDS) -> None:
        """Take the store for this process, waiting up to `wait` seconds while another
        process holds it (then StoreBusy: a one-process server or a long job has it)."""
        with self._mutex:
            if self._depth == 0:
                Path(self._lock_path).parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    _lock_within(fd, wait, self._lock_path)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd = fd
            self._depth += 1

    def leave(self) -> None:
        with self._mutex:
            if self._depth == 0:
                raise RuntimeError("StoreGate.leave() without enter()")
            self._depth -= 1
            if self._depth == 0 and self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None

    @contextmanager
    def held(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def _generation_file(self) -> int:
        if self._generation_fd is None:
            with self._mutex:
                if self._generation_fd is None:
                    Path(self._generation_path).parent.mkdir(parents=True, exist_ok=True)
                    self._generation_fd = os.open(self._generation_path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._generation_fd

    def generation(self) -> int:
        """How many writes the store has seen (through any gate on this file)."""
        data = os.pread(self._generation_file(), 8, 0)
        return int.from_bytes(data, "big") if len(data) == 8 else 0

    def bump(self) -> int:
        """Count one write; call it while holding the gate, after the write has committed."""
        fd = self._generation_file()
        with self._mutex:  # read and write as one step: two threads' bumps must both count
            if self._depth == 0:
                raise RuntimeError("StoreGate.bump() outside the gate")
            data = os.pread(fd, 8, 0)
            value = (int.from_bytes(data, "big") if len(data) == 8 else 0) + 1
            os.pwrite(fd, value.to_bytes(8, "big"), 0)
            return value


class StoreConnection:
    """One component's way into the store file, always through the file's gate.

    `shared=False` (the CLI, the demo, a one-process server): one connection stays open
    (opening a DuckDB file costs ~20 ms) and the process stays in the gate until `close()`.
    `shared=True` (several server processes on one home): each operation opens the file
    and closes it again, so the processes take turns. Either way each operation gets its
    own cursor (threads never share one), and `cursor(write=True)` bumps the generation
    once the operation has ended without an error."""

    def __init__(self, store_path: Path, connect: Callable[[str], Any], shared: bool = False):
        self.path = Path(store_path)
        self.gate = store_gate(self.path)
        self.shared = shared
        self._connect = connect  # duckdb.connect: this module does not import DuckDB
        self._lock = threading.Lock()
        self._connection: Any = None

    @contextmanager
    def cursor(self, write: bool = False) -> Iterator[Any]:
        if self.shared:
            with self.gate.held():
                connection = self._connect(str(self.path))
                try:
                    yield connection
                    if write:
                        self.gate.bump()
                finally:
                    connection.close()
            return
        with self._lock:
            if self._connection is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.gate.enter()  # left in close()
                try:
                    self._connection = self._connect(str(self.path))
                except BaseException:
                    self.gate.leave()
                    raise
            cursor = self._connection.cursor()
        try:
            yield cursor
            if write:
                self.gate.bump()
        finally:
            cursor.close()

    def close(self) -> None:
        """Release the file (other processes can then open it)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
                self.gate.leave()


_gates: dict[str, StoreGate] = {}
_gates_lock = threading.Lock()


def store_gate(store_path: Path) -> StoreGate:
    """The one gate of this process for a store file (one per resolved path)."""
    key = str(Path(store_path).resolve())
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = StoreGate(Path(key))
        return gate
