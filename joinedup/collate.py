"""The collation engine as the service runs it: the current run's index in memory, the
resolution of a person's identifiers to an entity, decryption of exactly the content rows
asked for, and the area-counts table. No decisions and no ledger here: the actions that use
these (joinedup/operations/summaries.py, referrals.py, area_counts.py) decide and record.
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

from joinedup.errors import CollationInputError, NotFound
from joinedup.service_context import ServiceContext, standardise_identifiers
from linkage.collation import (
    DisclosureSettings,
    Taxonomy,
    area_of,
    area_profiles,
    assess_barriers,
    count_by_area,
    load_taxonomy,
    protect,
    read_area_lookup,
)
from linkage.collation.resolve import (
    Resolution,
    ResolutionSettings,
    Scorer,
    resolve_person,
)
from linkage.collation.taxonomy import parse_date

TAXONOMY_FILE = "taxonomy.toml"
AREA_LOOKUP_FILE = "areas-lookup.csv"
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


def prepare(ctx: ServiceContext) -> None:
    """Load now what the first request would otherwise load (a server worker calls this
    before it takes connections): the current run's index, its strong-identifier index and
    the active extracts' content tables, still encrypted. Nothing is decrypted."""
    try:
        index = current_run_index(ctx)
    except NotFound:
        return  # no run yet: nothing to load
    if index._strong is None:
        index._strong = index._load_strong_index()
    for info in index.extracts.values():
        _content_rows(info)


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
    # Keyed by the deployment's keys too: two homes may share a project id (every demo
    # home does), and one's encoder would give the other's people no match.
    stamp = (ctx.home.project_id, ctx.keyring.key_id("blocking"),
             json.dumps(encoding, sort_keys=True))
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


def area_table(ctx: ServiceContext, obligations: dict, level: str,
               lookup_path: Path | None = None, as_of: date | None = None):
    """The protected area-counts table of every linked person, as the decision's
    obligations allow: (table, counted barrier columns, taxonomy).

    Computed once per (current run and its active extracts, taxonomy, content key, date)
    and then per (level, lookup file, columns, disclosure settings), and kept: a new run,
    extract or taxonomy is a new RunIndex or Taxonomy object, which misses the cache (the
    counts do not depend on consent: they count every linked person). The table is
    shared between requests and never changed after it is built."""
    settings = DisclosureSettings(
        min_count=int(obligations.get("suppression_threshold", 8)),
        rounding_base=int(obligations.get("rounding_base", 5)),
    )
    taxonomy = load_collation_taxonomy(ctx.home)
    columns = [c for c in taxonomy.barriers if c in set(obligations.get("categories") or [])]
    lookup_file = None
    if level in ("ward", "lsoa"):
        lookup_file = lookup_path or ctx.home.config_file(AREA_LOOKUP_FILE)
    index = current_run_index(ctx)
    as_of = as_of or date.today()
    with _area_lock:
        people = _assessed_people(ctx, index, taxonomy, as_of)
        stamp = None
        if lookup_file is not None:
            info = Path(lookup_file).stat()
            stamp = (str(lookup_file), info.st_mtime_ns, info.st_size)
        key = (str(ctx.home.root), level, stamp, tuple(columns), settings.min_count,
               settings.rounding_base)
        cached = _area_tables.get(key)
        if cached is not None and cached[0] is people:
            return cached[1], columns, taxonomy
        lookup = read_area_lookup(lookup_file, level) if lookup_file is not None else None
        counted = [(area_of(area, level, lookup), [c for c in codes if c in columns])
                   for area, codes in people]
        table = protect(count_by_area(area_profiles(counted, taxonomy.multiple_disadvantage_min),
                                      columns, level, settings, taxonomy.version))
        if len(_area_tables) >= MAX_AREA_TABLES:
            _area_tables.clear()
        _area_tables[key] = (people, table)
    return table, columns, taxonomy


_area_lock = threading.Lock()  # one build at a time: concurrent requests wait for it
# home -> (run index, taxonomy, as_of, content key id, [(latest area, barrier codes)])
_area_people: dict[str, tuple[RunIndex, Taxonomy, date, str, list]] = {}
_area_tables: dict[tuple, tuple[list, Any]] = {}  # (home, level, ...) -> (people, table)
MAX_AREA_TABLES = 64


def _assessed_people(ctx: ServiceContext, index: RunIndex, taxonomy: Taxonomy,
                     as_of: date) -> list[tuple[dict | None, list[str]]]:
    """Every linked person's latest area and barrier codes (severity 1+), decrypted and
    assessed once per run index, taxonomy, date and content key. Under _area_lock."""
    home, key_id = str(ctx.home.root), ctx.keyring.key_id("content")
    cached = _area_people.get(home)
    if (cached is not None and cached[0] is index and cached[1] is taxonomy
            and cached[2] == as_of and cached[3] == key_id):
        return cached[4]
    docs = decrypt_content(ctx, index, [ref for refs in index.entities().values() for ref in refs])
    by_ref = {(d.get("source"), d.get("ref")): d for d in docs}
    people = []
    for refs in index.entities().values():
        person_docs = [by_ref[r] for r in refs if r in by_ref]
        if not person_docs:
            continue
        found = assess_barriers(person_docs, taxonomy, as_of)
        people.append((_latest_area(person_docs), list(found)))
    _area_people[home] = (index, taxonomy, as_of, key_id, people)
    return people


def _latest_area(docs: list[dict]) -> dict | None:
    """The area of the record seen most recently (a person who moved counts once, where
    they are now)."""
    def latest(doc: dict) -> date:
        dates = [parse_date(i.get("date")) for i in doc.get("indicators") or []]
        return max((d for d in dates if d), default=date.min)

    ranked = sorted((d for d in docs if d.get("area")), key=lambda d: (latest(d), d.get("source", "")),
                    reverse=True)
    return ranked[0]["area"] if ranked else None
