"""Collation requests, composed from every concern (shared by the CLI and the HTTP API).

A summary request: pseudonymise the identifiers at once (person key + encoding), look up
consent, resolve the person against the current link run, ask the policy engine, apply its
obligations (barrier categories and agency kinds), decrypt only that person's content rows
of the permitted kinds, build the summary, and record the decision and the disclosure in
the audit ledger. A refusal is recorded too (the policy decision event) and raised as
`Refused`. Area counts: ask the policy, count every linked person by area, apply
disclosure control, record the disclosure.

Raw identifiers live only in the caller's memory for the length of the request: they are
never logged, stored or put in an event.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq

from joinedup.service_context import (
    CollationInputError,
    InvalidIdentifiers,
    NotFound,
    Refused,
    ServiceContext,
    now_iso,
    standardise_identifiers,
)
from joinedup.users import User
from linkage.collation import (
    DisclosureSettings,
    Taxonomy,
    area_of,
    area_profiles,
    assess_barriers,
    build_barrier_summary,
    count_by_area,
    load_taxonomy,
    protect,
    read_area_lookup,
    write_outputs,
)
from linkage.collation.area_counts import ROW_TOTAL_COLUMN, SUPPRESSED_MARK, TOTAL_ROW
from linkage.collation.resolve import (
    MATCHED,
    Resolution,
    ResolutionSettings,
    Scorer,
    resolve_person,
)
from linkage.collation.taxonomy import parse_date

TAXONOMY_FILE = "taxonomy.toml"
AREA_LOOKUP_FILE = "areas-lookup.csv"
SUMMARY_PURPOSE = "employment_support"
AREA_PURPOSE = "service_planning"
LEVELS = ("sector", "district", "ward", "lsoa")
STRONG_TOKENS = ("tk_nino", "tk_nhs")  # unique per person: an exact match elsewhere needs review


@dataclass(frozen=True)
class ExtractInfo:
    source: str
    kind: str
    extract_id: str
    directory: Path
    encoding: dict[str, Any]


class RunIndex:
    """The current run's entity -> (source, ref) map and the active extracts' content."""

    def __init__(self, run_dir: Path, extracts: dict[str, ExtractInfo]) -> None:
        self.run_dir = run_dir
        self.extracts = extracts
        table = pq.read_table(run_dir / "entities.parquet", columns=["entity_id", "source", "ref"])
        self._strong: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self._refs: dict[str, list[tuple[str, str]]] = {}
        self._entity: dict[tuple[str, str], str] = {}
        for entity, source, ref in zip(*(table.column(c).to_pylist() for c in ("entity_id", "source", "ref")), strict=True):
            self._refs.setdefault(entity, []).append((source, ref))
            self._entity[(source, ref)] = entity

    def refs_of(self, entity_id: str) -> list[tuple[str, str]]:
        return list(self._refs.get(entity_id, []))

    def entity_of(self, source: str, ref: str) -> str | None:
        return self._entity.get((source, ref))

    def kind_of(self, source: str) -> str | None:
        info = self.extracts.get(source)
        return info.kind if info else None

    def entities(self) -> dict[str, list[tuple[str, str]]]:
        return self._refs

    def sharing_strong_identifier(self, encoded: dict[str, Any]) -> set[str]:
        """Entities with a record whose NI or NHS number token equals the probe's."""
        if self._strong is None:
            self._strong = self._load_strong_index()
        found: set[str] = set()
        for column, (tokens, entities) in self._strong.items():
            value = encoded.get(column)
            if value is None or len(tokens) == 0:
                continue
            lo = int(np.searchsorted(tokens, value, side="left"))
            hi = int(np.searchsorted(tokens, value, side="right"))
            found.update(entities[lo:hi].tolist())
        return found

    def _load_strong_index(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Sorted token arrays of the active extracts' linkage files (tokens only)."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for column in STRONG_TOKENS:
            tokens, entities = [], []
            for info in self.extracts.values():
                table = pq.read_table(info.directory / "linkage.parquet", columns=["ref", column])
                for ref, token in zip(table.column("ref").to_pylist(),
                                      table.column(column).to_pylist(), strict=True):
                    entity = self._entity.get((info.source, ref))
                    if token is not None and entity is not None:
                        tokens.append(token)
                        entities.append(entity)
            order = np.argsort(np.array(tokens, dtype=np.int64), kind="stable")
            out[column] = (np.array(tokens, dtype=np.int64)[order],
                           np.array(entities, dtype=object)[order])
        return out

    def encoding(self) -> dict[str, Any]:
        for info in self.extracts.values():
            if info.encoding:
                return info.encoding
        return {}


_cache_lock = threading.Lock()
_run_cache: dict[tuple, RunIndex] = {}
_encoder_cache: dict[tuple, Any] = {}


# A request must not re-read files the run has not changed: the run index and the taxonomy
# are kept in memory and their files re-checked at most this often (seconds). A new link
# run, ingest or taxonomy is therefore seen by the service within this interval.
REVALIDATE_SECONDS = 1.0
_checked: dict[tuple, tuple[float, Any]] = {}  # (what, home) -> (checked at, value)


def _recent(key: tuple) -> Any | None:
    found = _checked.get(key)
    if found is not None and time.monotonic() - found[0] < REVALIDATE_SECONDS:
        return found[1]
    return None


def load_collation_taxonomy(home) -> Taxonomy:
    """The home's taxonomy, parsed once and re-read only when its file changes."""
    key = ("taxonomy", str(home.root))
    taxonomy = _recent(key)
    if taxonomy is None:
        path = home.config_file(TAXONOMY_FILE)
        stamp = (str(path), path.stat().st_mtime_ns)
        previous = _checked.get(key)
        if previous is not None and previous[1][0] == stamp:
            taxonomy = previous[1][1]
        else:
            taxonomy = load_taxonomy(path)
        _checked[key] = (time.monotonic(), (stamp, taxonomy))
        return taxonomy
    return taxonomy[1]


def current_run_index(ctx: ServiceContext) -> RunIndex:
    """The current run's index (entity → refs, content positions), in memory; which run is
    current and which extracts are active is re-checked at most every REVALIDATE_SECONDS."""
    key = ("run", str(ctx.home.root))
    index = _recent(key)
    if index is None:
        index = _load_current_run_index(ctx)
        _checked[key] = (time.monotonic(), index)
    return index


def _load_current_run_index(ctx: ServiceContext) -> RunIndex:
    run_dir = ctx.current_run_dir()
    if not (run_dir / "entities.parquet").exists():
        raise NotFound(f"the current link run {run_dir.name} has no entities.parquet")
    extracts = active_extracts(ctx)
    stamp = (str(run_dir), (run_dir / "entities.parquet").stat().st_mtime_ns,
             tuple(sorted((s, e.extract_id) for s, e in extracts.items())))
    with _cache_lock:
        index = _run_cache.get(stamp)
        if index is None:
            index = RunIndex(run_dir, extracts)
            _run_cache.clear()
            _run_cache[stamp] = index
            active = {e.extract_id for e in extracts.values()}
            for stale in [x for x in _content_cache if x not in active]:
                del _content_cache[stale]  # a replaced extract's ciphertexts
    return index


def active_extracts(ctx: ServiceContext) -> dict[str, ExtractInfo]:
    """source -> its active extract, from the store's `extracts` table (linkage ingest)."""
    try:
        rows = ctx.active_extract_rows()
    except duckdb.CatalogException as exc:  # the table appears with the first ingest
        raise NotFound("no extract has been ingested yet (run `joinedup ingest`)") from exc
    found: dict[str, ExtractInfo] = {}
    for source, kind, extract_id, manifest in rows:
        doc = manifest if isinstance(manifest, dict) else json.loads(manifest or "{}")
        found[source] = ExtractInfo(source, kind, extract_id,
                                    ctx.home.extracts_dir / source / extract_id,
                                    doc.get("encoding") or {})
    return found


def decrypt_content(ctx: ServiceContext, index: RunIndex, refs: list[tuple[str, str]]) -> list[dict]:
    """Decrypt exactly the content rows of these (source, ref) pairs, nothing else."""
    from connectors.content import decrypt_rows

    wanted: dict[str, list[str]] = {}
    for source, ref in refs:
        wanted.setdefault(source, []).append(ref)
    key = ctx.keyring.content_key()
    docs: list[dict] = []
    for source, source_refs in sorted(wanted.items()):
        info = index.extracts.get(source)
        if info is None:
            continue  # the source's extract was withdrawn since the run
        ciphertexts = _content_rows(info)
        # Take only the ciphertexts of these refs, then decrypt them.
        positions = sorted({p for r in source_refs if (p := ciphertexts.position.get(r)) is not None})
        if positions:
            docs.extend(decrypt_rows(key, info.extract_id, ciphertexts.rows(positions)))
    return docs


@dataclass
class _Ciphertexts:
    table: Any  # pyarrow Table of {ref, nonce, ciphertext}: still encrypted
    position: dict[str, int]

    def rows(self, positions: list[int]) -> list[dict[str, Any]]:
        """The rows at these positions (a few per request: reading the cells one by one
        costs ~7 µs, a pyarrow `take` ~50 µs)."""
        columns = [(name, self.table.column(name)) for name in ("ref", "nonce", "ciphertext")]
        return [{name: column[p].as_py() for name, column in columns} for p in positions]


_content_cache: dict[str, _Ciphertexts] = {}


def _content_rows(info: ExtractInfo) -> _Ciphertexts:
    """An extract's encrypted content rows, loaded once per process, indexed by ref."""
    with _cache_lock:
        cached = _content_cache.get(info.extract_id)
        if cached is None:
            table = pq.read_table(info.directory / "content.parquet",
                                  columns=["ref", "nonce", "ciphertext"], memory_map=True)
            cached = _Ciphertexts(table, {r: i for i, r in enumerate(table.column("ref").to_pylist())})
            _content_cache[info.extract_id] = cached
    return cached


def encode_identity(ctx: ServiceContext, index: RunIndex, identifiers) -> dict:
    """The linkage row of these identifiers (raw dict, or already standardised)."""
    from connectors.pseudonymise import EncodingSettings, IdentityEncoder

    ident = standardise_identifiers(identifiers) if isinstance(identifiers, dict) else identifiers

    encoding = index.encoding()
    stamp = (ctx.home.project_id, json.dumps(encoding, sort_keys=True))
    with _cache_lock:
        encoder = _encoder_cache.get(stamp)
        if encoder is None:
            encoder = IdentityEncoder(ctx.keyring, EncodingSettings.from_dict(encoding or None))
            _encoder_cache[stamp] = encoder
    return encoder.encode_standardised(ident)


def resolve_identifiers(
    ctx: ServiceContext, identifiers, scorer: Scorer | None = None
) -> Resolution:
    """Which entity of the current run these identifiers belong to (for referrals too)."""
    index = current_run_index(ctx)
    encoded = encode_identity(ctx, index, identifiers)
    return resolve_person(encoded, index.run_dir, scorer=scorer,
                          settings=resolution_settings(ctx.home.settings),
                          entity_of=index.entity_of,
                          sharing_strong_identifier=index.sharing_strong_identifier(encoded))


def resolution_settings(settings: dict) -> ResolutionSettings:
    """Thresholds from the home's joinedup.toml `[resolution]` table (defaults if absent)."""
    doc = settings.get("resolution", {})
    known = {"match_probability", "plausible_probability"}
    if not isinstance(doc, dict) or set(doc) - known:
        raise CollationInputError(
            f"joinedup.toml [resolution]: only {', '.join(sorted(known))} are allowed"
        )
    try:
        return ResolutionSettings(**{k: float(v) for k, v in doc.items()})
    except (TypeError, ValueError) as exc:
        raise CollationInputError(f"joinedup.toml [resolution]: {exc}") from exc


def person_key_of(ctx: ServiceContext, identifiers) -> str:
    try:
        return ctx.person_key(identifiers)
    except CollationInputError:
        raise
    except ValueError as exc:  # StandardisationError names the fields, never their values
        raise CollationInputError(f"the identifiers cannot identify a person: {exc}") from exc


def request_summary(
    ctx: ServiceContext,
    subject: dict,
    identifiers: dict,
    purpose: str = SUMMARY_PURPOSE,
    categories: list[str] | None = None,
    provider: str | None = None,
    adjustment_gbp: float = 0.0,
    adjustment_reason: str | None = None,
    action: str = "summary.request",
    scorer: Scorer | None = None,
    as_of: date | None = None,
) -> dict[str, Any]:
    """A consented barrier summary of the person these identifiers resolve to.

    Returns {"outcome": "matched", "summary": {...}, "text": "...", "decision_id"} or, when
    the identifiers do not resolve to exactly one person, {"outcome": "no_match" |
    "needs_review", "reason", "decision_id"} with no summary. Raises `Refused` when the
    policy says no (the refusal is in the ledger). One ledger entry either way.
    """
    with ctx.one_entry():
        return _request_summary(ctx, subject, identifiers, purpose, categories, provider,
                                adjustment_gbp, adjustment_reason, action, scorer, as_of)


def _request_summary(ctx, subject, identifiers, purpose, categories, provider, adjustment_gbp,
                     adjustment_reason, action, scorer, as_of) -> dict[str, Any]:
    user = _user(subject)
    identity = standardise_identifiers(identifiers) if isinstance(identifiers, dict) else identifiers
    person_key = person_key_of(ctx, identity)
    consent = ctx.consent.current(person_key, purpose, now_iso())
    resolution = resolve_identifiers(ctx, identity, scorer=scorer)
    index = current_run_index(ctx)
    refs = index.refs_of(resolution.entity_id) if resolution.outcome == MATCHED else []
    kinds = sorted({k for s, _ in refs if (k := index.kind_of(s))})
    resource: dict[str, Any] = {"person_key": person_key, "categories": list(categories or []),
                                "sources": kinds}
    if provider:
        resource.update(provider=provider, referred_to=[provider])
    decision = ctx.decide(user, action, resource, purpose=purpose, consent=consent)
    if resolution.outcome != MATCHED:
        # Allowed, nothing disclosed: the request's one entry is the decision saying so.
        ctx.audit(ctx.decision_event(decision, outcome=resolution.outcome, disclosed=False))
        return {**resolution.public(), "decision_id": decision.decision_id, "summary": None}
    return _disclose_summary(
        ctx, user, index, person_key, resolution.entity_id, refs, decision, consent, purpose,
        adjustment_gbp, adjustment_reason, as_of, provider=provider,
    )


def request_referral_summary(ctx: ServiceContext, subject: dict, referral: Any,
                             as_of: date | None = None) -> dict[str, Any]:
    """A provider's view of a referral: only the barriers it was asked to address."""
    with ctx.one_entry():
        return _request_referral_summary(ctx, subject, referral, as_of)


def _request_referral_summary(ctx: ServiceContext, subject: dict, referral: Any,
                              as_of: date | None) -> dict[str, Any]:
    user = _user(subject)
    if not getattr(referral, "entity_id", None):
        raise NotFound(f"referral {referral.referral_id} has no resolved person")
    consent = ctx.consent.current(referral.person_key, referral.purpose, now_iso())
    index = current_run_index(ctx)
    refs = index.refs_of(referral.entity_id)
    kinds = sorted({k for s, _ in refs if (k := index.kind_of(s))})
    resource = {"person_key": referral.person_key, "categories": list(referral.barriers),
                "sources": kinds, "provider": referral.provider, "referred_to": [referral.provider]}
    decision = ctx.decide(user, "referral.read", resource, purpose=referral.purpose, consent=consent)
    result = _disclose_summary(ctx, user, index, referral.person_key, referral.entity_id, refs,
                               decision, consent, referral.purpose, 0.0, None, as_of,
                               provider=referral.provider, event_type="referral.read",
                               referral_id=referral.referral_id)
    result["referral"] = referral.public() if hasattr(referral, "public") else None
    return result


def _disclose_summary(ctx, user, index, person_key, entity_id, refs, decision, consent, purpose,
                      adjustment_gbp, adjustment_reason, as_of, provider=None,
                      event_type="summary.disclosed", referral_id=None) -> dict[str, Any]:
    obligations = decision.obligations or {}
    allowed_categories = list(obligations.get("categories") or [])
    allowed_kinds = set(obligations.get("sources") or [])
    # Minimisation before decryption: only the rows of agency kinds the decision allows.
    refs = [(s, r) for s, r in refs if index.kind_of(s) in allowed_kinds]
    docs = decrypt_content(ctx, index, refs)
    taxonomy = load_collation_taxonomy(ctx.home)
    try:
        summary = build_barrier_summary(
            docs, taxonomy, categories=allowed_categories,
            consent_receipt_id=consent.get("receipt_id"), policy_decision_id=decision.decision_id,
            adjustment_gbp=adjustment_gbp, adjustment_reason=adjustment_reason, as_of=as_of,
        )
    except ValueError as exc:  # AdjustmentError: nothing disclosed
        raise CollationInputError(str(exc)) from exc
    event = {
        "type": event_type,
        "actor": user.subject(),
        "person_key": person_key,
        "entity_id": entity_id,
        "summary_id": summary.summary_id,
        "decision_id": decision.decision_id,
        "receipt_id": consent.get("receipt_id"),
        "purpose": purpose,
        "categories": list(summary.categories_in_scope),
        "sources": sorted(allowed_kinds),
        "taxonomy_version": taxonomy.version,
        "rows_decrypted": len(docs),
    }
    if summary.outcome_payment.adjustment_gbp:
        event["payment_adjustment_gbp"] = summary.outcome_payment.adjustment_gbp
    if provider:
        event["provider"] = provider
    if referral_id:
        event["referral_id"] = referral_id
    ctx.audit(event)
    return {
        "outcome": MATCHED,
        "summary": summary.to_dict(),
        "text": summary.to_text(taxonomy),
        "decision_id": decision.decision_id,
        "rows_decrypted": len(docs),
    }


def request_area_counts(
    ctx: ServiceContext,
    subject: dict,
    level: str = "sector",
    purpose: str = AREA_PURPOSE,
    categories: list[str] | None = None,
    out_dir: Path | None = None,
    lookup_path: Path | None = None,
    as_of: date | None = None,
) -> dict[str, Any]:
    """People with each barrier and with multiple disadvantage by area, suppressed and rounded."""
    if level not in LEVELS:
        raise CollationInputError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    with ctx.one_entry():
        return _request_area_counts(ctx, subject, level, purpose, categories, out_dir,
                                    lookup_path, as_of)


def _request_area_counts(ctx, subject, level, purpose, categories, out_dir, lookup_path,
                         as_of) -> dict[str, Any]:
    user = _user(subject)
    decision = ctx.decide(user, "area_counts.read", {"categories": list(categories or [])},
                          purpose=purpose)
    obligations = decision.obligations or {}
    settings = DisclosureSettings(
        min_count=int(obligations.get("suppression_threshold", 8)),
        rounding_base=int(obligations.get("rounding_base", 5)),
    )
    taxonomy = load_collation_taxonomy(ctx.home)
    columns = [c for c in taxonomy.barriers if c in set(obligations.get("categories") or [])]
    lookup = None
    if level in ("ward", "lsoa"):
        lookup = read_area_lookup(lookup_path or ctx.home.config_file(AREA_LOOKUP_FILE), level)
    index = current_run_index(ctx)
    as_of = as_of or date.today()
    people = []
    docs = decrypt_content(ctx, index, [ref for refs in index.entities().values() for ref in refs])
    by_ref = {(d.get("source"), d.get("ref")): d for d in docs}
    for refs in index.entities().values():
        person_docs = [by_ref[r] for r in refs if r in by_ref]
        if not person_docs:
            continue
        found = assess_barriers(person_docs, taxonomy, as_of)
        codes = [c for c in found if c in columns]
        people.append((area_of(_latest_area(person_docs), level, lookup), codes))
    table = protect(count_by_area(area_profiles(people, taxonomy.multiple_disadvantage_min),
                                  columns, level, settings, taxonomy.version))
    meta = table.metadata()
    event_id = ctx.audit({
        "type": "area_counts.disclosed",
        "actor": user.subject(),
        "decision_id": decision.decision_id,
        "purpose": purpose,
        "level": level,
        "categories": columns,
        "taxonomy_version": taxonomy.version,
        "areas": meta["areas"],
        "suppressed_primary": meta["suppressed_primary"],
        "suppressed_secondary": meta["suppressed_secondary"],
    })
    result: dict[str, Any] = {
        "level": level,
        "decision_id": decision.decision_id,
        "audit_event_id": event_id,
        "metadata": meta,
        "columns": table.columns,
        "rows": [
            {"area": row, **{c: table.published((row, c)) for c in table.columns}}
            for row in table.rows
        ],
        "csv": table.to_csv(),
    }
    if out_dir is not None:
        paths = write_outputs(table, out_dir, {"decision_id": decision.decision_id})
        result["files"] = {k: str(v) for k, v in paths.items()}
    return result


def _latest_area(docs: list[dict]) -> dict | None:
    """The area of the record seen most recently (a person who moved counts once, where
    they are now)."""
    def latest(doc: dict) -> date:
        dates = [parse_date(i.get("date")) for i in doc.get("indicators") or []]
        return max((d for d in dates if d), default=date.min)

    ranked = sorted((d for d in docs if d.get("area")), key=lambda d: (latest(d), d.get("source", "")),
                    reverse=True)
    return ranked[0]["area"] if ranked else None


def _user(subject: dict | User) -> User:
    if isinstance(subject, User):
        return subject
    return User(id=str(subject.get("id")), role=str(subject.get("role")),
                organisation=str(subject.get("organisation")))


__all__ = [
    "CollationInputError",
    "InvalidIdentifiers",
    "ROW_TOTAL_COLUMN",
    "Refused",
    "SUPPRESSED_MARK",
    "TOTAL_ROW",
    "request_area_counts",
    "request_referral_summary",
    "request_summary",
    "resolve_identifiers",
]
