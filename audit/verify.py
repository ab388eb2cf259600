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

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from audit.guard import scan_for_identifiers
from audit.ledger import (
    CHECKPOINTS_FILE,
    DEFAULT_CHECKPOINT_EVERY,
    LedgerError,
    index_of,
    read_checkpoint_lines,
)
from audit.records import RecordError, decode_record
from audit.verifier import (
    EMPTY_ROOT,
    VerificationError,
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


def _read_checkpoints(path: Path, label: str, notices: list[str]) -> list[dict]:
    checkpoints, unreadable = read_checkpoint_lines(path)
    for n in unreadable:
        # A crash mid-write leaves such a line; garbling one is no worse than deleting it,
        # which the witness (or the checkpoint interval) catches.
        notices.append(f"{label} line {n}: not a checkpoint (unreadable; a torn write?)")
    return checkpoints


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
    ledger_dir = Path(ledger_dir)
    key = load_public_key(public_key_pem)
    problems: list[str] = []
    notices: list[str] = []
    bad_positions: list[int] = []  # entries named exactly
    bad_ranges: list[tuple[int, int]] = []  # [lo, hi) ranges a failed checkpoint points at

    checkpoints_path = ledger_dir / CHECKPOINTS_FILE
    stored = _read_checkpoints(checkpoints_path, CHECKPOINTS_FILE, notices)
    witnessed: list[dict] = []
    witness_path = None
    if witness is not None:
        witness_path = Path(witness) / CHECKPOINTS_FILE
        witnessed = _read_checkpoints(witness_path, f"witness {witness_path}", notices)
    checkpoints: list[tuple[str, dict]] = (
        [(f"checkpoint #{i + 1}", c) for i, c in enumerate(stored)]
        + [(f"witness checkpoint #{i + 1}", c) for i, c in enumerate(witnessed)]
        + [(f"trusted checkpoint #{i + 1}", c) for i, c in enumerate(trusted_checkpoints or [])]
    )
    valid: list[tuple[str, dict]] = []
    for label, checkpoint in checkpoints:
        try:
            verify_checkpoint(checkpoint, key)
            valid.append((label, checkpoint))
        except VerificationError as exc:
            problems.append(f"{label}: forged or damaged: {exc}")
    for prefix in ("checkpoint #", "witness checkpoint #"):
        previous = None
        for label, checkpoint in (c for c in valid if c[0].startswith(prefix)):
            if previous is not None and checkpoint["tree_size"] < previous["tree_size"]:
                problems.append(
                    f"{label}: tree size {checkpoint['tree_size']} is smaller than an earlier "
                    f"one's ({previous['tree_size']})"
                )
            previous = checkpoint
    if witness_path is not None:
        _compare_with_witness(valid, stored, witness_path, problems, notices, bad_positions)
    by_size: dict[int, list[tuple[str, dict]]] = {}
    for label, checkpoint in valid:
        by_size.setdefault(checkpoint["tree_size"], []).append((label, checkpoint))

    acc = _MerkleAccumulator()
    torn_tail = None
    last_good_checkpoint_size = 0

    def check_roots_at(size: int) -> None:
        nonlocal last_good_checkpoint_size
        root = acc.root().hex()
        for label, checkpoint in by_size.get(size, []):
            if checkpoint["root_hash"] != root:
                problems.append(
                    f"{label} (size {size}): root does not match the log: an entry at index "
                    f">= {last_good_checkpoint_size} and < {size} was altered, removed or inserted"
                )
                bad_ranges.append((last_good_checkpoint_size, size))
            else:
                last_good_checkpoint_size = size

    check_roots_at(0)
    log_path = ledger_dir / "log.jsonl"
    position = 0
    offset = 0
    seen_index: set[int] = set()
    with open(log_path, "rb") if log_path.exists() else open("/dev/null", "rb") as fh:
        for line in fh:
            where = f"entry #{position} (line {position + 1}, byte {offset})"
            is_last_line = not line.endswith(b"\n")
            try:
                record = decode_record(line)
            except RecordError as exc:
                if is_last_line:
                    torn_tail = {"log_offset": offset, "bytes": len(line), "reason": str(exc)}
                    notices.append(
                        f"torn write at the tail: {len(line)} bytes at byte {offset} after "
                        f"{position} complete entries ({exc}); it was never acknowledged and "
                        "the next append quarantines it"
                    )
                    break
                problems.append(f"{where}: damaged record: {exc}")
                bad_positions.append(position)
                acc.add(hashlib.sha256(b"damaged" + line).digest())
            else:
                event = record.event
                leaf = leaf_hash(event) if isinstance(event, dict) else b""
                if record.index != position:
                    if record.index in seen_index or record.index < position:
                        problems.append(
                            f"{where}: holds index {record.index} again: an entry was inserted "
                            f"or entries reordered at or after index {record.index}"
                        )
                        bad_positions.append(min(record.index, position))
                    else:
                        problems.append(
                            f"{where}: holds index {record.index}: entries "
                            f"{position}..{record.index - 1} were deleted or reordered"
                        )
                        bad_positions.append(position)
                elif not isinstance(event, dict) or _event_id_position(event) != position:
                    problems.append(f"{where}: event_id does not match its position")
                    bad_positions.append(position)
                if leaf != record.leaf:
                    problems.append(f"{where}: modified: the event does not match its leaf hash")
                    bad_positions.append(position)
                seen_index.add(record.index)
                acc.add(leaf)
                privacy = scan_for_identifiers(event) if isinstance(event, dict) else None
                if privacy:
                    notices.append(f"{where}: privacy: {privacy}")
            position += 1
            offset += len(line)
            check_roots_at(position)

    n = position
    for size, labelled in sorted(by_size.items()):
        if size > n:
            for label, _ in labelled:
                problems.append(
                    f"{label} covers {size} entries but the log holds {n}: the log was "
                    f"truncated (entries #{n}..#{size - 1} are missing)"
                )
            bad_positions.append(n)
    covered = max((c["tree_size"] for _, c in valid), default=0)
    every = checkpoint_every or 0
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
        # One interval: also what a crash between an append and its checkpoint leaves (the
        # ledger signs it when next opened); a witness tells the two apart.
        notices.append(
            f"no checkpoint of size {expected} yet (a crash right after the append that "
            "reached it, signed when the ledger is next opened; or the checkpoint was removed)"
        )
    if witness_path is not None and n and not witnessed and not stored:
        notices.append(f"the witness {witness_path} holds no checkpoint yet")
    if valid:
        if covered < n:
            notices.append(
                f"{n - covered} entries after the latest checkpoint are not yet covered by a "
                "signature (run `joinedup audit checkpoint`)"
            )
    else:
        notices.append("no signed checkpoint: run `joinedup audit checkpoint`")
    recovery = ledger_dir / "recovery.jsonl"
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
        witness_checkpoints=None if witness_path is None else len(witnessed),
        root_hash=acc.root().hex(),
        torn_tail=torn_tail,
    )


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
