"""audit: the tamper-evident ledger (see docs/CONTRACTS.md "Audit events" and docs/AUDIT.md).

Public surface (joinedup opens the ledger with `Home.open_ledger()`, which does the first line):
    LedgerSettings.from_table(home.settings["audit"], home.root).open(ledger_dir, key_path)
        -> Ledger   (checkpoint interval, witness directory; validated, LedgerError if bad)
    Ledger(ledger_dir, signing_key_path, checkpoint_every=, checkpoint_seconds=, witness=)
    Ledger.append(event) -> event_id   durable on return; identifier-like values are stored
        redacted (never raised); EventRejected only for a malformed event
    Ledger.append_many, checkpoint, close, inclusion_proof, consistency_proof, events, get
    checkpoint_open_ledgers(mark from ledgers_opened())   called by the CLI at the end of
        every command and by the server at shutdown
    EventRejected: a malformed event (a bug in the caller)
    find_identifiers(fields) -> [Finding]   check a request's free-text/code fields BEFORE acting
    redact_identifiers(value) -> (value, [Finding])
    verify_ledger(ledger_dir, public_key_pem, trusted, checkpoint_every, witness) -> VerifyResult
    cached_verifier(ledger_dir, public_key_pem, checkpoint_every, witness) -> LedgerVerifier
        `.verify()` answers as verify_ledger does, re-checking only what changed since the
        last call (the service's `audit.verify`)
    build_report(ledger, from, to) -> dict; render_report_html(report) -> str
    whole_ledger_report(ledger) -> dict   build_report(ledger, None, None), kept up to date
        incrementally per ledger (only entries appended since the last call are read)
    subject_access(ledger, person_key) -> list[dict]
    LedgerError: the ledger cannot record (damaged, cut, witness unwritable...): answer 503
"""

from audit.guard import EventRejected, Finding, check_event, find_identifiers, redact_identifiers
from audit.ledger import Ledger, LedgerError, checkpoint_open_ledgers, ledgers_opened
from audit.report import (
    ReportError,
    build_report,
    report_index,
    subject_access,
    whole_ledger_report,
)
from audit.report_html import render_report_html
from audit.settings import LedgerSettings
from audit.verify import LedgerVerifier, VerifyResult, cached_verifier, verify_ledger

__all__ = [
    "EventRejected",
    "Finding",
    "Ledger",
    "LedgerError",
    "LedgerSettings",
    "LedgerVerifier",
    "ReportError",
    "VerifyResult",
    "build_report",
    "cached_verifier",
    "check_event",
    "checkpoint_open_ledgers",
    "find_identifiers",
    "ledgers_opened",
    "redact_identifiers",
    "render_report_html",
    "report_index",
    "subject_access",
    "verify_ledger",
    "whole_ledger_report",
]
