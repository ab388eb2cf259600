"""The `[audit]` settings of a deployment: checkpoint interval and the witness directory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.ledger import DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_SECONDS, Ledger, LedgerError


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
