"""The append-only audit ledger.

Files in the ledger directory:

    log.jsonl          the entries, one checksummed line each (audit/records.py); the truth
    offsets.bin        end offset of each entry in the log (8 bytes, big-endian): a cache
    tree/level-NN.bin  the Merkle tree's node cache (audit/tree.py)
    checkpoints.jsonl  signed checkpoints (tree size, root hash, time, key id, signature)
    recovery.jsonl     torn tails found after a crash and what was done with them
    torn/              the quarantined bytes of those torn tails
    audit-public.pem   the audit party's public key (publish it to the governance board)
    lock               fcntl.flock: one writer at a time across threads and processes

and, when a witness directory is configured (the governance board's), `WITNESS/checkpoints.jsonl`:
a second copy of every checkpoint, which is what lets `verify` catch a cut of any length.

Durability: an append returns only after its line is written with O_APPEND and fsynced.
Appends from threads of one process are grouped (group commit: whoever holds the lock
writes everybody's pending events and fsyncs once), so throughput grows with load.
The caches are written after the fsync and rebuilt from the log if a crash left them short.

Checkpoints are signed automatically at every multiple of `checkpoint_every` entries, when
`checkpoint_seconds` have passed since the last one (checked at each append, and by a timer
when the ledger goes quiet), and by `checkpoint()` / `close()` (the CLI and the server call
`checkpoint_open_ledgers()` at the end of every command and at shutdown).
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import logging
import os
import re
import struct
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit.guard import prepare_event
from audit.records import Record, RecordError, decode_record, encode_record
from audit.tree import TreeCache
from audit.verifier import (
    CHECKPOINT_VERSION,
    VerificationError,
    canonical_json,
    leaf_hash,
    public_key_id,
    verify_checkpoint,
)

OFFSET = struct.Struct(">Q")
DEFAULT_CHECKPOINT_EVERY = 100
DEFAULT_CHECKPOINT_SECONDS = 60.0
CHECKPOINTS_FILE = "checkpoints.jsonl"
# ev-<12-digit position>-<8 random base32>: the position makes `prove ID` a direct read; the
# random part means an id is never issued twice, even if the tail of the log is lost (a torn
# write, or a cut) and the position is used again. Older ledgers have plain ev-<10 digits>.
EVENT_ID_RE = re.compile(r"^ev-(?:(\d{12})-[a-z2-7]{8}|(\d{10}))$")

log = logging.getLogger(__name__)


class LedgerError(Exception):
    """The ledger cannot be opened or written (corrupt, cut, misconfigured, key missing...).

    It means the service cannot record, so it must not act: answer 503, not 500 or 4xx.
    """


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_event_id(index: int) -> str:
    token = base64.b32encode(os.urandom(5)).decode("ascii").lower()
    return f"ev-{index:012d}-{token}"


def index_of(event_id: str) -> int:
    """The position an event id names; LedgerError if it is not an event id."""
    match = EVENT_ID_RE.match(event_id) if isinstance(event_id, str) else None
    if not match:
        raise LedgerError(f"{event_id!r} is not an event id (ev-NNNNNNNNNNNN-xxxxxxxx)")
    return int(match.group(1) or match.group(2))


# --- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerSettings:
    """The `[audit]` table of joinedup.toml, validated.

        [audit]
        checkpoint_every = 100      # sign a checkpoint every N entries (0: never by count)
        checkpoint_seconds = 60     # ...and when T seconds passed since the last (0: never)
        witness = "/srv/board/witness"   # the governance board's copy of every checkpoint
    """

    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS
    witness: Path | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None, base_dir: Path | str | None = None) -> LedgerSettings:
        """Validate the table; a relative witness path is taken from `base_dir` (the home)."""
        table = {} if table is None else table
        where = "[audit]"
        if not isinstance(table, Mapping):
            raise LedgerError(f"{where} must be a table")
        unknown = sorted(set(table) - {"checkpoint_every", "checkpoint_seconds", "witness"})
        if unknown:
            raise LedgerError(f"{where}: unknown setting(s) {', '.join(unknown)} "
                              "(known: checkpoint_every, checkpoint_seconds, witness)")
        every = table.get("checkpoint_every", DEFAULT_CHECKPOINT_EVERY)
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise LedgerError(f"{where} checkpoint_every: must be an integer >= 0, got {every!r}")
        seconds = table.get("checkpoint_seconds", DEFAULT_CHECKPOINT_SECONDS)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 86400 * 366:
            raise LedgerError(f"{where} checkpoint_seconds: must be a number of seconds >= 0, got {seconds!r}")
        witness = table.get("witness")
        if witness is not None:
            if not isinstance(witness, str) or not witness.strip():
                raise LedgerError(f"{where} witness: must be a directory path, got {witness!r}")
            witness = Path(witness).expanduser()
            if not witness.is_absolute() and base_dir is not None:
                witness = Path(base_dir) / witness
        return cls(every, float(seconds), witness)

    def open(self, ledger_dir: Path | str, signing_key_path: Path | str | None = None) -> Ledger:
        return Ledger(ledger_dir, signing_key_path, checkpoint_every=self.checkpoint_every,
                      checkpoint_seconds=self.checkpoint_seconds, witness=self.witness)


# --- small file helpers -------------------------------------------------------------------


def _append_line(path: Path, line: bytes, mode: int = 0o600) -> None:
    """Append one line durably. A torn last line (crash mid-write) is left where it is and
    ended with a newline first, so it cannot swallow this one (readers skip it)."""
    created = not path.exists()
    if created:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, mode)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = 0
        while written < len(line):
            written += os.write(fd, line[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_checkpoint_lines(path: Path) -> tuple[list[dict], list[int]]:
    """The checkpoints in a checkpoints file, and the line numbers that are not one."""
    if not path.exists():
        return [], []
    out, unreadable = [], []
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if isinstance(value, dict):
            out.append(value)
        else:
            unreadable.append(n)
    return out, unreadable


def last_checkpoint_in(path: Path, chunk: int = 8192) -> dict | None:
    """The last readable checkpoint of a file, reading only as much of its tail as needed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        size = os.fstat(fd).st_size
        while True:
            start = max(0, size - chunk)
            lines = os.pread(fd, size - start, start).splitlines()
            if start:
                lines = lines[1:]  # the first line may be cut by the chunk
            for line in reversed(lines):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    return value
            if not start:
                return None
            chunk *= 8
    finally:
        os.close(fd)


# Ledgers open in this process, for checkpoint_open_ledgers(), with the order they opened in.
_OPEN: weakref.WeakKeyDictionary[Ledger, int] = weakref.WeakKeyDictionary()
_opened = itertools.count(1)
_last_opened = 0


def ledgers_opened() -> int:
    """A mark: pass it to checkpoint_open_ledgers() to leave out ledgers opened before it."""
    return _last_opened


def checkpoint_open_ledgers(opened_after: int = 0) -> list[dict]:
    """Sign a checkpoint of every ledger open in this process that has uncovered entries
    (only those opened after the mark `opened_after`, from ledgers_opened()).

    The CLI calls this at the end of every command and the server at shutdown (a closed
    ledger has already done it). Raises LedgerError, after trying all of them, if any could
    not be checkpointed or witnessed.
    """
    done, errors = [], []
    for ledger in [led for led, seq in list(_OPEN.items()) if seq > opened_after]:
        try:
            checkpoint = ledger.checkpoint_if_uncovered()
        except LedgerError as exc:
            errors.append(str(exc))
            continue
        if checkpoint is not None:
            done.append(checkpoint)
    if errors:
        raise LedgerError("; ".join(errors))
    return done


class _Pending:
    __slots__ = ("events", "ids", "error", "done")

    def __init__(self, events: list[dict]) -> None:
        self.events = events
        self.ids: list[str] = []
        self.error: BaseException | None = None
        self.done = False


class Ledger:
    """`Ledger(ledger_dir, signing_key_path).append(event) -> event_id`, durable on return."""

    def __init__(
        self,
        ledger_dir: Path | str,
        signing_key_path: Path | str | None = None,
        *,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
        witness: Path | str | None = None,
    ) -> None:
        self.dir = Path(ledger_dir)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.witness = Path(witness) if witness else None
        self._private_key = None
        self._public_key = None
        if signing_key_path is not None:
            self._private_key = load_private_key(Path(signing_key_path))
            self._public_key = self._private_key.public_key()
            self._write_public_key()
        self._closed = False
        # Files 0600, directories 0700: the ledger is the audit party's (its public key and
        # the witness copy are meant to be read by others: 0644).
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._log_fd = os.open(self.dir / "log.jsonl", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._off_fd = os.open(self.dir / "offsets.bin", os.O_RDWR | os.O_CREAT, 0o600)
        self._tree = TreeCache(self.dir / "tree")
        self._n = 0
        self._log_end = -1  # unknown until the first refresh
        self._cv = threading.Condition()
        self._queue: list[_Pending] = []
        self._committing = False
        self._io = threading.RLock()  # serialises this process's file work (flock is per fd)
        self._timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()
        self._last_signed_at = time.monotonic()
        self._signed_size = -1  # the largest checkpoint this process knows of (-1: unknown)
        try:
            with self._locked():
                self._refuse_if_cut()
        except BaseException:
            self._close_files()
            raise
        global _last_opened
        _last_opened = next(_opened)
        _OPEN[self] = _last_opened

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Sign a checkpoint covering every entry (if any is uncovered), then close.

        The files are closed even when the checkpoint fails; the LedgerError is raised after.
        """
        if self._closed:
            return
        self._cancel_timer()
        error = None
        try:
            self.checkpoint_if_uncovered()
        except LedgerError as exc:
            error = exc
        with self._io:
            self._closed = True
            self._close_files()
        _OPEN.pop(self, None)
        if error is not None:
            raise error

    def _close_files(self) -> None:
        for fd in (self._log_fd, self._off_fd, self._lock_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._tree.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- keys ------------------------------------------------------------------------------

    @property
    def public_key_path(self) -> Path:
        return self.dir / "audit-public.pem"

    def _write_public_key(self) -> None:
        from cryptography.hazmat.primitives import serialization

        pem = self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        path = self.public_key_path
        if not path.exists() or path.read_bytes() != pem:
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(pem)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)

    @property
    def key_id(self) -> str:
        from cryptography.hazmat.primitives import serialization

        if self._private_key is None:
            raise LedgerError("this ledger was opened without its signing key")
        raw = self._public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return public_key_id(raw)

    # --- appending -------------------------------------------------------------------------

    def append(self, event: dict) -> str:
        """Append and fsync one event; return its event_id.

        An identifier-like value is stored as "[redacted]" and listed in the event's
        `redacted` field (see audit/guard.py); EventRejected only for a malformed event;
        LedgerError when the ledger cannot record at all.
        """
        return self.append_many([event])[0]

    def append_many(self, events: list[dict]) -> list[str]:
        """Append several events with one fsync; all are checked before any is written."""
        prepared = []
        for event in events:
            if isinstance(event, dict) and not event.get("time"):
                event = {**event, "time": utc_now()}
            prepared.append(prepare_event(event))
        if not prepared:
            return []
        mine = _Pending(prepared)
        with self._cv:
            self._queue.append(mine)
            while not mine.done:
                if self._committing:
                    self._cv.wait()
                    continue
                # Lead a group commit of everything queued so far.
                self._committing = True
                batch, self._queue = self._queue, []
                self._cv.release()
                try:
                    self._commit(batch)
                finally:
                    self._cv.acquire()
                    self._committing = False
                    self._cv.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.ids

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._locked():
                if self._closed:
                    raise LedgerError(f"{self.dir}: the ledger is closed")
                start = self._n
                lines, leaves, ends = [], [], []
                end = self._log_end
                index = start
                ids: list[list[str]] = []
                for pending in batch:
                    ids.append([])
                    for event in pending.events:
                        event_id = new_event_id(index)
                        line, leaf = encode_record(index, {**event, "event_id": event_id})
                        lines.append(line)
                        leaves.append(leaf)
                        end += len(line)
                        ends.append(OFFSET.pack(end))
                        ids[-1].append(event_id)
                        index += 1
                data = b"".join(lines)
                written = 0
                while written < len(data):
                    written += os.write(self._log_fd, data[written:])
                os.fsync(self._log_fd)
                # Durable from here: nothing below may fail the append.
                for pending, its_ids in zip(batch, ids, strict=True):
                    pending.ids = its_ids
                os.pwrite(self._off_fd, b"".join(ends), start * OFFSET.size)
                self._tree.append(start, leaves)
                self._n, self._log_end = index, end
                self._auto_checkpoint(start, index)
        except BaseException as exc:
            for pending in batch:
                if not pending.ids:
                    pending.error = exc
        finally:
            for pending in batch:
                pending.done = True

    def _auto_checkpoint(self, start: int, stop: int) -> None:
        """Checkpoints due after entries start..stop-1 were made durable. Under the lock.

        A checkpoint that cannot be written (e.g. the witness is unreachable) is logged, not
        raised: the entries are durable, and the next checkpoint covers them.
        """
        if self._private_key is None:
            return
        try:
            every = self.checkpoint_every
            if every:
                # One at every multiple of `every` the batch crossed, so that verify can
                # narrow a rewritten entry down to one interval.
                for size in range((start // every + 1) * every, stop + 1, every):
                    self._sign_and_store(size)
            seconds = self.checkpoint_seconds
            if seconds and self._signed_size < stop and time.monotonic() - self._last_signed_at >= seconds:
                self._sign_and_store(stop)
        except (OSError, LedgerError) as exc:
            log.warning("audit ledger %s: automatic checkpoint failed: %s", self.dir, exc)
        if self.checkpoint_seconds and self._signed_size < stop:
            self._arm_timer()

    def _arm_timer(self) -> None:
        with self._timer_lock:
            if self._timer is not None or self._closed:
                return
            delay = max(0.01, self.checkpoint_seconds - (time.monotonic() - self._last_signed_at))
            self._timer = threading.Timer(delay, self._on_timer)
            self._timer.daemon = True
            self._timer.start()

    def _cancel_timer(self) -> None:
        with self._timer_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _on_timer(self) -> None:
        with self._timer_lock:
            self._timer = None
        try:
            self.checkpoint_if_uncovered()
        except LedgerError as exc:
            if not self._closed:
                log.warning("audit ledger %s: timed checkpoint failed: %s", self.dir, exc)
                self._arm_timer()  # try again after another interval

    # --- locking and crash recovery --------------------------------------------------------

    class _Locked:
        def __init__(self, ledger: Ledger) -> None:
            self.ledger = ledger

        def __enter__(self) -> None:
            self.ledger._io.acquire()
            try:
                if self.ledger._closed:
                    raise LedgerError(f"{self.ledger.dir}: the ledger is closed")
                fcntl.flock(self.ledger._lock_fd, fcntl.LOCK_EX)
            except BaseException:
                self.ledger._io.release()
                raise
            try:
                self.ledger._refresh()
            except BaseException:
                fcntl.flock(self.ledger._lock_fd, fcntl.LOCK_UN)
                self.ledger._io.release()
                raise

        def __exit__(self, *exc: object) -> None:
            fcntl.flock(self.ledger._lock_fd, fcntl.LOCK_UN)
            self.ledger._io.release()

    def _locked(self) -> Ledger._Locked:
        return Ledger._Locked(self)

    def _refresh(self) -> None:
        """Bring this process's view (and the caches) up to the log on disk. Under the lock."""
        log_size = os.fstat(self._log_fd).st_size
        if log_size == self._log_end:
            return
        if log_size < self._log_end:
            # Writers only ever add; a torn tail is never part of what a process knows.
            raise LedgerError(
                f"{self.dir / 'log.jsonl'}: the log shrank from {self._log_end} to {log_size} "
                "bytes while open: entries were removed. Run `joinedup audit verify`."
            )
        n = os.fstat(self._off_fd).st_size // OFFSET.size
        while n and self._end_of(n - 1) > log_size:  # offsets beyond the log: drop them
            n -= 1
        if n and not self._entry_ends_at_its_offset(n - 1):
            n = 0  # the cache does not describe this log (damage or an edit): index it all
        os.ftruncate(self._off_fd, n * OFFSET.size)
        end = self._end_of(n - 1) if n else 0
        if end < log_size:
            n, end = self._index_tail(n, end, log_size)
        self._tree.sync_to(n, self._leaves_from_log)
        self._n, self._log_end = n, end

    def _entry_ends_at_its_offset(self, index: int) -> bool:
        lo, hi = self._start_of(index), self._end_of(index)
        if hi <= lo:
            return False
        data = os.pread(self._log_fd, hi - lo, lo)
        try:
            return data.endswith(b"\n") and decode_record(data).index == index
        except RecordError:
            return False

    def _end_of(self, index: int) -> int:
        return OFFSET.unpack(os.pread(self._off_fd, OFFSET.size, index * OFFSET.size))[0]

    def _start_of(self, index: int) -> int:
        return self._end_of(index - 1) if index else 0

    def _index_tail(self, n: int, end: int, log_size: int) -> tuple[int, int]:
        """Index complete records after `end`; quarantine a torn tail (crash mid-append)."""
        data = os.pread(self._log_fd, log_size - end, end)
        pos, ends = 0, []
        bad_reason = None
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                bad_reason = "incomplete last record (no newline)"
                break
            try:
                record = decode_record(data[pos : nl + 1])
            except RecordError as exc:
                bad_reason = str(exc)
                break
            if record.index != n + len(ends):
                bad_reason = f"record index {record.index} where {n + len(ends)} was expected"
                break
            pos = nl + 1
            ends.append(OFFSET.pack(end + pos))
        if bad_reason is not None:
            # Decide before touching anything: only a tail with no valid record in it and
            # not covered by any checkpoint can be a torn write.
            self._refuse_unless_torn(end + pos, data[pos:], bad_reason, n + len(ends))
        if ends:
            os.pwrite(self._off_fd, b"".join(ends), n * OFFSET.size)
        n += len(ends)
        if bad_reason is not None:
            self._quarantine_tail(end + pos, data[pos:], bad_reason, n)
        return n, end + pos

    def _refuse_unless_torn(self, offset: int, tail: bytes, reason: str, entries_before: int) -> None:
        where = self.dir / "log.jsonl"
        for line in tail.split(b"\n")[1:]:
            try:
                decode_record(line)
            except RecordError:
                continue
            raise LedgerError(
                f"{where}: bad record at byte {offset} ({reason}) is followed by valid records: "
                "this is damage, not a torn write; nothing was changed. Run `joinedup audit verify`."
            )
        covered, source = self._covered_size()
        if covered > entries_before:
            raise LedgerError(
                f"{where}: bad record at byte {offset} ({reason}) after {entries_before} entries, "
                f"but a signed checkpoint ({source}) covers {covered}: the entry was "
                "acknowledged, so this is damage, not a torn write; nothing was changed. "
                "Run `joinedup audit verify`."
            )

    def _quarantine_tail(self, offset: int, tail: bytes, reason: str, after: int) -> None:
        torn_dir = self.dir / "torn"
        torn_dir.mkdir(mode=0o700, exist_ok=True)
        stamp = utc_now().replace(":", "").replace("-", "")
        saved = torn_dir / f"torn-{offset}-{stamp}.bin"
        fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, tail)
            os.fsync(fd)
        finally:
            os.close(fd)
        note = {
            "time": utc_now(),
            "log_offset": offset,
            "bytes": len(tail),
            "entries_before": after,
            "reason": reason,
            "quarantined_to": str(saved.relative_to(self.dir)),
        }
        _append_line(self.dir / "recovery.jsonl", canonical_json(note) + b"\n")
        os.ftruncate(self._log_fd, offset)
        os.fsync(self._log_fd)

    def _covered_size(self) -> tuple[int, str]:
        """The largest tree size a checkpoint signed by our key claims (here or at the
        witness), and where it is. Without the key nothing can be trusted: (0, "")."""
        if self._public_key is None:
            return 0, ""
        best, source = 0, ""
        places = [("the ledger's checkpoints", self.dir / CHECKPOINTS_FILE)]
        if self.witness is not None:
            places.append((f"the witness {self.witness}", self.witness / CHECKPOINTS_FILE))
        for label, path in places:
            try:
                checkpoint = last_checkpoint_in(path)
            except OSError as exc:
                log.warning("audit ledger %s: cannot read %s: %s", self.dir, path, exc)
                continue
            if checkpoint is None:
                continue
            try:
                verify_checkpoint(checkpoint, self._public_key)
            except VerificationError:
                continue  # not ours or forged: verify reports it; it cannot block appends
            if checkpoint["tree_size"] > best:
                best, source = checkpoint["tree_size"], label
        return best, source

    def _refuse_if_cut(self) -> None:
        """At open: appending over positions a signed checkpoint covers would fork the
        ledger and hide the cut, so refuse until someone has looked (`audit verify`)."""
        covered, source = self._covered_size()
        if covered > self._n:
            raise LedgerError(
                f"{self.dir / 'log.jsonl'}: the log holds {self._n} entries but a signed "
                f"checkpoint ({source}) covers {covered}: entries were removed. The ledger will "
                "not append over them; run `joinedup audit verify`."
            )
        self._signed_size = covered
        every = self.checkpoint_every
        if self._private_key is not None and every and covered < (self._n // every) * every:
            # A crash between an append and the checkpoint it was due: sign it now.
            try:
                self._sign_and_store((self._n // every) * every)
            except LedgerError as exc:  # as in _auto_checkpoint: never a reason not to record
                log.warning("audit ledger %s: catch-up checkpoint failed: %s", self.dir, exc)

    def _leaves_from_log(self, start: int, stop: int) -> Iterator[bytes]:
        for record in self._read_records(start, stop):
            yield leaf_hash(record.event)

    def _read_records(self, start: int, stop: int) -> Iterator[Record]:
        if start >= stop:
            return
        lo, hi = self._start_of(start), self._end_of(stop - 1)
        data = os.pread(self._log_fd, hi - lo, lo)
        for line in data.splitlines():
            yield decode_record(line)

    # --- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._locked():
            return self._n

    @property
    def size(self) -> int:
        return len(self)

    def torn_tail_reports(self) -> list[dict]:
        """Torn tails found (and quarantined) after crashes, oldest first."""
        path = self.dir / "recovery.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _record_of(self, event_id: str) -> Record:
        """The record an event id names. Under the lock."""
        index = index_of(event_id)
        if index >= self._n:
            raise LedgerError(f"no event {event_id} (the ledger has {self._n} events)")
        record = next(self._read_records(index, index + 1))
        if record.event.get("event_id") != event_id:
            raise LedgerError(f"no event {event_id} (position {index} holds another event)")
        return record

    def get(self, event_id: str) -> dict:
        with self._locked():
            return self._record_of(event_id).event

    def events(self, start: int = 0, stop: int | None = None, chunk: int = 4096) -> Iterator[dict]:
        """Events in order (read in chunks; the tail is fixed when the iteration starts)."""
        with self._locked():
            stop = self._n if stop is None else min(stop, self._n)
        for lo in range(start, stop, chunk):
            with self._locked():
                records = list(self._read_records(lo, min(lo + chunk, stop)))
            for record in records:
                yield record.event

    def root(self, tree_size: int | None = None) -> bytes:
        with self._locked():
            size = self._n if tree_size is None else tree_size
            if not 0 <= size <= self._n:
                raise LedgerError(f"tree size {size} is beyond the ledger ({self._n} events)")
            return self._tree.root(0, size)

    # --- checkpoints -----------------------------------------------------------------------

    def _sign_and_store(self, tree_size: int) -> dict:
        """Sign, then append to the ledger's file, then to the witness. Under the lock.

        In that order: a crash in between leaves the witness one behind (the next checkpoint
        catches it up), never a witness checkpoint the ledger does not hold.
        """
        if self._private_key is None:
            raise LedgerError("signing a checkpoint needs the audit signing key")
        body = {
            "version": CHECKPOINT_VERSION,
            "tree_size": tree_size,
            "root_hash": self._tree.root(0, tree_size).hex(),
            "time": utc_now(),
            "key_id": self.key_id,
        }
        signature = self._private_key.sign(canonical_json(body))
        checkpoint = {**body, "signature": base64.b64encode(signature).decode()}
        line = canonical_json(checkpoint) + b"\n"
        try:
            _append_line(self.dir / CHECKPOINTS_FILE, line)
        except OSError as exc:
            raise LedgerError(f"cannot write {self.dir / CHECKPOINTS_FILE}: {exc}") from exc
        self._signed_size = max(self._signed_size, tree_size)
        self._last_signed_at = time.monotonic()
        self._witness(checkpoint)
        return checkpoint

    def _witness(self, checkpoint: dict) -> None:
        """Make sure the witness's last checkpoint is this one. Under the lock."""
        if self.witness is None:
            return
        path = self.witness / CHECKPOINTS_FILE
        if last_checkpoint_in(path) == checkpoint:
            return
        try:
            _append_line(path, canonical_json(checkpoint) + b"\n", mode=0o644)
        except OSError as exc:
            raise LedgerError(f"cannot write the witness {path}: {exc}") from exc

    def checkpoint(self) -> dict:
        """A signed checkpoint of the whole ledger as it is now (the latest, if it covers
        every entry), written to the ledger and the witness. LedgerError if it cannot be."""
        with self._locked():
            latest = last_checkpoint_in(self.dir / CHECKPOINTS_FILE)
            if latest is not None and latest.get("tree_size") == self._n and self._is_ours(latest):
                self._witness(latest)
                return latest
            return self._sign_and_store(self._n)

    def checkpoint_if_uncovered(self) -> dict | None:
        """`checkpoint()` if some entry is not covered yet (and the key is here), else None."""
        if self._private_key is None or self._closed:
            return None
        with self._locked():
            latest = last_checkpoint_in(self.dir / CHECKPOINTS_FILE)
            covered = latest.get("tree_size") if latest and self._is_ours(latest) else None
            if covered == self._n:
                self._witness(latest)  # catch the witness up after a crash in between
                return None
            if self._n == 0:
                return None
            return self._sign_and_store(self._n)

    def _is_ours(self, checkpoint: dict) -> bool:
        try:
            verify_checkpoint(checkpoint, self._public_key)
        except VerificationError:
            return False
        return True

    def checkpoints(self) -> list[dict]:
        return read_checkpoint_lines(self.dir / CHECKPOINTS_FILE)[0]

    def checkpoint_for(self, tree_size: int) -> dict | None:
        for checkpoint in reversed(self.checkpoints()):
            if checkpoint.get("tree_size") == tree_size:
                return checkpoint
        return None

    # --- proofs ----------------------------------------------------------------------------

    def inclusion_proof(self, event_id: str, tree_size: int | None = None) -> dict:
        """Proof that the event is in the tree of `tree_size` (default: the whole ledger)."""
        with self._locked():
            index = self._record_of(event_id).index
            size = self._n if tree_size is None else tree_size
            if not 0 <= index < size <= self._n:
                raise LedgerError(
                    f"event {event_id} is not in a tree of size {size} "
                    f"(the ledger has {self._n} events)"
                )
            return {
                "type": "inclusion",
                "event_id": event_id,
                "leaf_index": index,
                "tree_size": size,
                "leaf_hash": self._tree.node(0, index).hex(),
                "audit_path": [h.hex() for h in self._tree.inclusion_path(index, size)],
            }

    def consistency_proof(self, first: int, second: int | None = None) -> dict:
        """Proof that the tree of size `second` extends the tree of size `first`."""
        with self._locked():
            second = self._n if second is None else second
            if not 0 <= first <= second <= self._n:
                raise LedgerError(
                    f"consistency needs 0 <= first ({first}) <= second ({second}) <= {self._n}"
                )
            return {
                "type": "consistency",
                "first": first,
                "second": second,
                "first_root": self._tree.root(0, first).hex(),
                "second_root": self._tree.root(0, second).hex(),
                "proof": [h.hex() for h in self._tree.consistency_proof(first, second)],
            }


def load_private_key(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise LedgerError(f"cannot load the audit signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerError(f"{path} is not an Ed25519 private key")
    return key
