"""Consent records in the embedded store: an append-only history of events, current state
derived from it. Withdrawal and expiry take effect at once (state is computed at the time asked).

The store only ever receives the pseudonymous person key (connectors.pseudonymise.person_key,
computed by the caller); it refuses anything that does not look like one.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from connectors.files import StoreConnection
from consent.catalogue import Catalogue, load_catalogue
from consent.receipts import load_signing_key, sign_receipt

PERSON_KEY_PATTERN = re.compile(r"^[0-9a-f]{32,128}$")
RECEIPT_VERSION = "KI-CR-v1.1.0"

_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS consent_event_seq;
CREATE TABLE IF NOT EXISTS consent_events (
    seq BIGINT PRIMARY KEY DEFAULT nextval('consent_event_seq'),
    event_id VARCHAR NOT NULL UNIQUE,
    event_type VARCHAR NOT NULL,      -- 'granted' | 'withdrawn'
    receipt_id VARCHAR NOT NULL,
    person_key VARCHAR NOT NULL,
    event_at VARCHAR NOT NULL,             -- UTC, YYYY-MM-DDTHH:MM:SSZ
    recorded_by VARCHAR NOT NULL,
    record VARCHAR NOT NULL           -- the consent record after this event (JSON)
);
"""


class ConsentError(Exception):
    """A consent request is invalid (unknown purpose or category, bad key, unknown receipt)."""


class AlreadyWithdrawn(ConsentError):
    """The consent was withdrawn before: a second withdrawal changes nothing."""


def utc_text(value: datetime | str | None = None) -> str:
    """A time as UTC "YYYY-MM-DDTHH:MM:SSZ" (sortable as text); None means now."""
    if value is None:
        moment = datetime.now(UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConsentError(f"not an ISO 8601 time: {value!r}") from exc
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ConsentRecord:
    """One consent, shaped after ISO/IEC TS 27560 (and the Kantara consent receipt)."""

    receipt_id: str
    person_key: str
    controllers: list[str]
    purposes: list[str]
    categories: list[str]           # agency kinds and barrier codes, as in the catalogue
    special_categories: list[str]   # the special-category ones among them, named explicitly
    collection_method: str
    privacy_notice_version: str
    catalogue_version: str
    given_at: str
    expires_at: str
    recorded_by: str
    withdrawn_at: str | None = None
    withdrawn_by: str | None = None

    def status_at(self, at: str) -> str:
        """'active', 'withdrawn', 'expired', or 'none' (not yet given at that time)."""
        if at < self.given_at:
            return "none"
        if self.withdrawn_at is not None and self.withdrawn_at <= at:
            return "withdrawn"
        if self.expires_at <= at:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConsentStore:
    """Consent history in the DuckDB store at store_path (table consent_events)."""

    def __init__(self, store_path: Path, signing_key_path: Path | None = None,
                 catalogue: Catalogue | None = None, shared: bool = False):
        """`shared=False` (the CLI, the demo, one server process): the store stays open
        until `close()` (opening a DuckDB file costs ~20 ms). `shared=True` (several server
        processes on one store): each operation opens the file and closes it again, so the
        processes take turns (connectors.files.StoreConnection)."""
        self.store_path = Path(store_path)
        self.signing_key_path = Path(signing_key_path) if signing_key_path else None
        self.catalogue = catalogue or load_catalogue()
        self._store = StoreConnection(self.store_path, duckdb.connect, shared=shared)
        self._gate = self._store.gate
        # person_key -> receipt_id -> (first seq, latest record): the append-only events
        # folded, so `current()` (on every request) reads no table. None = not loaded.
        # It is exact for the store's write generation it was built at (any process's write
        # bumps the generation, and the next read rebuilds).
        self._index: dict[str, dict[str, tuple[int, ConsentRecord]]] | None = None
        self._index_generation = -1
        self._index_lock = threading.Lock()
        # person_key -> their events' rows in order, for `history()`; same rule as _index.
        self._history: dict[str, list[tuple]] | None = None
        self._history_generation = -1
        with self._store.cursor() as con:
            con.execute(_SCHEMA)

    def close(self) -> None:
        """Release the store file (other processes can then open it)."""
        self._store.close()
        with self._index_lock:  # a writer that bypasses the gate could write meanwhile
            self._index = None
            self._history = None

    def __enter__(self) -> ConsentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing (append only) -----------------------------------------------------------

    def grant(self, person_key: str, purposes: list[str], categories: list[str],
              recorded_by: str, collection_method: str, controllers: list[str] | None = None,
              privacy_notice_version: str | None = None, given_at: datetime | str | None = None,
              expires_at: datetime | str | None = None) -> ConsentRecord:
        """Record a new consent; returns it with a new receipt id."""
        record = self.prepare_grant(person_key, purposes, categories, recorded_by,
                                    collection_method, controllers, privacy_notice_version,
                                    given_at, expires_at)
        self.apply("granted", record)
        return record

    def prepare_grant(self, person_key: str, purposes: list[str], categories: list[str],
                      recorded_by: str, collection_method: str,
                      controllers: list[str] | None = None,
                      privacy_notice_version: str | None = None,
                      given_at: datetime | str | None = None,
                      expires_at: datetime | str | None = None) -> ConsentRecord:
        """A new consent record, validated, with a new receipt id; nothing written yet
        (the caller records it in the ledger first, then `apply`s it)."""
        _check_person_key(person_key)
        cat = self.catalogue
        purposes = _checked_list("purposes", purposes, cat.purposes)
        categories = _checked_list("categories", categories, cat.categories)
        controllers = _checked_list("controllers", controllers or list(cat.controllers),
                                    dict.fromkeys(cat.controllers))
        if collection_method not in cat.collection_methods:
            raise ConsentError(f"collection method {collection_method!r} is not one of "
                               f"{', '.join(cat.collection_methods)}")
        if not isinstance(recorded_by, str) or not recorded_by.strip():
            raise ConsentError("recorded_by must name who recorded the consent")
        given = utc_text(given_at)
        if expires_at is None:
            given_dt = datetime.fromisoformat(given.replace("Z", "+00:00"))
            expires = utc_text(given_dt + timedelta(days=cat.default_duration_days))
        else:
            expires = utc_text(expires_at)
        if expires <= given:
            raise ConsentError(f"expires_at {expires} must be after given_at {given}")
        record = ConsentRecord(
            receipt_id=uuid.uuid4().hex,
            person_key=person_key,
            controllers=controllers,
            purposes=purposes,
            categories=categories,
            special_categories=[c for c in categories if cat.categories[c]["special_category"]],
            collection_method=collection_method,
            privacy_notice_version=privacy_notice_version or cat.privacy_notice_version,
            catalogue_version=cat.version,
            given_at=given,
            expires_at=expires,
            recorded_by=recorded_by,
        )
        return record

    def withdraw(self, receipt_id: str, by: str, at: datetime | str | None = None) -> ConsentRecord:
        """Withdraw a consent from `at` (default now). Takes effect at once."""
        withdrawn = self.prepare_withdraw(self.record(receipt_id), by, at)
        self.apply("withdrawn", withdrawn)
        return withdrawn

    def prepare_withdraw(self, record: ConsentRecord, by: str,
                         at: datetime | str | None = None) -> ConsentRecord:
        """The record as withdrawn (nothing written yet); AlreadyWithdrawn if it was."""
        if not isinstance(by, str) or not by.strip():
            raise ConsentError("withdraw needs to know who recorded the withdrawal")
        if record.withdrawn_at is not None:
            raise AlreadyWithdrawn(f"consent {record.receipt_id} was already withdrawn at "
                                   f"{record.withdrawn_at}")
        return replace(record, withdrawn_at=utc_text(at), withdrawn_by=by)

    def apply(self, event_type: str, record: ConsentRecord, event_id: str | None = None) -> bool:
        """Write one prepared event ('granted' or 'withdrawn'). Idempotent for an event id:
        applying the same event again (recovery after a crash) writes nothing and returns
        False."""
        if event_type not in ("granted", "withdrawn"):
            raise ConsentError(f"unknown consent event {event_type!r}")
        _check_person_key(record.person_key)
        at = record.given_at if event_type == "granted" else record.withdrawn_at
        by = record.recorded_by if event_type == "granted" else record.withdrawn_by
        if at is None or by is None:
            raise ConsentError(f"a {event_type} event needs its time and who recorded it")
        return self._append(event_type, record, at, by, event_id) is not None

    def has_event(self, event_id: str) -> bool:
        with self._store.cursor() as con:
            return bool(con.execute("SELECT count(*) FROM consent_events WHERE event_id = ?",
                                    [event_id]).fetchall()[0][0])

    def find(self, receipt_id: str) -> ConsentRecord | None:
        """The latest state of one consent, or None."""
        try:
            return self.record(receipt_id)
        except ConsentError:
            return None

    def _append(self, event_type: str, record: ConsentRecord, at: str, by: str,
                event_id: str | None = None) -> str | None:
        event_id = event_id or uuid.uuid4().hex
        # Under the index lock, so no reader in this process sees the table ahead of the
        # index; the generation is bumped before the caller hears back, so the next request
        # in any process sees this event.
        with self._index_lock, self._store.cursor() as con:
            inserted = con.execute(
                "INSERT INTO consent_events (event_id, event_type, receipt_id, person_key, event_at, "
                "recorded_by, record) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING seq",
                [event_id, event_type, record.receipt_id, record.person_key, at, by,
                 json.dumps(record.to_dict(), sort_keys=True)],
            ).fetchall()
            if not inserted:  # this event was applied before
                return None
            seq = inserted[0][0]
            generation = self._gate.bump()
            if self._index is not None and self._index_generation == generation - 1:
                receipts = self._index.setdefault(record.person_key, {})
                first = receipts.get(record.receipt_id, (seq, record))[0]
                receipts[record.receipt_id] = (first, record)
                self._index_generation = generation
            else:  # someone else wrote too: rebuild on the next read
                self._index = None
        return event_id

    def _person_records(self, person_key: str) -> list[ConsentRecord]:
        """Latest state of each of a person's consents, oldest first, from the index
        (loaded from the table on first use, or after a write this index did not see)."""
        with self._index_lock:
            generation = self._gate.generation()
            if self._index is None or self._index_generation != generation:
                with self._gate.held():  # no other process writes while we read
                    generation = self._gate.generation()
                    self._index = self._load_index()
                self._index_generation = generation
            receipts = self._index.get(person_key, {})
            return [r for _, r in sorted(receipts.values(), key=lambda fr: fr[0])]

    def _load_index(self) -> dict[str, dict[str, tuple[int, ConsentRecord]]]:
        with self._store.cursor() as con:
            rows = con.execute(
                "SELECT person_key, receipt_id, arg_max(record, seq), min(seq) FROM consent_events "
                "GROUP BY person_key, receipt_id"
            ).fetchall()
        index: dict[str, dict[str, tuple[int, ConsentRecord]]] = {}
        for person_key, receipt_id, record, first in rows:
            index.setdefault(person_key, {})[receipt_id] = (first, ConsentRecord(**json.loads(record)))
        return index

    # --- reading (state derived from the history) ----------------------------------------

    def record(self, receipt_id: str) -> ConsentRecord:
        """The latest state of one consent."""
        with self._store.cursor() as con:
            row = con.execute(
                "SELECT record FROM consent_events WHERE receipt_id = ? ORDER BY seq DESC LIMIT 1",
                [receipt_id],
            ).fetchall()
        if not row:
            raise ConsentError(f"no consent with receipt id {receipt_id!r}")
        return ConsentRecord(**json.loads(row[0][0]))

    def records(self, person_key: str) -> list[ConsentRecord]:
        """Every consent of a person, latest state of each, oldest first."""
        with self._store.cursor() as con:
            rows = con.execute(
                "SELECT receipt_id, arg_max(record, seq), min(seq) AS first FROM consent_events "
                "WHERE person_key = ? GROUP BY receipt_id ORDER BY first",
                [person_key],
            ).fetchall()
        return [ConsentRecord(**json.loads(r[1])) for r in rows]

    def history(self, person_key: str) -> list[dict[str, Any]]:
        """The append-only events of a person, in order (from the history index, read
        again from the table only after a write to the store by any process)."""
        with self._index_lock:
            generation = self._gate.generation()
            if self._history is None or self._history_generation != generation:
                with self._gate.held():  # no other process writes while we read
                    generation = self._gate.generation()
                    with self._store.cursor() as con:
                        rows = con.execute(
                            "SELECT person_key, seq, event_id, event_type, receipt_id, event_at, "
                            "recorded_by, record FROM consent_events ORDER BY seq"
                        ).fetchall()
                history: dict[str, list[tuple]] = {}
                for row in rows:
                    history.setdefault(row[0], []).append(row[1:])
                self._history, self._history_generation = history, generation
            rows = list(self._history.get(person_key, ()))
        return [
            {"seq": r[0], "event_id": r[1], "event": r[2], "receipt_id": r[3], "at": r[4],
             "recorded_by": r[5], "record": json.loads(r[6])}
            for r in rows
        ]

    def current(self, person_key: str, purpose: str, at: datetime | str | None = None,
                controller: str | None = None) -> dict[str, Any]:
        """The policy input's `consent` object for this person and purpose at a time (now).
        With `controller`, only the consents given to that organisation count: another
        organisation's consent is, to it, no consent (and it learns nothing of it)."""
        when = utc_text(at)
        relevant = [r for r in self._person_records(person_key) if purpose in r.purposes
                    and r.status_at(when) != "none"
                    and (controller is None or controller in r.controllers)]
        active = [r for r in relevant if r.status_at(when) == "active"]
        chosen = max(active or relevant, key=lambda r: r.given_at, default=None)
        if chosen is None:
            return {"status": "none", "purposes": [], "categories": [], "receipt_id": None,
                    "expires_at": None, "controllers": [], "person_key": person_key}
        status = chosen.status_at(when)
        return {
            "status": status,
            "purposes": list(chosen.purposes) if status == "active" else [],
            "categories": list(chosen.categories) if status == "active" else [],
            "receipt_id": chosen.receipt_id,
            "expires_at": chosen.expires_at,
            "given_at": chosen.given_at,
            "withdrawn_at": chosen.withdrawn_at,
            "controllers": list(chosen.controllers),
            "person_key": person_key,
        }

    # --- receipts ------------------------------------------------------------------------

    def receipt(self, receipt_id: str) -> dict[str, Any]:
        """The signed receipt JSON of a consent (as it stands now)."""
        if self.signing_key_path is None:
            raise ConsentError("this ConsentStore has no signing key: pass signing_key_path")
        return sign_receipt(self.receipt_body(self.record(receipt_id)),
                            load_signing_key(self.signing_key_path))

    def receipt_body(self, record: ConsentRecord) -> dict[str, Any]:
        cat = self.catalogue
        return {
            "version": RECEIPT_VERSION,
            "jurisdiction": "GB",
            "consentReceiptID": record.receipt_id,
            "consentTimestamp": int(datetime.fromisoformat(record.given_at.replace("Z", "+00:00")).timestamp()),
            "collectionMethod": record.collection_method,
            "piiPrincipalId": record.person_key,
            "piiControllers": [{"piiController": c} for c in record.controllers],
            "privacyNoticeVersion": record.privacy_notice_version,
            "catalogueVersion": record.catalogue_version,
            "services": [{
                "service": "joinedup",
                "purposes": [{
                    "purpose": p,
                    "purposeTitle": cat.purposes.get(p, {}).get("title", p),
                    "consentType": "EXPLICIT",
                    "lawfulBasis": "UK GDPR Article 6(1)(a) and Article 9(2)(a): explicit consent",
                    "piiCategory": list(record.categories),
                    "primaryPurpose": True,
                    "termination": record.expires_at,
                    "thirdPartyDisclosure": True,
                    "thirdPartyName": ", ".join(record.controllers),
                } for p in record.purposes],
            }],
            "sensitive": bool(record.special_categories),
            "spiCat": [cat.category_title(c) for c in record.special_categories],
            "givenAt": record.given_at,
            "expiresAt": record.expires_at,
            "withdrawnAt": record.withdrawn_at,
            "recordedBy": record.recorded_by,
            "issuedAt": utc_text(None),
        }


def _check_person_key(person_key: str) -> None:
    if not isinstance(person_key, str) or not PERSON_KEY_PATTERN.match(person_key):
        raise ConsentError("person_key must be the pseudonymous key (lower-case hex from "
                           "connectors.pseudonymise.person_key), never an identifier")


def _checked_list(field: str, values: list[str] | None, known: dict) -> list[str]:
    if not values:
        raise ConsentError(f"{field}: at least one is needed")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ConsentError(f"{field}: not in the consent catalogue: {', '.join(map(str, unknown))}")
    return sorted(dict.fromkeys(values))
