"""audit: the tamper-evident ledger (see docs/CONTRACTS.md "Audit events" and docs/AUDIT.md).

Public surface:
    Ledger(ledger_dir, signing_key_path).append(event) -> event_id   (durable on return)
    Ledger.append_many, checkpoint, inclusion_proof, consistency_proof, events, get
    verify_ledger(ledger_dir, public_key_pem) -> VerifyResult
    build_report(ledger, from, to) -> dict; render_report_html(report) -> str
    subject_access(ledger, person_key) -> list[dict]
    EventRejected (raised by append for a malformed event or a raw identifier)
"""

from audit.guard import EventRejected, check_event
from audit.ledger import Ledger, LedgerError
from audit.report import ReportError, build_report, subject_access
from audit.report_html import render_report_html
from audit.verify import VerifyResult, verify_ledger

__all__ = [
    "EventRejected",
    "Ledger",
    "LedgerError",
    "ReportError",
    "VerifyResult",
    "build_report",
    "check_event",
    "render_report_html",
    "subject_access",
    "verify_ledger",
]
