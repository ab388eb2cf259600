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


# What the project writes holds pseudonymised or personal data, keys and audit records:
# readable by the owner only, whatever the umask of the shell that ran the command.
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def make_private_dir(path: Path) -> Path:
    """Create `path` and any missing parents as owner-only directories (0700).

    Directories that already exist keep their mode, except `path` itself, which is made
    0700: it is ours (an output or a home directory), its parents may not be (/tmp)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        try:
            p.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            pass
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def make_tree_private(root: Path) -> None:
    """Owner-only modes for a tree written by code that uses the default modes (pyarrow,
    DuckDB, csv): directories 0700, files 0600. Symbolic links are not followed."""
    root = Path(root)
    if root.is_symlink():
        return
    if root.is_dir():
        os.chmod(root, PRIVATE_DIR_MODE)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                if not os.path.islink(os.path.join(dirpath, name)):
                    os.chmod(os.path.join(dirpath, name), PRIVATE_DIR_MODE)
            for name in filenames:
                if not os.path.islink(os.path.join(dirpath, name)):
                    os.chmod(os.path.join(dirpath, name), PRIVATE_FILE_MODE)
    elif root.exists():
        os.chmod(root, PRIVATE_FILE_MODE)


def open_private(path: Path, mode: str = "w", **kwargs: Any):
    """`open(path, mode)` for writing, the file created (or made) 0600 before anything is
    written to it, so there is no moment when another user could open it."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # an existing file keeps its mode through O_CREAT
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and directories created inside are owner-only (umask 077), for libraries that
    create files themselves (DuckDB's store and its WAL). The umask is per process: use it
    around single-threaded work, or once at the start of a command."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def write_file_atomic(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> None:
    """Replace `path` with `data` all at once (temporary name, fsync, rename); the file is
    owner-only (0600) unless `mode` says otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- staging a directory beside its destination ---------------------------------------------


class OutputBusy(RuntimeError):
    """Another process is writing the same output directory."""


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def _retired_prefix(out: Path) -> str:
    return f".{out.name}.old-"


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot swap
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir_atomically(tmp: Path, out: Path) -> None:
    """Move a finished directory into place; an existing one is replaced only now.

    Where the file system can swap two names in one step, a reader of `out` sees the old
    directory or the new one, and a crash at any point leaves one of them at `out` (the
    other, a leftover under a temporary name, is removed by the next `staging_dir`). Else
    the old one is first moved aside; a crash between the two renames leaves `out` missing
    and the old directory retired, which the next `staging_dir` puts back."""
    if out.exists():
        if _exchange(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)  # now the old one
        else:
            old = out.with_name(f"{_retired_prefix(out)}{secrets.token_hex(4)}")
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


def tidy_leftovers(out: Path) -> list[Path]:
    """Remove what killed runs left beside `out`: staging directories, and a retired old
    directory (put back at `out` if a crash left `out` missing). Call only while holding
    the output's lock (`staging_dir` does). Returns the paths removed or restored."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    done = []
    retired = sorted(p for p in out.parent.iterdir() if p.name.startswith(_retired_prefix(out)))
    if retired and not out.exists():
        os.replace(retired.pop(), out)  # the old complete output, back in its place
        done.append(out)
    for p in out.parent.iterdir():
        if p.name.startswith(_staging_prefix(out)) or p in retired:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            done.append(p)
    return done


def _lock_output(lock_path: Path, out: Path) -> int:
    """An open, exclusively flocked descriptor of `lock_path` (OutputBusy if held).

    The lock file is removed when its holder is done, so after taking the lock we check
    that the name still leads to the file we locked (else a finishing holder unlinked it
    between our open and our flock, and we try again on the new file)."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusy(f"{out}: another process is writing this output now") from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A private (0700) temporary directory beside `out` to write a complete output into,
    then `replace_dir_atomically(tmp, out)`.

    While inside, this process holds `.<out>.lock` (flock: released by the kernel when a
    process dies, even by kill -9), so a second writer of the same output fails with
    OutputBusy instead of racing; holding it also means that any staging directory already
    beside `out` belongs to a dead run, so those are removed first. On an error the
    temporary directory is removed."""
    out = Path(out)
    if not out.parent.exists():
        make_private_dir(out.parent)
    lock_path = out.with_name(f".{out.name}.lock")
    fd = _lock_output(lock_path, out)
    try:
        tidy_leftovers(out)
        tmp = out.with_name(f"{_staging_prefix(out)}{secrets.token_hex(4)}")
        tmp.mkdir(mode=PRIVATE_DIR_MODE)
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        lock_path.unlink(missing_ok=True)  # while still holding it: see _lock_output
        os.close(fd)


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
