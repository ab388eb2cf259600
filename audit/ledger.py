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

Durability: an append returns only after its line is written with O_APPEND and fsynced.
Appends from threads of one process are grouped (group commit: whoever holds the lock
writes everybody's pending events and fsyncs once), so throughput grows with load.
The caches are written after the fsync and rebuilt from the log if a crash left them short.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from audit.guard import check_event
from audit.records import Record, RecordError, decode_record, encode_record
from audit.tree import TreeCache
from audit.verifier import (
    CHECKPOINT_VERSION,
    canonical_json,
    leaf_hash,
    public_key_id,
)

OFFSET = struct.Struct(">Q")
DEFAULT_CHECKPOINT_EVERY = 1000


class LedgerError(Exception):
    """The ledger cannot be opened or written (corrupt beyond a torn tail, missing key...)."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def event_id_for(index: int) -> str:
    """Event ids name their position, so `prove EVENT_ID` needs no lookup table."""
    return f"ev-{index:010d}"


def index_of(event_id: str) -> int:
    if not event_id.startswith("ev-") or not event_id[3:].isdigit():
        raise LedgerError(f"{event_id!r} is not an event id (ev-NNNNNNNNNN)")
    return int(event_id[3:])


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
    ) -> None:
        self.dir = Path(ledger_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_every = checkpoint_every
        self._private_key = None
        if signing_key_path is not None:
            self._private_key = load_private_key(Path(signing_key_path))
            self._write_public_key()
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._log_fd = os.open(self.dir / "log.jsonl", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._off_fd = os.open(self.dir / "offsets.bin", os.O_RDWR | os.O_CREAT, 0o644)
        self._tree = TreeCache(self.dir / "tree")
        self._n = 0
        self._log_end = -1  # unknown until the first refresh
        self._cv = threading.Condition()
        self._queue: list[_Pending] = []
        self._committing = False
        self._io = threading.RLock()  # serialises this process's file work (flock is per fd)
        with self._locked():
            pass

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
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

        pem = self._private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        path = self.public_key_path
        if not path.exists() or path.read_bytes() != pem:
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(pem)
            os.replace(tmp, path)

    @property
    def key_id(self) -> str:
        from cryptography.hazmat.primitives import serialization

        if self._private_key is None:
            raise LedgerError("this ledger was opened without its signing key")
        raw = self._private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return public_key_id(raw)

    # --- appending -------------------------------------------------------------------------

    def append(self, event: dict) -> str:
        """Validate, append and fsync one event; return its event_id."""
        return self.append_many([event])[0]

    def append_many(self, events: list[dict]) -> list[str]:
        """Append several events with one fsync; all or none are validated first."""
        prepared = []
        for event in events:
            event = dict(event)
            if not event.get("time"):
                event["time"] = utc_now()
            check_event(event)
            prepared.append(event)
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
                start = self._n
                lines, leaves, ends = [], [], []
                end = self._log_end
                index = start
                for pending in batch:
                    for event in pending.events:
                        event_id = event_id_for(index)
                        stored = {**event, "event_id": event_id}
                        line, leaf = encode_record(index, stored)
                        lines.append(line)
                        leaves.append(leaf)
                        end += len(line)
                        ends.append(OFFSET.pack(end))
                        pending.ids.append(event_id)
                        index += 1
                data = b"".join(lines)
                written = 0
                while written < len(data):
                    written += os.write(self._log_fd, data[written:])
                os.fsync(self._log_fd)
                # Durable from here; the caches below are rebuilt from the log if lost.
                os.pwrite(self._off_fd, b"".join(ends), start * OFFSET.size)
                self._tree.append(start, leaves)
                self._n, self._log_end = index, end
                every = self.checkpoint_every
                if self._private_key is not None and every:
                    # A checkpoint at every multiple of `every` this batch crossed, so that
                    # verify can narrow a rewritten entry down to one interval.
                    for size in range((start // every + 1) * every, index + 1, every):
                        self._sign_and_store(size)
        except BaseException as exc:
            for pending in batch:
                pending.error = exc
                pending.ids = []
        finally:
            for pending in batch:
                pending.done = True

    # --- locking and crash recovery --------------------------------------------------------

    class _Locked:
        def __init__(self, ledger: Ledger) -> None:
            self.ledger = ledger

        def __enter__(self) -> None:
            self.ledger._io.acquire()
            try:
                fcntl.flock(self.ledger._lock_fd, fcntl.LOCK_EX)
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
        n = os.fstat(self._off_fd).st_size // OFFSET.size
        while n and self._end_of(n - 1) > log_size:  # offsets beyond the log: drop them
            n -= 1
        os.ftruncate(self._off_fd, n * OFFSET.size)
        end = self._end_of(n - 1) if n else 0
        if end < log_size:
            n, end = self._index_tail(n, end, log_size)
        self._tree.sync_to(n, self._leaves_from_log)
        self._n, self._log_end = n, end

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
        if ends:
            os.pwrite(self._off_fd, b"".join(ends), n * OFFSET.size)
        n += len(ends)
        if bad_reason is not None:
            self._quarantine_tail(end + pos, data[pos:], bad_reason, n)
        return n, end + pos

    def _quarantine_tail(self, offset: int, tail: bytes, reason: str, after: int) -> None:
        # A complete, valid record after the bad bytes would mean this is not a torn
        # append but damage in the middle: refuse rather than discard good entries.
        for line in tail.split(b"\n")[1:]:
            try:
                decode_record(line)
            except RecordError:
                continue
            raise LedgerError(
                f"{self.dir / 'log.jsonl'}: bad record at byte {offset} ({reason}) is followed "
                "by valid records; this is not a torn write. Run `joinedup audit verify`."
            )
        torn_dir = self.dir / "torn"
        torn_dir.mkdir(exist_ok=True)
        stamp = utc_now().replace(":", "").replace("-", "")
        saved = torn_dir / f"torn-{offset}-{stamp}.bin"
        saved.write_bytes(tail)
        note = {
            "time": utc_now(),
            "log_offset": offset,
            "bytes": len(tail),
            "entries_before": after,
            "reason": reason,
            "quarantined_to": str(saved.relative_to(self.dir)),
        }
        with open(self.dir / "recovery.jsonl", "ab") as fh:
            fh.write(canonical_json(note) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.ftruncate(self._log_fd, offset)
        os.fsync(self._log_fd)

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

    def get(self, event_id: str) -> dict:
        index = index_of(event_id)
        with self._locked():
            if index >= self._n:
                raise LedgerError(f"no event {event_id} (the ledger has {self._n} events)")
            record = next(self._read_records(index, index + 1))
        return record.event

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
        with open(self.dir / "checkpoints.jsonl", "ab") as fh:
            fh.write(canonical_json(checkpoint) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        return checkpoint

    def checkpoint(self) -> dict:
        """Sign (and store) a checkpoint of the whole ledger as it is now."""
        with self._locked():
            latest = self._latest_checkpoint()
            if latest is not None and latest.get("tree_size") == self._n:
                return latest
            return self._sign_and_store(self._n)

    def checkpoints(self) -> list[dict]:
        path = self.dir / "checkpoints.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn checkpoint line; verify_ledger reports it
        return out

    def _latest_checkpoint(self) -> dict | None:
        stored = self.checkpoints()
        return stored[-1] if stored else None

    def checkpoint_for(self, tree_size: int) -> dict | None:
        for checkpoint in reversed(self.checkpoints()):
            if checkpoint.get("tree_size") == tree_size:
                return checkpoint
        return None

    # --- proofs ----------------------------------------------------------------------------

    def inclusion_proof(self, event_id: str, tree_size: int | None = None) -> dict:
        """Proof that the event is in the tree of `tree_size` (default: the whole ledger)."""
        index = index_of(event_id)
        with self._locked():
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

