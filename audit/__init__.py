"""audit: the tamper-evident ledger (see docs/CONTRACTS.md "Audit events" and docs/AUDIT.md).

Public surface:
    LedgerSettings.from_table(home.settings["audit"], home.root).open(ledger_dir, key_path)
        -> Ledger   (checkpoint interval, witness directory; validated, LedgerError if bad)
    Ledger(ledger_dir, signing_key_path, checkpoint_every=, checkpoint_seconds=, witness=)
    Ledger.append(event) -> event_id   durable on return; identifier-like values are stored
        redacted (never raised); EventRejected only for a malformed event
    Ledger.append_many, checkpoint, close, inclusion_proof, consistency_proof, events, get
    checkpoint_open_ledgers(ledgers_opened() mark)   the CLI (end of every command) and the server (shutdown) call it
    find_identifiers(fields) -> [Finding]   check a request's free-text/code fields BEFORE acting
    redact_identifiers(value) -> (value, [Finding])
    verify_ledger(ledger_dir, public_key_pem, trusted, checkpoint_every, witness) -> VerifyResult
    build_report(ledger, from, to) -> dict; render_report_html(report) -> str
    subject_access(ledger, person_key) -> list[dict]
    LedgerError: the ledger cannot record (damaged, cut, witness unwritable...): answer 503
"""

from audit.guard import EventRejected, Finding, check_event, find_identifiers, redact_identifiers
from audit.ledger import (
    Ledger,
    LedgerError,
    LedgerSettings,
    checkpoint_open_ledgers,
    ledgers_opened,
)
from audit.report import ReportError, build_report, subject_access
from audit.report_html import render_report_html
from audit.verify import VerifyResult, verify_ledger

__all__ = [
    "EventRejected",
    "Finding",
    "Ledger",
    "LedgerError",
    "LedgerSettings",
    "ReportError",
    "VerifyResult",
    "build_report",
    "check_event",
    "checkpoint_open_ledgers",
    "find_identifiers",
    "ledgers_opened",
    "redact_identifiers",
    "render_report_html",
    "subject_access",
    "verify_ledger",
]
