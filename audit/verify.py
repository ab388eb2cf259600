"""verify_ledger: recompute the whole ledger from its log and check every signed checkpoint.

Trusts nothing in the ledger directory except the public key given by the caller and,
when given, the **witness**: the governance board's copy of every checkpoint
(`WITNESS/checkpoints.jsonl`), and any checkpoints the caller kept elsewhere. The caches
(offsets, tree levels) are ignored: every leaf hash and root is recomputed.

What it catches and how it names the first bad entry:
- modified entry: its event no longer hashes to its leaf hash -> that entry; if the leaf
  was rewritten too, the first checkpoint covering it fails -> the range since the last
  good checkpoint;
- deleted, inserted, reordered entry: the index/event_id sequence breaks at that position;
- truncated log: a checkpoint (the ledger's, the witness's or a kept one) covers more
  entries than the log holds. Against the witness this catches a cut of any length that
  ends before the last checkpoint (one is made at the end of every command, at shutdown,
  every `checkpoint_every` entries and every `checkpoint_seconds`);
- forged checkpoint: its Ed25519 signature or key id does not verify;
- deleted or cut checkpoints file: a witness checkpoint that the ledger's file lacks (and,
  without a witness, a missing checkpoint at a multiple of `checkpoint_every`);
- a torn write at the tail (crash mid-append) is reported separately: earlier entries are
  still checked and valid.
"""

from __future__ import annotations

import copy
import hashlib
import json
import mmap
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.poly1305 import Poly1305

from audit.checkpoint_files import CHECKPOINTS_FILE, take_checkpoint_line
from audit.guard import scan_for_identifiers
from audit.ledger import DEFAULT_CHECKPOINT_EVERY, LedgerError, index_of
from audit.records import RecordError, decode_record
from audit.verifier import (
    EMPTY_ROOT,
    VerificationError,
    canonical_json,
    leaf_hash,
    load_public_key,
    node_hash,
    verify_checkpoint,
)


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    first_bad: int | None = None
    first_bad_id: str | None = None
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    checkpoints_checked: int = 0
    witness_checkpoints: int | None = None  # None: verified without a witness
    root_hash: str = ""
    torn_tail: dict | None = None

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad_entry": self.first_bad_id,
            "first_bad_index": self.first_bad,
            "problems": self.problems,
            "notices": self.notices,
            "checkpoints_checked": self.checkpoints_checked,
            "witness_checkpoints": self.witness_checkpoints,
            "root_hash": self.root_hash,
            "torn_tail": self.torn_tail,
        }


class _MerkleAccumulator:
    """Roots of every prefix in one pass: a stack of perfect subtree roots (binary counter)."""

    def __init__(self) -> None:
        self.size = 0
        self.stack: list[tuple[int, bytes]] = []  # (height, root)

    def add(self, leaf: bytes) -> None:
        height, node = 0, leaf
        while self.stack and self.stack[-1][0] == height:
            _, left = self.stack.pop()
            node = node_hash(left, node)
            height += 1
        self.stack.append((height, node))
        self.size += 1

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        node = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            node = node_hash(left, node)
        return node


def _event_id_position(event: dict) -> int | None:
    try:
        return index_of(event.get("event_id"))
    except LedgerError:
        return None


def verify_ledger(
    ledger_dir: Path | str,
    public_key_pem: bytes,
    trusted_checkpoints: list[dict] | None = None,
    checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
    witness: Path | str | None = None,
) -> VerifyResult:
    """Recompute everything; the result names the first bad entry if any check fails."""
    return LedgerVerifier(ledger_dir, public_key_pem, checkpoint_every, witness).verify(
        trusted_checkpoints)


class _LogPass:
    """What reading the log's first `entries` complete lines (its first `end` bytes) found.

    Every field is a function of those bytes alone, so while they are unchanged (the same
    tag) the pass can be resumed from where it stopped instead of done again."""

    def __init__(self) -> None:
        self.entries = 0
        self.end = 0
        # Poly1305 tags of bytes [0, end), one per TAG_CHUNK bytes (the last one partial),
        # under a random key that never leaves this process's memory and is never used
        # for anything else: without it, no change to those bytes keeps the tags (but with
        # a chance of about 2**-100). Checking costs one pass, a third of a SHA-256.
        self.tag_key = os.urandom(32)
        self.tags: list[bytes] = []
        self.acc = _MerkleAccumulator()
        self.roots = bytearray(EMPTY_ROOT)  # root of every prefix, 0..entries: 32 bytes each
        self.seen_index: set[int] = set()
        self.findings: list[tuple[int, str]] = []  # (position, problem), in log order
        self.bad_positions: list[int] = []
        self.privacy: list[str] = []

    def root_at(self, size: int) -> bytes:
        return bytes(self.roots[32 * size : 32 * size + 32])

    def take(self, line: bytes) -> dict | None:
        """Check one line (with its LF, unless it is the last). A torn last line is not
        taken: its description is returned instead."""
        position, offset = self.entries, self.end
        where = f"entry #{position} (line {position + 1}, byte {offset})"
        try:
            record = decode_record(line)
        except RecordError as exc:
            if not line.endswith(b"\n"):
                return {"log_offset": offset, "bytes": len(line), "reason": str(exc)}
            self.findings.append((position, f"{where}: damaged record: {exc}"))
            self.bad_positions.append(position)
            self.acc.add(hashlib.sha256(b"damaged" + line).digest())
        else:
            event = record.event
            leaf = leaf_hash(event) if isinstance(event, dict) else b""
            if record.index != position:
                if record.index in self.seen_index or record.index < position:
                    self.findings.append((position,
                        f"{where}: holds index {record.index} again: an entry was inserted "
                        f"or entries reordered at or after index {record.index}"))
                    self.bad_positions.append(min(record.index, position))
                else:
                    self.findings.append((position,
                        f"{where}: holds index {record.index}: entries "
                        f"{position}..{record.index - 1} were deleted or reordered"))
                    self.bad_positions.append(position)
            elif not isinstance(event, dict) or _event_id_position(event) != position:
                self.findings.append((position, f"{where}: event_id does not match its position"))
                self.bad_positions.append(position)
            if leaf != record.leaf:
                self.findings.append(
                    (position, f"{where}: modified: the event does not match its leaf hash"))
                self.bad_positions.append(position)
            self.seen_index.add(record.index)
            self.acc.add(leaf)
            privacy = scan_for_identifiers(event) if isinstance(event, dict) else None
            if privacy:
                self.privacy.append(f"{where}: privacy: {privacy}")
        self.entries += 1
        self.end += len(line)
        self.roots += self.acc.root()
        return None

    def mark(self) -> tuple:
        return (self.entries, self.end, list(self.acc.stack), self.acc.size, len(self.findings),
                len(self.bad_positions), len(self.privacy), set(self.seen_index))

    def undo(self, mark: tuple) -> None:
        """Back to `mark` (an unterminated last line is checked but not kept: it may yet be
        completed, or quarantined, by the writer)."""
        (self.entries, self.end, self.acc.stack, self.acc.size, findings, bad, privacy,
         self.seen_index) = mark
        del self.roots[32 * (self.entries + 1):]
        del self.findings[findings:], self.bad_positions[bad:], self.privacy[privacy:]


TAG_CHUNK = 1 << 20


def _tags_match(fh, state: _LogPass) -> bool:
    """Are the file's first `state.end` bytes still those the pass checked? One Poly1305
    pass over them, read through a memory map (no copy)."""
    with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            for i, tag in enumerate(state.tags):
                chunk = view[i * TAG_CHUNK : min(state.end, (i + 1) * TAG_CHUNK)]
                try:
                    Poly1305.verify_tag(state.tag_key, chunk, tag)
                except InvalidSignature:
                    return False
                finally:
                    chunk.release()
            return True
        finally:
            view.release()


def _retag(fh, state: _LogPass, old_end: int, new_end: int) -> None:
    """Tags for the chunks that [old_end, new_end) touched (the bytes now in the pass)."""
    if new_end == old_end:
        return
    first = old_end // TAG_CHUNK
    del state.tags[first:]
    fh.seek(first * TAG_CHUNK)
    data = fh.read(new_end - first * TAG_CHUNK)
    for lo in range(0, len(data), TAG_CHUNK):
        state.tags.append(Poly1305.generate_tag(state.tag_key, data[lo : lo + TAG_CHUNK]))


class _LineFile:
    """A checkpoints file read again only from where its unchanged part ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = b""  # its bytes up to the last LF, as last read
        self.checkpoints: list[dict] = []
        self.unreadable: list[int] = []
        self.lines = 0

    def read(self) -> tuple[list[dict], list[int]]:
        data = self.path.read_bytes() if self.path.exists() else b""
        if not data.startswith(self.data):  # changed, not just appended to: read it all
            self.__init__(self.path)
        cut = data.rfind(b"\n") + 1
        for line in data[len(self.data) : cut].splitlines():
            self.lines += 1
            take_checkpoint_line(line, self.lines, self.checkpoints, self.unreadable)
        self.data = data[:cut]
        checkpoints, unreadable = list(self.checkpoints), list(self.unreadable)
        if cut < len(data):
            take_checkpoint_line(data[cut:], self.lines + 1, checkpoints, unreadable)
        return checkpoints, unreadable


class LedgerVerifier:
    """`verify_ledger` that can be asked again: each `verify()` gives what a fresh
    `verify_ledger` would, but checks only what changed since the last call.

    The log is append-only, so the expensive part (decoding, re-hashing and scanning each
    entry, the Merkle roots) is kept for the lines already checked, *after* checking that
    those bytes are still exactly what was checked: their Poly1305 tags (one per MB) under
    a key held only in memory are recomputed from the file on every call (no parsing; about
    0.3 ms per MB here, a third of SHA-256). Any change to an old entry changes that tag, and the whole
    log is checked again from scratch, which names the entry as a fresh verify would. The checkpoints files are re-read on every call (their signatures
    are checked once per distinct checkpoint) and every cross-check between checkpoints,
    witness and log is redone, so a new, removed or forged checkpoint counts at once."""

    def __init__(self, ledger_dir: Path | str, public_key_pem: bytes,
                 checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
                 witness: Path | str | None = None) -> None:
        self.ledger_dir = Path(ledger_dir)
        self.key = load_public_key(public_key_pem)
        self.checkpoint_every = checkpoint_every
        self.witness_path = None if witness is None else Path(witness) / CHECKPOINTS_FILE
        self._log = _LogPass()
        self._stored = _LineFile(self.ledger_dir / CHECKPOINTS_FILE)
        self._witnessed = _LineFile(self.witness_path) if self.witness_path else None
        self._signature_checked: dict[bytes, str | None] = {}  # checkpoint -> problem
        self._cond = threading.Condition()
        self._running = False
        self._runs_begun = 0
        self._last: tuple[int, VerifyResult] | None = None  # (run number, its result)
        self._tail: tuple | None = None  # how to forget an unterminated last line
        self.resumed_from = 0  # entries taken from the previous call (0: checked in full)

    def _signature_problem(self, checkpoint: dict) -> str | None:
        try:
            key = canonical_json(checkpoint)
        except (TypeError, ValueError):
            key = None
        if key is not None and key in self._signature_checked:
            return self._signature_checked[key]
        try:
            verify_checkpoint(checkpoint, self.key)
            problem = None
        except VerificationError as exc:
            problem = str(exc)
        if key is not None:
            self._signature_checked[key] = problem
        return problem

    def _read_log(self) -> dict | None:
        """Bring the log pass up to the file; the torn tail, if the last line is one."""
        log_path = self.ledger_dir / "log.jsonl"
        try:
            fh = open(log_path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            self._log = _LogPass()
            self.resumed_from = 0
            return None
        with fh:
            size = os.fstat(fh.fileno()).st_size
            state = self._log
            if not (state.end and size >= state.end and _tags_match(fh, state)):
                state = self._log = _LogPass()  # new, or changed under us: check it all
            self.resumed_from = state.entries
            fh.seek(state.end)
            rest = fh.read()
            start = state.end
            torn = None
            pos = 0
            while pos < len(rest):  # by LF only, as the writer and a file iterator split
                nl = rest.find(b"\n", pos)
                if nl >= 0:
                    state.take(rest[pos : nl + 1])
                    pos = nl + 1
                    continue
                # The last line, unterminated: a write in progress, or torn. Judged as a
                # fresh verify would; if taken as an entry, `verify` forgets it afterwards.
                mark = state.mark()
                torn = state.take(rest[pos:])
                self._tail = mark if torn is None else None
                break
            _retag(fh, state, start, start + pos)
        return torn

    def verify(self, trusted_checkpoints: list[dict] | None = None) -> VerifyResult:
        """What verify_ledger would answer now. Callers that arrive while a verify runs
        wait for it and share the next one, which starts after they arrived (so every
        answer is of the ledger as it was at some moment after the call)."""
        with self._cond:
            arrived = self._runs_begun
            while self._running:
                self._cond.wait()
            last = self._last
            if not trusted_checkpoints and last is not None and last[0] > arrived:
                return copy.deepcopy(last[1])
            self._running = True
            self._runs_begun += 1
            run = self._runs_begun
        result = None
        try:
            result = self._verify_now(trusted_checkpoints)
            return copy.deepcopy(result)
        finally:
            with self._cond:
                self._running = False
                if result is not None and not trusted_checkpoints:
                    self._last = (run, result)
                self._cond.notify_all()

    def _verify_now(self, trusted_checkpoints: list[dict] | None) -> VerifyResult:
        self._tail = None
        try:
            torn_tail = self._read_log()
            return self._result(torn_tail, trusted_checkpoints)
        finally:
            if self._tail is not None:
                self._log.undo(self._tail)
            self._tail = None

    def _result(self, torn_tail: dict | None,
                trusted_checkpoints: list[dict] | None) -> VerifyResult:
        state = self._log
        log_path = self.ledger_dir / "log.jsonl"
        problems: list[str] = []
        notices: list[str] = []
        bad_positions: list[int] = list(state.bad_positions)
        bad_ranges: list[tuple[int, int]] = []

        stored, unreadable = self._stored.read()
        for n in unreadable:
            # A crash mid-write leaves such a line; garbling one is no worse than deleting
            # it, which the witness (or the checkpoint interval) catches.
            notices.append(f"{CHECKPOINTS_FILE} line {n}: not a checkpoint (unreadable; a torn write?)")
        witnessed: list[dict] = []
        if self._witnessed is not None:
            witnessed, unreadable = self._witnessed.read()
            for n in unreadable:
                notices.append(f"witness {self.witness_path} line {n}: not a checkpoint "
                               "(unreadable; a torn write?)")
        checkpoints: list[tuple[str, dict]] = (
            [(f"checkpoint #{i + 1}", c) for i, c in enumerate(stored)]
            + [(f"witness checkpoint #{i + 1}", c) for i, c in enumerate(witnessed)]
            + [(f"trusted checkpoint #{i + 1}", c) for i, c in enumerate(trusted_checkpoints or [])]
        )
        valid: list[tuple[str, dict]] = []
        for label, checkpoint in checkpoints:
            problem = self._signature_problem(checkpoint)
            if problem is None:
                valid.append((label, checkpoint))
            else:
                problems.append(f"{label}: forged or damaged: {problem}")
        for prefix in ("checkpoint #", "witness checkpoint #"):
            previous = None
            for label, checkpoint in (c for c in valid if c[0].startswith(prefix)):
                if previous is not None and checkpoint["tree_size"] < previous["tree_size"]:
                    problems.append(
                        f"{label}: tree size {checkpoint['tree_size']} is smaller than an earlier "
                        f"one's ({previous['tree_size']})"
                    )
                previous = checkpoint
        if self.witness_path is not None:
            _compare_with_witness(valid, stored, self.witness_path, problems, notices,
                                  bad_positions)
        by_size: dict[int, list[tuple[str, dict]]] = {}
        for label, checkpoint in valid:
            by_size.setdefault(checkpoint["tree_size"], []).append((label, checkpoint))

        n = state.entries
        # The log's findings and the checkpoints' roots, in the order a single pass over
        # the log meets them: entry p's findings, then the roots of size p + 1.
        in_order: list[tuple[tuple[int, int], str]] = [((p, 0), m) for p, m in state.findings]
        last_good_checkpoint_size = 0
        for size in sorted(s for s in by_size if s <= n):
            root = state.root_at(size).hex()
            for label, checkpoint in by_size[size]:
                if checkpoint["root_hash"] != root:
                    in_order.append(((size - 1, 1),
                        f"{label} (size {size}): root does not match the log: an entry at index "
                        f">= {last_good_checkpoint_size} and < {size} was altered, removed or "
                        "inserted"))
                    bad_ranges.append((last_good_checkpoint_size, size))
                else:
                    last_good_checkpoint_size = size
        in_order.sort(key=lambda item: item[0])  # stable: same-key messages keep their order
        problems.extend(m for _, m in in_order)
        notices.extend(state.privacy)
        if torn_tail is not None:
            notices.append(
                f"torn write at the tail: {torn_tail['bytes']} bytes at byte "
                f"{torn_tail['log_offset']} after {n} complete entries ({torn_tail['reason']}); "
                "it was never acknowledged and the next append quarantines it"
            )

        for size, labelled in sorted(by_size.items()):
            if size > n:
                for label, _ in labelled:
                    problems.append(
                        f"{label} covers {size} entries but the log holds {n}: the log was "
                        f"truncated (entries #{n}..#{size - 1} are missing)"
                    )
                bad_positions.append(n)
        covered = max((c["tree_size"] for _, c in valid), default=0)
        every = self.checkpoint_every or 0
        expected = (n // every) * every if every else 0
        if covered < expected - every:
            # The ledger signs a checkpoint every `checkpoint_every` appends: more than one
            # interval without any means the checkpoints file was cut or replaced.
            problems.append(
                f"checkpoints missing: the ledger signs one every {every} entries, so "
                f"one of size >= {expected} should exist; the latest valid one covers {covered}"
            )
            bad_positions.append(covered)
        elif covered < expected:
            # One interval: also what a crash between an append and its checkpoint leaves
            # (the ledger signs it when next opened); a witness tells the two apart.
            notices.append(
                f"no checkpoint of size {expected} yet (a crash right after the append that "
                "reached it, signed when the ledger is next opened; or the checkpoint was removed)"
            )
        if self.witness_path is not None and n and not witnessed and not stored:
            notices.append(f"the witness {self.witness_path} holds no checkpoint yet")
        if valid:
            if covered < n:
                notices.append(
                    f"{n - covered} entries after the latest checkpoint are not yet covered by a "
                    "signature (run `joinedup audit checkpoint`)"
                )
        else:
            notices.append("no signed checkpoint: run `joinedup audit checkpoint`")
        recovery = self.ledger_dir / "recovery.jsonl"
        if recovery.exists():
            for line in recovery.read_text().splitlines():
                if line.strip():
                    note = json.loads(line)
                    notices.append(
                        f"recovered torn tail of {note.get('bytes')} bytes after "
                        f"{note.get('entries_before')} entries at {note.get('time')} "
                        f"({note.get('reason')}); quarantined in {note.get('quarantined_to')}"
                    )

        first_bad = _first_bad(bad_positions, bad_ranges)
        return VerifyResult(
            ok=not problems,
            entries=n,
            first_bad=first_bad,
            first_bad_id=None if first_bad is None else _name_of(log_path, first_bad, n),
            problems=problems,
            notices=notices,
            checkpoints_checked=len(valid),
            witness_checkpoints=None if self.witness_path is None else len(witnessed),
            root_hash=state.root_at(n).hex(),
            torn_tail=torn_tail,
        )


_verifiers: dict[tuple, LedgerVerifier] = {}
_verifiers_lock = threading.Lock()


def cached_verifier(ledger_dir: Path | str, public_key_pem: bytes,
                    checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
                    witness: Path | str | None = None) -> LedgerVerifier:
    """This process's LedgerVerifier for a ledger (one per directory, key, interval and
    witness), for a service that verifies on request."""
    key = (str(Path(ledger_dir).resolve()), hashlib.sha256(public_key_pem).digest(),
           checkpoint_every, None if witness is None else str(Path(witness).resolve()))
    with _verifiers_lock:
        verifier = _verifiers.get(key)
        if verifier is None:
            verifier = _verifiers[key] = LedgerVerifier(ledger_dir, public_key_pem,
                                                        checkpoint_every, witness)
        return verifier


def _compare_with_witness(
    valid: list[tuple[str, dict]],
    stored: list[dict],
    witness_path: Path,
    problems: list[str],
    notices: list[str],
    bad_positions: list[int],
) -> None:
    """Every witness checkpoint must still be in the ledger's own file (it was written there
    first); the ledger's may be ahead of the witness only by a crash or an unreachable witness."""
    own = {c.get("signature") for c in stored}
    witness_valid = [c for label, c in valid if label.startswith("witness")]
    if not witness_valid:
        if len(stored) > 1:
            problems.append(
                f"the witness {witness_path} holds no checkpoint but the ledger holds "
                f"{len(stored)}: the witness file was deleted, or never written"
            )
        elif stored:  # what a crash between the ledger's write and the witness's leaves
            notices.append(f"the witness {witness_path} holds no checkpoint yet; the ledger one")
        return
    missing = [c for c in witness_valid if c.get("signature") not in own]
    if missing:
        sizes = ", ".join(str(c["tree_size"]) for c in missing[:5])
        problems.append(
            f"the ledger's {CHECKPOINTS_FILE} lacks {len(missing)} checkpoint(s) the witness "
            f"holds (sizes {sizes}{', ...' if len(missing) > 5 else ''}): it was deleted, cut "
            "or replaced"
        )
        bad_positions.append(min(c["tree_size"] for c in missing))
    witnessed = {c.get("signature") for c in witness_valid}
    unwitnessed = [c for label, c in valid if label.startswith("checkpoint #") and c.get("signature") not in witnessed]
    if unwitnessed:
        notices.append(
            f"{len(unwitnessed)} of the ledger's checkpoints are not at the witness (made before "
            "it was configured, or while it could not be written)"
        )


def _name_of(log_path: Path, position: int, entries: int) -> str:
    """The event id stored at a position, for naming it (read again: it is rare)."""
    if position >= entries or not log_path.exists():
        return f"entry #{position} (missing)"
    with open(log_path, "rb") as fh:
        for i, line in enumerate(fh):
            if i == position:
                try:
                    event_id = decode_record(line).event.get("event_id")
                except (RecordError, AttributeError):
                    event_id = None
                named = isinstance(event_id, str) and _event_id_position({"event_id": event_id}) == position
                return event_id if named else f"entry #{position}"
    return f"entry #{position}"


def _first_bad(exact: list[int], ranges: list[tuple[int, int]]) -> int | None:
    """The earliest named entry; a failed checkpoint's range counts only if no named entry
    in it explains the failure (then its first index is the best that can be said)."""
    candidates = set(exact)
    for lo, hi in ranges:
        if not any(lo <= p < hi for p in exact):
            candidates.add(lo)
    return min(candidates) if candidates else None
